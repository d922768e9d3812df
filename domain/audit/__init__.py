"""The tamper-evident audit trail's pure model: entries, the hash chain, checkpoints, verification."""

from domain.audit.chain import GENESIS, GENESIS_HASH, ChainedEntry, Head, chain, entry_hash, is_hash
from domain.audit.checkpoint import Checkpoint, SignedCheckpoint, key_id, sign_checkpoint, signature_valid
from domain.audit.entry import SYSTEM, AuditEntry, canonical_json, format_time, parse_time
from domain.audit.verify import Break, BreakKind, Unreadable, VerifyReport, verify

__all__ = ["GENESIS", "GENESIS_HASH", "SYSTEM", "AuditEntry", "Break", "BreakKind", "ChainedEntry",
           "Checkpoint", "Head", "SignedCheckpoint", "Unreadable", "VerifyReport", "canonical_json",
           "chain", "entry_hash", "format_time", "is_hash", "key_id", "parse_time", "sign_checkpoint",
           "signature_valid", "verify"]
