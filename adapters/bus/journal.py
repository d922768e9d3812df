"""The in-process bus's files: an append-only, fsync'ed log per topic partition, and offsets.

Layout under the journal directory:
    bus.json                        {"partitions": N}, fixed when the directory is first used
    topics/<topic>/<partition>.jsonl  one CloudEvents JSON record per line
    topics/<topic>/durable            the bytes of each partition that are fsync'ed (journal_marks)
    offsets.json                    {topic: {group: {partition: next offset}}}, atomically replaced
Every method blocks on the disk: the bus calls them from a worker thread.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from adapters.bus.journal_marks import MarksWriter

log = logging.getLogger(__name__)
# For an append, fdatasync flushes the data and the new file size, all a later read needs;
# it skips only the timestamps that fsync would also write (PostgreSQL's WAL default on Linux).
_sync_data = getattr(os, "fdatasync", os.fsync)
TAIL_CHUNK = 65536  # bytes read at a time from a file's end, looking for its last complete record

Records = dict[str, list[list[bytes]]]      # topic -> partition -> records
Offsets = dict[str, dict[str, dict[int, int]]]  # topic -> group -> partition -> next offset


class Journal:
    """Per-topic-partition append-only files; `append` returns once the data is fsync'ed."""

    def __init__(self, root: Path, partitions: int) -> None:
        self._root = root
        self._partitions = partitions
        self._files: dict[tuple[str, int], int] = {}  # open file descriptors
        self._sizes: dict[tuple[str, int], int] = {}
        self._syncers: ThreadPoolExecutor | None = None
        self._marks: dict[str, MarksWriter] = {}
        self._unusable: OSError | None = None

    def open(self, load: bool = True) -> tuple[Records, Offsets]:
        """Checks the layout, drops torn trailing records, and returns what is stored.

        With `load=False` (a writer whose readers follow the files: `JournalBus`) only the
        ends of the files are read, and no records are returned. Either way every file is
        synced and its durable mark published, so followers may read all that is there."""
        (self._root / "topics").mkdir(parents=True, exist_ok=True)
        self._check_partition_count()
        # fsyncs of different files run side by side: ext4 folds them into fewer commits
        self._syncers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="journal-fsync")
        records = {topic.name: self._load_topic(topic, load) for topic in self._topic_dirs()}
        for topic in self._topic_dirs():
            self._publish_marks(topic.name)
        offsets_file = self._root / "offsets.json"
        raw = orjson.loads(offsets_file.read_bytes()) if offsets_file.exists() else {}
        offsets = {topic: {group: {int(p): o for p, o in positions.items()}
                           for group, positions in groups.items()}
                   for topic, groups in raw.items()}
        return records, offsets

    def append(self, records: list[tuple[str, int, bytes]]) -> None:
        """Appends each (topic, partition, record) line in order, then fsyncs every touched file."""
        if self._unusable:
            raise OSError(f"journal {self._root} is unusable after a failed write "
                          f"({self._unusable}); restart the process") from self._unusable
        lines: dict[tuple[str, int], list[bytes]] = {}
        for topic, partition, record in records:
            lines.setdefault((topic, partition), []).append(record)
        try:
            for where, chunk in lines.items():
                self._write_all(self._fd(where), b"\n".join(chunk) + b"\n")
            if len(lines) == 1:  # the usual case under light load: no hand-off to another thread
                _sync_data(self._files[next(iter(lines))])
            else:
                assert self._syncers is not None
                list(self._syncers.map(_sync_data, [self._files[where] for where in lines]))
        except BaseException:
            self._undo(lines)
            raise
        for where, chunk in lines.items():
            self._sizes[where] += sum(len(line) + 1 for line in chunk)
        for topic in {topic for topic, _ in lines}:
            self._publish_marks(topic)

    def save_offsets(self, snapshot: bytes) -> None:
        """Replaces offsets.json with `snapshot` atomically (write, fsync, rename, fsync dir)."""
        target = self._root / "offsets.json"
        temporary = target.with_suffix(".json.tmp")
        with open(temporary, "wb") as file:
            file.write(snapshot)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
        _fsync_dir(self._root)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        for marks in self._marks.values():
            marks.close()
        self._marks.clear()
        if self._syncers:
            self._syncers.shutdown()

    def _check_partition_count(self) -> None:
        meta = self._root / "bus.json"
        if not meta.exists():
            meta.write_bytes(orjson.dumps({"partitions": self._partitions}))
            _fsync_dir(self._root)
            return
        stored = orjson.loads(meta.read_bytes())["partitions"]
        if stored != self._partitions:
            # a different count would move keys to other partitions and break per-key order
            raise ValueError(f"journal {self._root} was written with {stored} partitions; "
                             f"open it with partitions={stored}, not {self._partitions}")

    def _topic_dirs(self) -> list[Path]:
        return sorted(path for path in (self._root / "topics").iterdir() if path.is_dir())

    def _load_topic(self, directory: Path, load: bool) -> list[list[bytes]]:
        partitions: list[list[bytes]] = [[] for _ in range(self._partitions)]
        for path in directory.glob("*.jsonl"):
            partition = int(path.stem)
            if partition >= self._partitions:
                raise ValueError(f"{path} is beyond the {self._partitions} partitions configured")
            if load:
                partitions[partition] = self._load_file(path)
            else:
                self._repair_tail(path)
            with open(path, "rb") as file:  # what a killed writer left in the page cache, on disk
                _sync_data(file.fileno())
            self._sizes[(directory.name, partition)] = path.stat().st_size
        return partitions

    def _publish_marks(self, topic: str) -> None:
        if topic not in self._marks:
            self._marks[topic] = MarksWriter(self._root / "topics" / topic, self._partitions)
        self._marks[topic].write([self._sizes.get((topic, p), 0) for p in range(self._partitions)])

    def _load_file(self, path: Path) -> list[bytes]:
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            # a crash mid-write: that record was never acknowledged, so dropping it loses nothing
            log.warning("dropping a torn record of %d bytes at the end of %s",
                        len(data) - complete, path)
            with open(path, "r+b") as file:
                file.truncate(complete)
                os.fsync(file.fileno())
        return data[:complete].split(b"\n")[:-1]

    def _repair_tail(self, path: Path) -> None:
        """Cuts a torn trailing record, reading the file from its end only."""
        with open(path, "r+b") as file:
            end = size = file.seek(0, os.SEEK_END)
            while end > 0:
                start = max(0, end - TAIL_CHUNK)
                file.seek(start)
                newline = file.read(end - start).rfind(b"\n")
                if newline >= 0:
                    end = start + newline + 1
                    break
                end = start
            if end < size:
                log.warning("dropping a torn record of %d bytes at the end of %s", size - end, path)
                file.truncate(end)
                os.fsync(file.fileno())

    def _fd(self, where: tuple[str, int]) -> int:
        if where not in self._files:
            topic, partition = where
            directory = self._root / "topics" / topic
            created = not directory.exists()
            directory.mkdir(exist_ok=True)
            path = directory / f"{partition}.jsonl"
            existed = path.exists()
            self._files[where] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._sizes.setdefault(where, 0)
            if not existed:  # a new file's name is durable only once its directory is synced
                _fsync_dir(directory)
            if created:
                _fsync_dir(directory.parent)
        return self._files[where]

    def _undo(self, lines: dict[tuple[str, int], list[bytes]]) -> None:
        # cut away a partial write so the next append does not land after half a record
        for where in lines:
            if where in self._files:
                try:
                    os.ftruncate(self._files[where], self._sizes[where])
                except OSError as error:
                    log.exception("could not roll back a failed append to %s", where)
                    self._unusable = error

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
