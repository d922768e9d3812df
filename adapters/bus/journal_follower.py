"""A consumer that follows the journal's files from disk, in any process (the BusConsumer port).

It reads each partition's file up to its durable mark (`journal_marks`), so it delivers
only records the writer has fdatasync'ed, and it polls those marks every `poll_s` while it
waits. Offsets are line numbers; the byte at which a line starts is found by scanning,
from the nearest of the positions it has passed (one kept per MiB read). Committed
positions are the group's own file, `groups/<topic>/<group>.json` (atomically replaced);
a group that has none resumes from what the single-process bus committed (`offsets.json`).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import re
from pathlib import Path
from urllib.parse import quote

import orjson

from adapters.bus.cloudevents import decode
from adapters.bus.journal_marks import MarksReader
from domain.ports.bus import Delivery

READ_BYTES = 1 << 20  # per partition and fetch, and per step of a scan
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's rule; also safe as a directory name


def check_topic_name(topic: str) -> None:
    if not _TOPIC_NAME.fullmatch(topic) or topic in {".", ".."}:
        raise ValueError(f"{topic!r} is not a valid topic name (1-249 letters, digits, '.', '_' or '-')")


class _Cursor:
    """Where one partition's next fetch reads: record `offset`, which starts at byte `byte`."""

    __slots__ = ("byte", "fd", "offset", "seen_bytes", "seen_offsets", "target")

    def __init__(self) -> None:
        self.offset = self.byte = 0
        self.target: int | None = 0  # an offset to find before the next read
        self.fd: int | None = None
        self.seen_offsets = [0]  # (offset, byte) pairs passed, ascending: where scans start
        self.seen_bytes = [0]

    def remember(self, offset: int, byte: int) -> None:
        if offset > self.seen_offsets[-1] and byte - self.seen_bytes[-1] >= READ_BYTES:
            self.seen_offsets.append(offset)
            self.seen_bytes.append(byte)


class JournalFollower:
    """Reads every partition of `topic` from the journal in `root`; starts at the group's commits."""

    def __init__(self, root: Path, topic: str, group: str, partitions: int, poll_s: float = 0.005) -> None:
        self.topic = topic
        self._root = Path(root)
        self._dir = self._root / "topics" / topic
        self._group_file = self._root / "groups" / topic / f"{quote(group, safe='')}.json"
        self._group = group
        self._count = partitions
        self._poll_s = poll_s
        self._marks = MarksReader(self._dir, partitions)
        self._cursors: list[_Cursor] | None = None
        self._first = 0  # the partition a fetch looks at first, rotated so none starves

    async def start(self) -> None:
        check_topic_name(self.topic)
        self._cursors = [_Cursor() for _ in range(self._count)]
        await self.seek_to_committed()

    async def stop(self) -> None:
        for cursor in self._cursors or []:
            if cursor.fd is not None:
                os.close(cursor.fd)
        self._marks.close()
        self._cursors = None

    @property
    def running(self) -> bool:
        return self._cursors is not None

    def positions(self) -> dict[int, int]:
        """Where the next fetch reads, per partition."""
        return {p: c.offset if c.target is None else c.target for p, c in enumerate(self._cursors or [])}

    async def partitions(self) -> list[int]:
        return list(range(self._count))

    def seek(self, partition: int, offset: int) -> None:
        """The next fetch from `partition` starts at `offset`."""
        if not 0 <= partition < self._count:
            raise ValueError(f"{self.topic} has partitions 0-{self._count - 1}, not {partition}")
        if offset < 0:
            raise ValueError(f"an offset is zero or more, not {offset}")
        cursor = self._started()[partition]
        cursor.target = None if offset == cursor.offset and cursor.target is None else offset

    async def seek_to_committed(self) -> None:
        """Resumes every partition from the group's committed offsets (or the beginning)."""
        committed = await asyncio.to_thread(self._committed)
        for partition in range(self._count):
            self.seek(partition, committed.get(partition, 0))

    async def seek_to_end(self) -> None:
        """Skips history: the next fetch returns only records made durable from now on."""
        marks = self._marks.read() or [0] * self._count
        await asyncio.to_thread(self._scan_all, marks, True)

    async def fetch(self, max_records: int, timeout_ms: int) -> list[Delivery]:
        """Up to `max_records` deliveries, in offset order per partition; [] on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            marks = self._marks.read()
            if marks is not None and any(c.target is not None for c in self._started()):
                await asyncio.to_thread(self._scan_all, marks, False)
            deliveries = self._take(marks, max_records) if marks is not None else []
            remaining = deadline - loop.time()
            if deliveries or remaining <= 0:
                return deliveries
            await asyncio.sleep(min(self._poll_s, remaining))

    async def commit(self, positions: dict[int, int]) -> None:
        """Stores the group's next offset per partition, durably."""
        for partition, offset in positions.items():
            if not 0 <= partition < self._count or offset < 0:
                raise ValueError(f"cannot commit offset {offset} for partition {partition} of {self.topic}")
        await asyncio.to_thread(self._save_committed, positions)

    # ----- reading ---------------------------------------------------------------------------

    def _take(self, marks: list[int], max_records: int) -> list[Delivery]:
        cursors = self._started()
        order = [(self._first + i) % self._count for i in range(self._count)]
        self._first = (self._first + 1) % self._count
        deliveries: list[Delivery] = []
        moved: list[tuple[_Cursor, int, int]] = []
        for partition in order:
            cursor = cursors[partition]
            if cursor.target is not None or cursor.byte >= marks[partition]:
                continue
            data = self._read(cursor, partition, marks[partition], max_records - len(deliveries))
            byte, offset = cursor.byte, cursor.offset
            for line in data.split(b"\n")[:-1][:max_records - len(deliveries)]:
                deliveries.append(Delivery(decode(line), partition, offset))
                offset += 1
                byte += len(line) + 1
            moved.append((cursor, offset, byte))
            if len(deliveries) >= max_records:
                break
        # only now: a record that fails to decode stops this consumer instead of being skipped
        for cursor, offset, byte in moved:
            cursor.offset, cursor.byte = offset, byte
            cursor.remember(offset, byte)
        return deliveries

    def _read(self, cursor: _Cursor, partition: int, durable: int, wanted: int) -> bytes:
        """Whole records from the cursor on: about `wanted` of them, at most READ_BYTES (or one
        larger record)."""
        fd = self._fd(cursor, partition)
        size = min(durable - cursor.byte, READ_BYTES, max(4096, wanted * 1024))
        data = os.pread(fd, size, cursor.byte)
        end = data.rfind(b"\n") + 1
        if end == 0:  # one record longer than READ_BYTES: the durable part always ends in a newline
            data = os.pread(fd, durable - cursor.byte, cursor.byte)
            end = data.rfind(b"\n") + 1
        return data[:end]

    def _fd(self, cursor: _Cursor, partition: int) -> int:
        if cursor.fd is None:
            cursor.fd = os.open(self._dir / f"{partition}.jsonl", os.O_RDONLY)
        return cursor.fd

    def _scan_all(self, marks: list[int], to_end: bool) -> None:
        """Finds the byte of every partition's pending seek (or its durable end) by counting lines."""
        for partition, cursor in enumerate(self._started()):
            if to_end or cursor.target is not None:
                self._scan(cursor, partition, marks[partition], None if to_end else cursor.target)

    def _scan(self, cursor: _Cursor, partition: int, durable: int, target: int | None) -> None:
        limit = durable if target is None else target
        at = bisect.bisect_right(cursor.seen_offsets, limit) - 1
        known = [(cursor.seen_offsets[at], cursor.seen_bytes[at])]
        if target is None or cursor.offset <= target:
            known.append((cursor.offset, cursor.byte))
        offset, byte = max(known)  # the nearest position passed before the one sought
        while (target is None or offset < target) and byte < durable:
            fd = self._fd(cursor, partition)
            data = os.pread(fd, min(durable - byte, READ_BYTES), byte)
            if b"\n" not in data:  # one record longer than a step
                data = os.pread(fd, durable - byte, byte)
            lines = data.count(b"\n")
            if target is not None and offset + lines > target:  # the target is in this step
                end = 0
                for _ in range(target - offset):
                    end = data.index(b"\n", end) + 1
                offset, byte = target, byte + end
                break
            offset, byte = offset + lines, byte + data.rfind(b"\n") + 1
            cursor.remember(offset, byte)
        cursor.offset, cursor.byte = offset, byte
        # a target past the durable end (the journal lost its tail) waits until the log gets there
        cursor.target = target if target is not None and offset < target else None

    # ----- committed positions ---------------------------------------------------------------

    def _committed(self) -> dict[int, int]:
        try:
            raw = orjson.loads(self._group_file.read_bytes())
        except FileNotFoundError:
            legacy = self._root / "offsets.json"  # written by InProcessBus, the single-process bus
            raw = orjson.loads(legacy.read_bytes()).get(self.topic, {}).get(self._group, {}) \
                if legacy.exists() else {}
        return {int(partition): int(offset) for partition, offset in raw.items()}

    def _save_committed(self, positions: dict[int, int]) -> None:
        merged = {**self._committed(), **positions}
        self._group_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._group_file.with_suffix(".tmp")
        with open(temporary, "wb") as file:
            file.write(orjson.dumps(merged, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._group_file)
        directory = os.open(self._group_file.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _started(self) -> list[_Cursor]:
        if self._cursors is None:
            raise RuntimeError("the consumer is not running: call start() first")
        return self._cursors
