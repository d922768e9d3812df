"""Publish throughput of the journalled in-process bus and of KafkaBus on a local tansu.

Run: `python -m bench.bench_bus [--messages 200000] [--publishers 64] [--batches 1,100]`.
Each publisher awaits its publish before the next, as a gateway's sender does; a batch of
1 is one RequestMetered per publish, larger batches are what a batching sender sends.
The time includes building each message (a dict copy and a uuid4, ~3 us).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from adapters.bus.cloudevents import encode
from adapters.bus.inproc import InProcessBus
from adapters.bus.kafka import KafkaBus
from domain.ports.bus import USAGE_TOPIC, BusMessage, EventBus
from domain.usage import RequestMetered, UsageSource


def metered(n: int) -> BusMessage:
    """A RequestMetered as the gateway publishes it, for one of 500 keys."""
    now = datetime.now(UTC)
    key_id = f"key-{n % 500:04d}"
    data = {**_TEMPLATE, "event_id": str(uuid4()), "occurred_at": now.isoformat(),
            "key_id": key_id, "user_id": f"user-{n % 120:03d}", "team_id": f"team-{n % 12:02d}"}
    return BusMessage(id=data["event_id"], type="meterline.request.metered",
                      source="/meterline/gateway/gw-1", subject=key_id, time=now,
                      data=data, key=key_id)


# built once: dataclasses.asdict per message would dominate the set-up time
_TEMPLATE = RequestMetered(
    event_id="", occurred_at=datetime(2025, 1, 1, tzinfo=UTC), key_id="", user_id="",
    team_id=None, model="gemma-3-270m", endpoint="/v1/chat/completions", prompt_tokens=812,
    completion_tokens=164, cached_tokens=256, latency_ms=143, status=200,
    usage_source=UsageSource.UPSTREAM, price_version=3, cost=1_234_567, gateway_id="gw-1",
).to_data()


async def measure(bus: EventBus, total: int, publishers: int,
                  batch: int) -> tuple[float, float]:
    """Messages per wall second and per CPU second of this process, from concurrent publishers."""
    rounds = total // publishers // batch

    async def publisher(n: int) -> None:
        for round_ in range(rounds):
            first = (n * rounds + round_) * batch
            # built just before publishing, as a gateway does (cache-hot, ~3 us each)
            await bus.publish(USAGE_TOPIC, [metered(first + i) for i in range(batch)])

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(publisher(n) for n in range(publishers)))
    count = rounds * batch * publishers
    # per CPU second too: on a shared 2-core box the wall rate says as much about the neighbours
    return (count / (time.perf_counter() - started),
            count / (time.process_time() - cpu_started))


async def bench_journal(args: argparse.Namespace, batch: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=args.journal_parent) as directory:
        bus = InProcessBus(partitions=8, journal_dir=Path(directory))
        await bus.start()
        try:
            return await measure(bus, args.messages, args.publishers, batch)
        finally:
            await bus.stop()


async def bench_kafka(bootstrap: str, args: argparse.Namespace,
                      batch: int) -> tuple[float, float]:
    bus = KafkaBus(bootstrap, client_id="bench")
    await bus.start()
    try:
        return await measure(bus, args.messages, args.publishers, batch)
    finally:
        await bus.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--publishers", type=int, default=64)
    parser.add_argument("--batches", default="1,10,100", help="messages per publish, comma-separated")
    parser.add_argument("--journal-parent", default=None, help="where the journal goes (a tmp dir)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.batches.split(",")]
    size = len(encode(metered(0)))
    print(f"{args.messages} RequestMetered ({size}-byte CloudEvents), "
          f"{args.publishers} concurrent publishers, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} before the run")
    for batch in sizes:
        report("in-process bus, journal + fsync", batch, asyncio.run(bench_journal(args, batch)))

    from testkit.tansu import running_tansu  # the broker the tests use

    for batch in sizes:
        with running_tansu() as bootstrap:  # a fresh broker per run: no carried-over data
            rates = asyncio.run(bench_kafka(bootstrap, args, batch))
        report("KafkaBus -> tansu (memory), acks=all", batch, rates)


def report(what: str, batch: int, rates: tuple[float, float]) -> None:
    print(f"{what:<38} {batch:>4}/publish: {rates[0]:>9,.0f} msg/s "
          f"({rates[1]:>9,.0f} msg per CPU-second of this process)")


if __name__ == "__main__":
    main()
