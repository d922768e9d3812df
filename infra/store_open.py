"""Opening an event-sourced application while other processes open it too.

Processes started together (`meterline up`, replicas) race in creating an application's tables:
on SQLite the loser's migration record conflicts, on PostgreSQL its CREATE TABLE IF NOT EXISTS
trips over the other's row in pg_type. The next attempt finds the tables made.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import DatabaseError

log = logging.getLogger(__name__)
T = TypeVar("T")


def open_racing(make: Callable[[], T], what: str, attempts: int = 5) -> T:
    """`make()`, retried with jitter while it fails with a database error; the last one raises."""
    for attempt in range(1, attempts + 1):
        try:
            return make()
        except DatabaseError as exc:
            if attempt == attempts:
                raise
            log.warning("opening %s failed (%s); retrying", what, exc)
            time.sleep(0.2 + random.random() * 0.5)  # noqa: S311 - jitter, not a secret
    raise AssertionError("unreachable")
