"""Export → offline verification, by function and through `meterline audit …` (the sub-app):
an intact bundle passes; an edited one fails naming the seq; a month's bundle is anchored."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from typer.testing import CliRunner

from adapters.clock import FixedClock
from adapters.eventstore.environments import sqlite_env
from domain.audit import AuditEntry
from domain.services.audit_trail import AuditTrail
from infra.audit_bundle import CHECKPOINTS, ENTRIES, PUBLIC_KEY, export, verify_bundle
from infra.audit_cli import audit_app
from infra.audit_keys import load_or_create_signing_key, public_key_pem

MARCH = datetime(2025, 3, 27, 12, tzinfo=UTC)  # + 7 h per entry: seq 17 is the first in April


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory holding a trail of 30 entries across March and April, checkpoint every 8."""
    key_file = tmp_path / "keys" / "audit.pem"
    monkeypatch.setenv("METERLINE_AUDIT_KEY_FILE", str(key_file))
    monkeypatch.delenv("METERLINE_DATABASE_URL", raising=False)
    clock = FixedClock(MARCH)
    trail = AuditTrail(clock, load_or_create_signing_key(key_file), env=sqlite_env(tmp_path / "data"),
                       checkpoint_every=8, checkpoint_interval=timedelta(days=365))
    for i in range(30):
        trail.append([AuditEntry(time=clock.now(), actor="system", action="BudgetSet",
                                 target=f"user:u{i}", details={"limit": i * 10**9})])
        trail.checkpoint(only_if_due=True)  # the scheduler's tick
        clock.advance(hours=7)  # entry 17 is the first in April
    trail.close()
    return tmp_path / "data"


def key_file(data_dir: Path) -> Path:
    return Path(os.environ["METERLINE_AUDIT_KEY_FILE"])


def exported(data_dir: Path, out: Path, *args: str) -> Path:
    result = CliRunner().invoke(audit_app, ["export", "--data-dir", str(data_dir), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def edit_line(path: Path, number: int, **changes) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = json.dumps({**json.loads(lines[number - 1]), **changes})
    path.write_text("\n".join(lines) + "\n")


def test_live_verification_passes_and_names_a_changed_row(data_dir: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(audit_app, ["verify", "--data-dir", str(data_dir)])
    assert ok.exit_code == 0, ok.output
    assert "ok: 30 entries verified" in ok.output and "last checkpoint at seq 24" in ok.output
    with sqlite3.connect(data_dir / "audit.sqlite") as conn:
        conn.execute("UPDATE stored_events SET state = replace(state, 'user:u11', 'user:zz') "
                     "WHERE originator_version = 12")
    bad = runner.invoke(audit_app, ["verify", "--data-dir", str(data_dir)])
    assert bad.exit_code == 1
    assert "BROKEN at seq 12: changed" in bad.output


def test_an_exported_bundle_verifies_offline_with_the_pinned_key(data_dir: Path, tmp_path: Path) -> None:
    bundle = exported(data_dir, tmp_path / "bundle")
    assert sorted(p.name for p in bundle.iterdir()) == [CHECKPOINTS, ENTRIES, "manifest.json", PUBLIC_KEY]
    pinned = tmp_path / "published.pem"
    pinned.write_bytes(public_key_pem(load_or_create_signing_key(key_file(data_dir))))
    result = CliRunner().invoke(audit_app, ["verify", "--bundle", str(bundle), "--public-key", str(pinned)])
    assert result.exit_code == 0, result.output
    assert "ok: 30 entries verified" in result.output
    first = json.loads((bundle / ENTRIES).read_text().splitlines()[0])
    assert set(first) >= {"seq", "prev_hash", "entry_hash"} and first["seq"] == 1


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda b: edit_line(b / ENTRIES, 7, actor="user:mallory"), "BROKEN at seq 7: changed"),
    (lambda b: (b / ENTRIES).write_text("".join(
        line for n, line in enumerate((b / ENTRIES).read_text().splitlines(True), 1) if n != 9)),
     "BROKEN at seq 9: missing"),
    (lambda b: edit_line(b / CHECKPOINTS, 1, head_hash="0" * 64),
     "BROKEN at seq 8: checkpoint-signature-invalid"),
])
def test_an_edited_bundle_fails_naming_the_first_bad_seq(data_dir: Path, tmp_path: Path, edit,
                                                         expected: str) -> None:
    bundle = exported(data_dir, tmp_path / "bundle")
    edit(bundle)
    result = CliRunner().invoke(audit_app, ["verify", "--bundle", str(bundle)])
    assert result.exit_code == 1
    assert expected in result.output
    assert "does not match the SHA-256" in result.output


def test_a_bundle_re_signed_with_another_key_fails_against_the_pinned_key(data_dir: Path,
                                                                         tmp_path: Path) -> None:
    bundle = exported(data_dir, tmp_path / "bundle")
    (bundle / PUBLIC_KEY).write_bytes(public_key_pem(Ed25519PrivateKey.generate()))
    report = verify_bundle(bundle, load_or_create_signing_key(key_file(data_dir)).public_key())
    assert not report.ok
    assert any("is not the pinned one" in note for note in report.notes)


def test_a_months_bundle_holds_its_run_of_seqs_anchored_at_a_checkpoint(data_dir: Path,
                                                                        tmp_path: Path) -> None:
    bundle = exported(data_dir, tmp_path / "april", "--period", "2025-04")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (manifest["first_seq"], manifest["last_seq"], manifest["start"]["seq"]) == (17, 30, 16)
    report = verify_bundle(bundle)
    assert report.ok, report.lines()
    assert report.report.entries == 14 and report.report.last_checkpoint.seq == 24
    assert not any("on trust" in note for note in report.notes)  # checkpoint 16 anchors it


def test_a_checkpoint_the_auditor_kept_catches_a_bundle_cut_short(data_dir: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.jsonl"
    full = exported(data_dir, tmp_path / "full")
    kept.write_text((full / CHECKPOINTS).read_text().splitlines()[-1] + "\n")
    clock = FixedClock(MARCH)
    trail = AuditTrail(clock, env=sqlite_env(data_dir))
    short = tmp_path / "short"
    export(trail, "2025-03", short, load_or_create_signing_key(key_file(data_dir)))  # seqs 1..16
    trail.close()
    assert verify_bundle(short).ok
    result = CliRunner().invoke(audit_app, ["verify", "--bundle", str(short), "--from-checkpoint", str(kept)])
    assert result.exit_code == 1
    assert "BROKEN at seq 17: truncated" in result.output


def test_commands_that_cannot_run_exit_2_with_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("METERLINE_AUDIT_KEY_FILE", str(tmp_path / "none.pem"))
    result = CliRunner().invoke(audit_app, ["verify", "--data-dir", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert "no audit" in result.output
    bad_period = CliRunner().invoke(audit_app, ["export", "--data-dir", str(tmp_path), "-o",
                                                str(tmp_path / "o"), "--period", "March"])
    assert bad_period.exit_code == 2


def test_the_public_key_command_prints_the_pem_auditors_pin(data_dir: Path) -> None:
    result = CliRunner().invoke(audit_app, ["public-key", "--data-dir", str(data_dir)])
    assert result.exit_code == 0
    assert result.output.startswith("-----BEGIN PUBLIC KEY-----")


def auditors_own_check(bundle: Path) -> int:
    """What domain/audit/README.md tells an auditor, written without any Meterline code."""
    public = load_pem_public_key((bundle / PUBLIC_KEY).read_bytes())

    def canonical(obj: dict) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    heads, prev = {}, "0" * 64
    for seq, line in enumerate((bundle / ENTRIES).read_text().splitlines(), start=1):
        entry = json.loads(line)
        claimed_prev, claimed = entry.pop("prev_hash"), entry.pop("entry_hash")
        assert (entry["seq"], claimed_prev) == (seq, prev)
        prev = hashlib.sha256(bytes.fromhex(prev) + canonical(entry)).hexdigest()
        assert prev == claimed
        heads[seq] = prev
    for line in (bundle / CHECKPOINTS).read_text().splitlines():
        signed = json.loads(line)
        message = {k: signed[k] for k in ("seq", "head_hash", "time", "key_id")}
        public.verify(bytes.fromhex(signed["signature"]),
                      canonical({**message, "type": "meterline.audit.checkpoint/1"}))
        assert heads[signed["seq"]] == signed["head_hash"]
    return len(heads)


def test_an_auditor_following_the_documented_format_alone_verifies_an_export(data_dir: Path,
                                                                             tmp_path: Path) -> None:
    assert auditors_own_check(exported(data_dir, tmp_path / "bundle")) == 30


def test_a_whole_trail_bundle_whose_manifest_hides_its_first_entries_fails(data_dir: Path,
                                                                          tmp_path: Path) -> None:
    bundle = exported(data_dir, tmp_path / "bundle")
    lines = (bundle / ENTRIES).read_text().splitlines(True)
    (bundle / ENTRIES).write_text("".join(lines[5:]))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["start"] = {"seq": 5, "hash": json.loads(lines[5])["prev_hash"]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    report = verify_bundle(bundle)
    assert not report.ok
    assert any("whole trail but starts after seq 5" in p for p in report.file_problems)
    assert report.report.problem.seq == 1  # checked from seq 1: the first five are missing


def test_a_manifest_with_nonsense_in_it_is_a_finding_not_a_crash(data_dir: Path, tmp_path: Path) -> None:
    bundle = exported(data_dir, tmp_path / "bundle")
    (bundle / "manifest.json").write_text(json.dumps({"format": "meterline.audit.bundle/1",
                                                      "start": {"seq": -3, "hash": "x"}, "files": 7}))
    report = verify_bundle(bundle)
    assert report.report.ok and not report.ok
    assert any("no readable start" in p for p in report.file_problems)
    assert any("no SHA-256 per file" in p for p in report.file_problems)
