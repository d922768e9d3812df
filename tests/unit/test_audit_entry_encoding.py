"""The canonical encoding an external auditor reimplements, held to a fixed test vector."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.audit import (
    GENESIS,
    GENESIS_HASH,
    AuditEntry,
    ChainedEntry,
    Checkpoint,
    SignedCheckpoint,
    chain,
    entry_hash,
    sign_checkpoint,
    signature_valid,
)
from domain.credentials import TOKEN_PREFIX, display_prefix, new_secret

AT = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
VECTOR = ('{"action":"KeyRevoked","actor":"user:alice","details":{"count":2,"grace":null,"name":"Zoë",'
          '"reason":"leaked \\"in\\" a log\\n","wildcard":false},"request_id":"req-1","seq":1,'
          '"source_ip":"2001:db8::1","target":"key:0b6f","time":"2025-03-03T09:30:00.000000Z"}')
VECTOR_HASH = "f940af43aa6466a92c36c00a5605803d50441c0771fa5fc4320289c8ef9acfc3"


def vector_entry() -> AuditEntry:
    return AuditEntry(time=AT, actor="user:alice", action="KeyRevoked", target="key:0b6f",
                      details={"reason": 'leaked "in" a log\n', "count": 2, "grace": None,
                               "wildcard": False, "name": "Zoë"},
                      source_ip="2001:db8::1", request_id="req-1", seq=1)


def test_the_canonical_bytes_and_hash_match_the_documented_test_vector() -> None:
    entry = vector_entry()
    assert entry.canonical() == VECTOR.encode("utf-8")
    assert entry_hash(GENESIS_HASH, entry) == VECTOR_HASH
    # the rule written out, as an auditor would: 32 zero bytes, then the canonical UTF-8 bytes
    assert hashlib.sha256(bytes(32) + VECTOR.encode("utf-8")).hexdigest() == VECTOR_HASH


def test_a_time_in_another_zone_is_written_as_the_same_utc_instant() -> None:
    berlin = timezone(timedelta(hours=1))
    entry = AuditEntry(time=datetime(2025, 3, 3, 10, 30, tzinfo=berlin), actor="system", action="X")
    assert entry.as_dict()["time"] == "2025-03-03T09:30:00.000000Z"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("details", {"ratio": 0.5}, "fraction goes in a string"),
    ("details", {"big": 2**53}, r"2\*\*53"),
    ("details", {"nested": {"a": 1}}, "only strings"),
    ("details", {"bad key": 1}, "detail key"),
    ("details", {"ü": 1}, "detail key"),
    ("actor", "", "non-empty"),
    ("action", "has space", "action"),
    ("source_ip", "not-an-ip", "source_ip"),
    ("target", "\ud800", "surrogate"),
    ("time", datetime(2025, 3, 3), "timezone-aware"),
])
def test_values_the_encoding_cannot_pin_down_are_refused_with_the_reason(field, value, says) -> None:
    fields = {"time": AT, "actor": "system", "action": "X", field: value}
    with pytest.raises(ValueError, match=says):
        AuditEntry(**fields)


def test_an_exported_record_reads_back_to_the_same_entry_and_hash() -> None:
    [record] = chain(GENESIS, [vector_entry()])
    line = json.dumps(record.as_record())
    assert ChainedEntry.from_record(json.loads(line)) == record


@pytest.mark.parametrize("change", [
    {"time": "2025-03-03T09:30:00Z"},  # the same instant, spelled otherwise
    {"source_ip": "2001:0db8::1"},  # the same address, spelled otherwise
    {"extra": 1},
    {"seq": "1"},
])
def test_a_record_not_in_canonical_form_is_refused_rather_than_normalised(change) -> None:
    [record] = chain(GENESIS, [vector_entry()])
    with pytest.raises(ValueError):
        ChainedEntry.from_record({**record.as_record(), **change})


def test_a_signed_checkpoint_round_trips_and_any_changed_field_voids_the_signature() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_checkpoint(Checkpoint(7, "ab" * 32, AT), key)
    assert SignedCheckpoint.from_record(json.loads(json.dumps(signed.as_record()))) == signed
    assert signature_valid(signed, key.public_key())
    for change in ({"seq": 8}, {"head_hash": "cd" * 32}, {"time": "2025-03-03T09:30:00.000001Z"}):
        tampered = SignedCheckpoint.from_record({**signed.as_record(), **change})
        assert not signature_valid(tampered, key.public_key())
    assert not signature_valid(signed, Ed25519PrivateKey.generate().public_key())


def test_a_full_key_or_token_that_slips_into_an_entry_is_cut_to_its_display_prefix() -> None:
    key, token = new_secret(), new_secret(TOKEN_PREFIX)
    entry = AuditEntry(time=AT, actor=f"key:{key}", action="AuthFailed", target=f"token {token}",
                       details={"presented": f"Bearer {key}", "note": "qwen-mlu-instruct-v2-long-name"},
                       request_id=key)
    text = entry.canonical().decode()
    assert key not in text and token not in text
    assert entry.actor == f"key:{display_prefix(key)}…"
    assert entry.details["presented"] == f"Bearer {display_prefix(key)}…"
    assert entry.details["note"] == "qwen-mlu-instruct-v2-long-name"  # a model name is no token
    assert AuditEntry(time=AT, actor=f"key:{display_prefix(key)}", action="X").actor == (
        f"key:{display_prefix(key)}")


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
DETAILS = st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,20}", fullmatch=True),
                          st.none() | st.booleans() | TEXT
                          | st.integers(-(2**53 - 1), 2**53 - 1), max_size=6)


@settings(max_examples=300, deadline=None)
@given(actor=TEXT.filter(bool), target=TEXT, details=DETAILS, request_id=st.none() | TEXT.filter(bool),
       ip=st.none() | st.ip_addresses().map(str),
       at=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_any_valid_entry_reads_back_from_its_json_line_to_the_same_bytes_and_hash(
        actor, target, details, request_id, ip, at) -> None:
    [record] = chain(GENESIS, [AuditEntry(time=at, actor=actor, action="X", target=target,
                                          details=details, source_ip=ip, request_id=request_id)])
    line = json.dumps(record.as_record(), ensure_ascii=False)
    again = ChainedEntry.from_record(json.loads(line))
    assert again == record
    assert again.recomputed_hash() == record.entry_hash
    fields = {k: v for k, v in json.loads(line).items() if k not in ("prev_hash", "entry_hash")}
    written = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert hashlib.sha256(bytes(32) + written).hexdigest() == record.entry_hash
