"""Audit trail throughput: append (batches of 1 and of 500) and verify, on SQLite (and PostgreSQL).

python -m bench.bench_audit --single 2000 --batched 100000 [--postgres]
Appends entries to a fresh trail in a temporary directory (checkpoints at the default
policy, asked for after each batch as the signer's scheduler does: every 1,000 entries, each
verifying the entries since the last before it signs;
then the same batches again with no signing key, to show what checkpoints cost), verifies
the whole trail from the store, exports it and verifies the bundle offline, printing
entries/s for each. The pure model (no store) is the reference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.clock import SystemClock
from adapters.eventstore.environments import postgres_env, sqlite_env
from domain.audit import GENESIS, AuditEntry, ChainedEntry, chain, verify
from domain.services.audit_trail import AuditTrail
from infra.audit_bundle import export, verify_bundle
from testkit.postgres import temporary_database


def entries(n: int) -> list[AuditEntry]:
    now = datetime.now(UTC)
    return [AuditEntry(time=now, actor=f"user:u{i % 50}", action="KeyIssued", target=f"key:{i:08d}",
                       details={"models": "llama-3-8b,qwen-2-7b", "rpm_limit": 600, "grace": None},
                       source_ip="203.0.113.9", request_id=f"req-{i:012d}") for i in range(n)]


def timed(label: str, n: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    rate = n / (time.perf_counter() - started)
    print(f"  {label:<46} {n:>8,} entries  {rate:>10,.0f} entries/s", flush=True)
    return rate


def run(env: dict[str, str], store: str, single: int, batched: int, workdir: Path) -> None:
    key = Ed25519PrivateKey.generate()
    trail = AuditTrail(SystemClock(), key, env=env)
    print(f"audit trail on {store}:")
    ones = entries(single)
    timed("append, batches of 1 (one transaction each)", single,
          lambda: [trail.append([e]) for e in ones])
    many = entries(batched)

    def signed_batches() -> None:  # appends never sign: the signer's tick, here after each batch
        for i in range(0, batched, 500):
            trail.append(many[i:i + 500])
            trail.checkpoint(only_if_due=True)
    timed("append, batches of 500, signer checkpoints", batched, signed_batches)
    # the same without checkpoints: what signing (and verifying before it) costs
    unsigned = AuditTrail(SystemClock(), None, env=env)
    timed("append, batches of 500, no checkpoints", batched,
          lambda: [unsigned.append(many[i:i + 500]) for i in range(0, batched, 500)])
    unsigned.close()
    total = single + 2 * batched
    report = None

    def live() -> None:
        nonlocal report
        report = trail.verify(key.public_key())
    timed("verify from the store", total, live)
    assert report is not None and report.ok, report.summary() if report else "no report"
    print(f"    {report.summary()}")
    bundle = workdir / f"bundle-{store}"
    timed("export a bundle", total, lambda: export(trail, None, bundle, key))
    timed("verify the bundle offline", total, lambda: verify_bundle(bundle, key.public_key()))
    trail.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=2_000, help="entries appended one per transaction")
    ap.add_argument("--batched", type=int, default=100_000, help="entries appended 500 per transaction")
    ap.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL database")
    args = ap.parse_args()
    made = entries(args.batched)
    records = chain(GENESIS, made)
    print("pure model (no store):")
    timed("make and check entries", args.batched, lambda: entries(args.batched))
    timed("chain (hash) in memory", args.batched, lambda: chain(GENESIS, made))
    lines = [r.as_record() for r in records]
    # from parsed records, as verify meets them: the entries made above keep their encoding
    timed("read records and verify in memory", args.batched,
          lambda: verify((ChainedEntry.from_record(r) for r in lines), [],
                         Ed25519PrivateKey.generate().public_key()))
    with tempfile.TemporaryDirectory(prefix="bench_audit_") as workdir:
        run(sqlite_env(Path(workdir) / "store"), "SQLite", args.single, args.batched, Path(workdir))
        if args.postgres:
            with temporary_database("bench_audit") as url:
                run(postgres_env(url), "PostgreSQL", args.single, args.batched, Path(workdir))


if __name__ == "__main__":
    main()
