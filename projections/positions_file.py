"""A consumer's next offset per partition, kept in a small JSON file replaced atomically."""

from __future__ import annotations

import os
from pathlib import Path

import orjson


def load_positions(path: Path) -> dict[int, int]:
    """The saved positions; empty when the file does not exist yet."""
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    return {int(partition): int(offset) for partition, offset in raw.items()}


def save_positions(path: Path, positions: dict[int, int]) -> None:
    """Writes the positions so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(orjson.dumps(positions, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS))
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # makes the rename itself durable
    finally:
        os.close(directory)
