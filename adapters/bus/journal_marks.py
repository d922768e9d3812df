"""The journal's durable marks: per topic, how many bytes of each partition file are fsync'ed.

The writer (`Journal`) rewrites a topic's marks after every group commit, and after it
repaired the files on opening them. Followers in other processes (`JournalFollower`) read
a partition only up to its mark, so they never consume a record that a crash or a failed
write could still take back (written, not yet fsync'ed, or cut away again by the writer's
undo): what a follower has recorded is always in the journal for good.

Layout: `topics/<topic>/durable` holds the partitions' sizes as little-endian int64, then
their crc32, written with one pwrite and not fsync'ed. A reader that meets a torn write
(the crc does not match) reads again at its next poll; after a crash the writer rewrites
the marks from the repaired files, and any marks that survived name data already fsync'ed.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

MARKS_FILE = "durable"


def _layout(partitions: int) -> struct.Struct:
    return struct.Struct(f"<{partitions}q")


class MarksWriter:
    """Publishes one topic's durable sizes (one pwrite per call)."""

    def __init__(self, topic_dir: Path, partitions: int) -> None:
        self._layout = _layout(partitions)
        self._fd = os.open(topic_dir / MARKS_FILE, os.O_RDWR | os.O_CREAT, 0o644)

    def write(self, sizes: list[int]) -> None:
        data = self._layout.pack(*sizes)
        os.pwrite(self._fd, data + zlib.crc32(data).to_bytes(4, "little"), 0)

    def close(self) -> None:
        os.close(self._fd)


class MarksReader:
    """Reads one topic's durable sizes; None while there are none (or a write is half done)."""

    def __init__(self, topic_dir: Path, partitions: int) -> None:
        self._path = topic_dir / MARKS_FILE
        self._layout = _layout(partitions)
        self._fd: int | None = None

    def read(self) -> list[int] | None:
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDONLY)
            except FileNotFoundError:
                return None  # nothing published on this topic yet
        raw = os.pread(self._fd, self._layout.size + 4, 0)
        data, crc = raw[:-4], raw[-4:]
        if len(raw) != self._layout.size + 4 or zlib.crc32(data).to_bytes(4, "little") != crc:
            return None
        return list(self._layout.unpack(data))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
