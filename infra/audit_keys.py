"""The audit signing key: an Ed25519 private key in a 0600 PEM file outside the event store.

Created on first start when absent. Whoever can read the file can forge checkpoints, so a
file that others can read is refused rather than used; its public half is what auditors pin.
Only the signer (the process with the scheduler role) loads the private key; it publishes the
public half beside it (`<key file>.pub`, 0644), which every other process reads instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from infra.config.errors import ConfigError
from infra.config.secret_files import create_secret_file


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key at `path`, made (0600, its directory 0700 if new) when there is none."""
    path = Path(path)
    if not path.exists():
        _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(str(path), [f"the audit signing key is readable by others (mode {mode:o}); "
                                      f"run `chmod 600 {path}`"])
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(path), [f"is not an unencrypted PEM private key ({exc}); point "
                                      "METERLINE_AUDIT_KEY_FILE at the audit key"]) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(str(path), ["holds a key that is not Ed25519; the audit trail signs "
                                      "with Ed25519 only"])
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The existing key at `path`; a missing file is an error (verification never makes keys)."""
    if not Path(path).exists():
        raise ConfigError(str(path), ["no audit signing key here; set METERLINE_AUDIT_KEY_FILE, "
                                      "or pass --public-key FILE"])
    return load_or_create_signing_key(path)


def public_key_path(path: Path) -> Path:
    """Where the signer publishes the public half of the key at `path`."""
    return Path(path).with_name(Path(path).name + ".pub")


def publish_public_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Writes the public half beside the key file (atomically; again only when it differs)."""
    published = public_key_path(path)
    pem = public_key_pem(key)
    if published.exists() and published.read_bytes() == pem:
        return
    temporary = published.with_name(f"{published.name}.{os.getpid()}.tmp")
    temporary.write_bytes(pem)
    temporary.chmod(0o644)
    os.replace(temporary, published)


def published_public_key(path: Path) -> Ed25519PublicKey | None:
    """The public key the signer published beside the key file at `path`; None until it has."""
    published = public_key_path(path)
    return load_public_key(published) if published.exists() else None


def verifying_key(path: Path) -> Ed25519PublicKey:
    """The key to verify with: the published public half, else the private key file's (an
    auditor's copy of the CLI need not read the private key where the signer has published)."""
    return published_public_key(path) or load_signing_key(path).public_key()


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"cannot read an Ed25519 public key in PEM form: {exc}"]) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(str(path), ["is not an Ed25519 public key"])
    return key


def _create(path: Path) -> None:
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    create_secret_file(path, pem)  # processes starting at once: the first key wins, for all
