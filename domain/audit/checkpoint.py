"""Checkpoints: the chain's head at a moment, signed with Ed25519 by a key kept outside the store.

The signed message is the canonical JSON (entry.py) of
`{"head_hash", "key_id", "seq", "time", "type": "meterline.audit.checkpoint/1"}`; `type`
keeps a signature over a checkpoint from being taken for a signature over anything else.
`key_id` is the first 16 hex digits of SHA-256 over the raw 32-byte public key.
The private key is passed in by the caller; this module never reads or stores one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.audit.chain import Head, is_hash
from domain.audit.entry import canonical_json, format_time, parse_time

CHECKPOINT_TYPE = "meterline.audit.checkpoint/1"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head (`seq`, `head_hash`) at `time`."""

    seq: int
    head_hash: str
    time: datetime

    def __post_init__(self) -> None:
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 1:
            raise ValueError(f"a checkpoint's seq is an integer from 1, got {self.seq!r}")
        if not is_hash(self.head_hash):
            raise ValueError("a checkpoint's head_hash is 64 lowercase hex digits")
        object.__setattr__(self, "time", parse_time(format_time(self.time)))

    @classmethod
    def of(cls, head: Head, at: datetime) -> Checkpoint:
        return cls(head.seq, head.hash, at)

    def message(self, signer_key_id: str) -> bytes:
        """The bytes the signature is over."""
        return canonical_json({"type": CHECKPOINT_TYPE, "seq": self.seq, "head_hash": self.head_hash,
                               "time": format_time(self.time), "key_id": signer_key_id})


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    key_id: str
    signature: str  # 128 hex digits: the 64-byte Ed25519 signature

    @property
    def seq(self) -> int:
        return self.checkpoint.seq

    def as_record(self) -> dict[str, Any]:
        """One line of `checkpoints.jsonl`."""
        return {"seq": self.seq, "head_hash": self.checkpoint.head_hash,
                "time": format_time(self.checkpoint.time), "key_id": self.key_id,
                "signature": self.signature}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SignedCheckpoint:
        try:
            checkpoint = Checkpoint(record["seq"], record["head_hash"], parse_time(record["time"]))
            signed = cls(checkpoint, record["key_id"], record["signature"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a signed checkpoint needs seq, head_hash, time, key_id and "
                             f"signature: {exc}") from None
        if not isinstance(signed.key_id, str) or not isinstance(signed.signature, str):
            raise ValueError("a signed checkpoint's key_id and signature are strings")
        return signed


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> SignedCheckpoint:
    signer = key_id(private_key.public_key())
    return SignedCheckpoint(checkpoint, signer, private_key.sign(checkpoint.message(signer)).hex())


def signature_valid(signed: SignedCheckpoint, public_key: Ed25519PublicKey) -> bool:
    """Whether `public_key` signed exactly this checkpoint."""
    if signed.key_id != key_id(public_key):
        return False
    try:
        public_key.verify(bytes.fromhex(signed.signature), signed.checkpoint.message(signed.key_id))
    except (InvalidSignature, ValueError):
        return False
    return True
