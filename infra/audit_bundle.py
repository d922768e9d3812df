"""The audit bundle: the trail (or one month of it) in files an auditor verifies offline.

    entries.jsonl      one chained entry per line (canonical JSON with seq, prev_hash, entry_hash)
    checkpoints.jsonl  one signed checkpoint per line
    public_key.pem     the Ed25519 public key the checkpoints are signed with
    manifest.json      format, range, start (seq and hash before the first entry), SHA-256 per file

The digests catch a damaged copy, not a forger (who would rewrite them too): what proves
the trail is the chain and the signatures, checked against a public key the auditor pins
(`--public-key`) rather than the one in the bundle, and checkpoints the auditor kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from domain.audit import (
    GENESIS,
    ChainedEntry,
    Head,
    SignedCheckpoint,
    Unreadable,
    VerifyReport,
    canonical_json,
    format_time,
    is_hash,
    key_id,
    verify,
)
from domain.services.audit_trail import AuditTrail
from infra.audit_keys import public_key_pem

FORMAT = "meterline.audit.bundle/1"
ENTRIES, CHECKPOINTS, PUBLIC_KEY, MANIFEST = ("entries.jsonl", "checkpoints.jsonl", "public_key.pem",
                                              "manifest.json")


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` -> the month's half-open [start, end) in UTC."""
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"period {period!r} is not YYYY-MM, e.g. 2025-03") from None
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, end


def export(trail: AuditTrail, period: str | None, directory: Path,
           key: Ed25519PrivateKey | Ed25519PublicKey) -> dict[str, Any]:
    """Writes the bundle into `directory`; returns its manifest.

    A period exports the run of seqs from the first to the last entry timed in that month
    (everything between, whatever its time, so the run stays a chain)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    checkpoints = trail.checkpoints()  # before the entries: a later one could cover unexported ones
    first, last = _range(trail, period)
    start = GENESIS
    written = 0
    with (directory / ENTRIES).open("wb") as out:
        for record in trail.records(after=first - 1, upto=last) if last else ():
            if written == 0 and isinstance(record, ChainedEntry):
                start = Head(first - 1, record.prev_hash)
            line = ({"unreadable": record.reason, "seq": first + written} if isinstance(record, Unreadable)
                    else record.as_record())
            out.write(canonical_json(line) + b"\n")
            written += 1
    last = first + written - 1
    with (directory / CHECKPOINTS).open("wb") as out:
        for signed in checkpoints:
            if start.seq <= signed.seq <= last:
                out.write(canonical_json(signed.as_record()) + b"\n")
    (directory / PUBLIC_KEY).write_bytes(public_key_pem(public))
    manifest = {"format": FORMAT, "exported_at": format_time(trail.clock.now()), "period": period,
                "first_seq": first if written else None, "last_seq": last if written else None,
                "entries": written, "start": {"seq": start.seq, "hash": start.hash},
                "key_id": key_id(public), "files": {name: _digest(directory / name)
                                                    for name in (ENTRIES, CHECKPOINTS, PUBLIC_KEY)}}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


@dataclass(frozen=True)
class BundleReport:
    report: VerifyReport
    file_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.file_problems

    def lines(self) -> list[str]:
        return [self.report.summary(), *(f"BROKEN: {p}" for p in self.file_problems),
                *(f"note: {n}" for n in self.notes)]


def verify_bundle(directory: Path, public_key: Ed25519PublicKey | None = None,
                  extra_checkpoints: Iterable[SignedCheckpoint] = ()) -> BundleReport:
    """Verifies an exported bundle without the server: chain, signatures, then file digests."""
    directory = Path(directory)
    problems: list[str] = []
    notes: list[str] = []
    manifest = _manifest(directory, problems)
    bundled_key = _bundled_key(directory, problems)
    if public_key is None:
        if bundled_key is None:
            raise ValueError(f"{directory} holds no readable {PUBLIC_KEY}: pass --public-key FILE")
        public_key = bundled_key
        notes.append("checked against the bundle's own public key; pin the published one with "
                     "--public-key to rule out a re-signed bundle")
    elif bundled_key is not None and key_id(public_key) != key_id(bundled_key):
        notes.append(f"the bundle's public key ({key_id(bundled_key)}) is not the pinned one "
                     f"({key_id(public_key)}); checked against the pinned one")
    start = _start(manifest, problems)
    checkpoints = [*read_checkpoints(directory / CHECKPOINTS, problems), *extra_checkpoints]
    before = sorted({c.seq for c in checkpoints if c.seq < start.seq})
    if before:
        notes.append(f"checkpoints at seq {before} lie before this bundle's first entry and were "
                     "not checked")
    report = verify(_lines(directory / ENTRIES), checkpoints, public_key, start=start)
    if start.seq > 0 and report.ok and not any(c.seq == start.seq for c in checkpoints):
        notes.append(f"the bundle starts after seq {start.seq} and no checkpoint there anchors it: "
                     "its first prev_hash is taken on trust")
    files = (manifest or {}).get("files")
    if manifest and not isinstance(files, dict):
        problems.append(f"{MANIFEST} lists no SHA-256 per file")
    for name in (ENTRIES, CHECKPOINTS, PUBLIC_KEY) if isinstance(files, dict) else ():
        if not (directory / name).exists() or _digest(directory / name) != files.get(name):
            problems.append(f"{name} does not match the SHA-256 in {MANIFEST}")
    return BundleReport(report, problems, notes)


def read_checkpoints(path: Path, problems: list[str] | None = None) -> list[SignedCheckpoint]:
    """Signed checkpoints, one JSON object per line (a checkpoints.jsonl, or one kept by hand)."""
    found = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(SignedCheckpoint.from_record(json.loads(line)))
        except ValueError as exc:
            message = f"{Path(path).name} line {number} is not a signed checkpoint: {exc}"
            if problems is None:
                raise ValueError(message) from None
            problems.append(message)
    return found


def _range(trail: AuditTrail, period: str | None) -> tuple[int, int]:
    if period is None:
        return 1, trail.head().seq
    start, end = month_bounds(period)
    seqs = [r.seq for r in trail.records() if isinstance(r, ChainedEntry) and start <= r.entry.time < end]
    return (min(seqs), max(seqs)) if seqs else (1, 0)


def _bundled_key(directory: Path, problems: list[str]) -> Ed25519PublicKey | None:
    try:
        key = load_pem_public_key((directory / PUBLIC_KEY).read_bytes())
    except (OSError, ValueError) as exc:
        problems.append(f"{PUBLIC_KEY} cannot be read: {exc}")
        return None
    if not isinstance(key, Ed25519PublicKey):
        problems.append(f"{PUBLIC_KEY} is not an Ed25519 public key")
        return None
    return key


def _start(manifest: dict[str, Any] | None, problems: list[str]) -> Head:
    """Where the bundle's chain begins: seq 0 and the genesis hash unless it is one period's."""
    if not manifest:
        return GENESIS
    try:
        start = Head(int(manifest["start"]["seq"]), str(manifest["start"]["hash"]))
        if start.seq < 0 or not is_hash(start.hash):
            raise ValueError(start)
    except (KeyError, TypeError, ValueError):
        problems.append(f"{MANIFEST} has no readable start (seq and hash before the first entry)")
        return GENESIS
    if manifest.get("period") is None and start != GENESIS:
        # a whole-trail bundle starting later would hide entries cut from its beginning
        problems.append(f"{MANIFEST} is for the whole trail but starts after seq {start.seq}")
        return GENESIS
    return start


def _lines(path: Path) -> Iterator[ChainedEntry | Unreadable]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                yield ChainedEntry.from_record(json.loads(line))
            except (ValueError, UnicodeDecodeError) as exc:
                yield Unreadable(f"{ENTRIES} line {number}: {exc}")


def _manifest(directory: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{MANIFEST} cannot be read ({exc}); the chain is checked from seq 1")
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST} is not a {FORMAT} manifest")
        return None
    return manifest


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
