"""The clock port: the domain never reads the system time itself.

Adapters: `adapters/clock.py` (`SystemClock`, and `FixedClock`, the twin tests move by
hand); both pass `tests/contract/test_clock.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...
