"""Secret files a process makes on its first start (dev secrets, the audit signing key)."""

from __future__ import annotations

import os
from pathlib import Path


def create_secret_file(path: Path, data: bytes) -> None:
    """Writes `data` to `path` (mode 0600, synced) unless the file exists. Several processes
    starting at once (`meterline up`) each write a private copy and link it into place, not
    rename it: the first link wins, and every process then reads that one file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
