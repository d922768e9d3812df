"""Several writers on one trail (separate applications, separate connections, as separate
processes would be): seq stays gapless, every entry lands once, checkpoints keep holding."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.clock import FixedClock
from adapters.eventstore.environments import sqlite_env
from domain.audit import AuditEntry, ChainedEntry
from domain.services.audit_trail import AuditTrail
from infra.container import open_trail
from tests.support.audit_store import audit_store as audit_store  # fixture, used by name

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WRITERS, BATCHES, BATCH = 4, 15, 5


def test_concurrent_appenders_keep_seq_gapless_and_every_entry_once(audit_store) -> None:
    env, _ = audit_store
    clock = FixedClock(datetime(2025, 3, 3, tzinfo=UTC))
    trails = [AuditTrail(clock, env=dict(env)) for _ in range(WRITERS)]  # writers hold no key
    signer = AuditTrail(clock, KEY, env=dict(env), checkpoint_every=20)
    returned: list[list[ChainedEntry]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []
    go = threading.Barrier(WRITERS)

    def write(w: int) -> None:
        try:
            go.wait()
            for b in range(BATCHES):
                batch = [AuditEntry(time=clock.now(), actor=f"user:w{w}", action="AdminActionPerformed",
                                    target=f"batch:{b}", details={"i": i}) for i in range(BATCH)]
                returned[w].extend(trails[w].append(batch))
                if w == 0:
                    signer.checkpoint(only_if_due=True)  # the scheduler's ticks, amid the appends
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert not errors, errors
        total = WRITERS * BATCHES * BATCH
        stored = [r for r in trails[0].records() if isinstance(r, ChainedEntry)]
        assert [r.seq for r in stored] == list(range(1, total + 1))
        assert sorted(r.seq for rs in returned for r in rs) == list(range(1, total + 1))
        by_seq = {r.seq: r for r in stored}
        assert all(by_seq[r.seq] == r for rs in returned for r in rs)  # each writer got what was stored
        # a batch is one transaction: its entries are consecutive
        for rs in returned:
            for b in range(0, len(rs), BATCH):
                seqs = [r.seq for r in rs[b:b + BATCH]]
                assert seqs == list(range(seqs[0], seqs[0] + BATCH))
        report = trails[0].verify(KEY.public_key())
        assert report.ok, report.summary()
        # signed only by the signer, while the others appended: at most one per 20 entries
        assert 1 <= report.checkpoints <= total // 20, report.checkpoints
        assert sum(t.conflicts for t in trails) > 0  # the writers did collide, and recovered
    finally:
        for trail in [*trails, signer]:
            trail.close()


def append_from_a_process(env: dict[str, str], writer: int, batches: int) -> None:
    # opened as every process opens it: three starting at once race in creating its tables
    # writer 0 is the scheduler's process: the one holding the key, signing when due
    key = KEY if writer == 0 else None
    trail = open_trail(FixedClock(datetime(2025, 3, 3, tzinfo=UTC)), key, env, checkpoint_every=20)
    for b in range(batches):
        trail.append([AuditEntry(time=trail.clock.now(), actor=f"user:p{writer}", action="AuthFailed",
                                 target=f"batch:{b}", details={"i": i}) for i in range(BATCH)])
        if key is not None:
            trail.checkpoint(only_if_due=True)
    trail.close()


def test_writers_in_separate_processes_on_one_sqlite_file_keep_seq_gapless(tmp_path) -> None:
    """`meterline up` runs the gateway, the ledger and the projector as processes on one data dir."""
    env = sqlite_env(tmp_path / "store")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=append_from_a_process, args=(env, w, BATCHES)) for w in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    trail = AuditTrail(FixedClock(datetime(2025, 3, 3, tzinfo=UTC)), env=env)
    report = trail.verify(KEY.public_key())
    assert report.ok and report.entries == 3 * BATCHES * BATCH, report.summary()
    trail.close()
