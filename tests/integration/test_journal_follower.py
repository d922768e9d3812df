"""The embedded bus across processes: JournalBus writes the journal, JournalFollowers read its files.

What the contract suites do not cover: followers read only what is durable (the marks),
find any offset in a log longer than one read, resume from their group's file (or from what
the single-process bus committed), and one writer at a time holds a journal.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.bus.inproc import InProcessBus
from adapters.bus.journal_bus import JournalBus
from adapters.bus.journal_follower import READ_BYTES
from tests.support.buses import message, read, seqs

TOPIC = "meterline.usage"


@pytest.fixture
async def bus(tmp_path: Path):
    started = JournalBus(tmp_path / "bus", partitions=4)
    await started.start()
    yield started
    await started.stop()


async def test_a_follower_reads_only_what_the_writer_has_made_durable(bus: JournalBus,
                                                                     tmp_path: Path) -> None:
    await bus.publish(TOPIC, [message("key-1", n) for n in range(3)])
    follower = bus.consumer(TOPIC, "g")
    await follower.start()
    assert seqs(await read(follower, 3)) == [0, 1, 2]
    # a record written but not yet synced (or cut again by a failed write) has no mark yet
    log = tmp_path / "bus" / "topics" / TOPIC / f"{bus.partition_of('key-1')}.jsonl"
    with log.open("ab") as file:
        file.write(b'{"specversion":"1.0","id":"not-durable"}\n')
    assert await follower.fetch(max_records=10, timeout_ms=100) == []
    await follower.stop()


async def test_a_follower_finds_any_offset_in_a_log_longer_than_one_read(bus: JournalBus) -> None:
    padding = "x" * 900
    count = 3 * READ_BYTES // 1000
    for start in range(0, count, 500):
        await bus.publish(TOPIC, [message("key-1", n, data={"seq": n, "pad": padding})
                                  for n in range(start, min(count, start + 500))])
    follower = bus.consumer(TOPIC, "g")
    await follower.start()
    partition = bus.partition_of("key-1")
    for offset in [count - 1, 1234, 0, count // 2, 3, count - 2, 2 * READ_BYTES // 1000]:
        follower.seek(partition, offset)
        [delivery] = await follower.fetch(max_records=1, timeout_ms=1000)
        assert (delivery.offset, delivery.message.data["seq"]) == (offset, offset)
    await follower.seek_to_end()
    assert await follower.fetch(max_records=10, timeout_ms=100) == []
    await bus.publish(TOPIC, [message("key-1", count)])
    assert seqs(await read(follower, 1)) == [count]
    await follower.stop()


async def test_an_offset_past_the_end_waits_until_the_log_gets_there(bus: JournalBus) -> None:
    await bus.publish(TOPIC, [message("key-1", n) for n in range(5)])
    follower = bus.consumer(TOPIC, "g")
    await follower.start()
    follower.seek(bus.partition_of("key-1"), 8)
    assert await follower.fetch(max_records=10, timeout_ms=100) == []
    await bus.publish(TOPIC, [message("key-1", n) for n in range(5, 10)])
    assert [(d.offset, d.message.data["seq"]) for d in await read(follower, 2)] == [(8, 8), (9, 9)]
    await follower.stop()


async def test_a_group_resumes_from_its_file_or_from_what_the_single_process_bus_committed(
        tmp_path: Path) -> None:
    before = InProcessBus(partitions=4, journal_dir=tmp_path / "bus")  # what `up` used to run
    await before.start()
    await before.publish(TOPIC, [message("key-1", n) for n in range(10)])
    consumer = before.consumer(TOPIC, "meterline-projector")
    await consumer.start()
    await consumer.commit({before.partition_of("key-1"): 4})
    await before.stop()

    bus = JournalBus(tmp_path / "bus", partitions=4)
    await bus.start()
    follower = bus.consumer(TOPIC, "meterline-projector")
    await follower.start()
    handled = await read(follower, 6)
    assert seqs(handled) == list(range(4, 10))
    await follower.commit({handled[2].partition: handled[2].offset + 1})
    await follower.stop()
    again = bus.consumer(TOPIC, "meterline-projector")
    await again.start()
    assert seqs(await read(again, 3)) == [7, 8, 9]
    await again.stop()
    await bus.stop()


async def test_one_writer_holds_a_journal_and_the_next_waits_for_it(tmp_path: Path) -> None:
    first = JournalBus(tmp_path / "bus", partitions=4)
    await first.start()
    await first.publish(TOPIC, [message("key-1", 0)])
    second = JournalBus(tmp_path / "bus", partitions=4, lock_wait_s=0.3)
    await second.start()
    with pytest.raises(RuntimeError, match=r"written by another process \(pid \d+\)"):
        await second.publish(TOPIC, [message("key-1", 1)])
    await first.stop()
    third = JournalBus(tmp_path / "bus", partitions=4, lock_wait_s=5)
    await third.start()
    waiting = asyncio.ensure_future(third.publish(TOPIC, [message("key-1", 1)]))
    await asyncio.wait_for(waiting, 5)
    follower = third.consumer(TOPIC, "g")
    await follower.start()
    assert seqs(await read(follower, 2)) == [0, 1]
    await follower.stop()
    await third.stop()


async def test_a_writer_cuts_a_torn_tail_on_opening_and_followers_never_see_it(tmp_path: Path) -> None:
    bus = JournalBus(tmp_path / "bus", partitions=4)
    await bus.start()
    await bus.publish(TOPIC, [message("key-1", n) for n in range(20)])
    await bus.stop()
    log = tmp_path / "bus" / "topics" / TOPIC / f"{bus.partition_of('key-1')}.jsonl"
    with log.open("ab") as file:  # what a kill in the middle of a write leaves
        file.write(b'{"specversion":"1.0","id":"torn-rec')
    reopened = JournalBus(tmp_path / "bus", partitions=4)
    await reopened.start()
    await reopened.open_writer()
    await reopened.publish(TOPIC, [message("key-1", 20)])
    follower = reopened.consumer(TOPIC, "g")
    await follower.start()
    assert seqs(await read(follower, 21)) == list(range(21))
    await follower.stop()
    await reopened.stop()
    assert log.read_bytes().count(b"\n") == 21 and log.read_bytes().endswith(b"\n")
