"""Where the ledger projector stands, in a small JSON file replaced atomically, and its lock.

ClickHouse shares no transaction with anything, so the file says more than a position: the
batch being inserted (its intent, written before the insert, so a restart inserts exactly
that batch again), the store generation that names its batches, and a rebuild under way.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson


@dataclass(frozen=True)
class Rebuild:
    """A rebuild under way: notifications up to `until` bring only their facts at or after `since`
    (everything when None); the store's facts from `since` on are gone once `deleted`."""

    since: datetime | None
    until: int
    deleted: bool = False


@dataclass(frozen=True)
class Positions:
    generation: int = 1  # bumped by a rebuild, so fresh tables are not deduplicated against old batches
    next_id: int = 1     # the first notification id of the ledger's log not yet in analytics
    intent: tuple[int, int] | None = None  # notifications [a, b] being inserted
    rebuild: Rebuild | None = field(default=None)


class PositionsLocked(RuntimeError):
    """Another process (a running projector, a rebuild) holds the positions."""


def load_positions(path: Path) -> Positions | None:
    """The saved positions; None when the file does not exist yet."""
    try:
        raw: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    rebuild = raw.get("rebuild")
    return Positions(
        generation=int(raw["generation"]), next_id=int(raw["next_id"]),
        intent=tuple(raw["intent"]) if raw.get("intent") else None,  # type: ignore[arg-type]
        rebuild=None if rebuild is None else Rebuild(
            datetime.fromisoformat(rebuild["since"]) if rebuild["since"] else None,
            int(rebuild["until"]), bool(rebuild["deleted"])))


def save_positions(path: Path, positions: Positions) -> None:
    """Writes the positions so that a crash leaves either the old file or the new one."""
    rebuild = positions.rebuild
    data = {"generation": positions.generation, "next_id": positions.next_id,
            "intent": list(positions.intent) if positions.intent else None,
            "rebuild": None if rebuild is None else {
                "since": rebuild.since.isoformat() if rebuild.since else None,
                "until": rebuild.until, "deleted": rebuild.deleted}}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # makes the rename itself durable
    finally:
        os.close(directory)


def lock_positions(path: Path) -> IO[bytes]:
    """Takes the positions for this process until the returned file is closed (or the process
    dies: the kernel drops the lock). Two writers of one positions file would insert batches
    the other does not know of."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path.with_name(path.name + ".lock"), "a+b")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PositionsLocked(f"{path} is held by another process: a projector (`meterline up` or "
                              "`meterline projector`) or a rebuild is running on this data directory; "
                              "stop it first") from None
    return handle
