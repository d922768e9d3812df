"""The clock port's adapters: the system clock, and a fixed clock tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.periods import require_aware


class SystemClock:
    """The real time, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until it is set or advanced: the in-memory twin for tests."""

    def __init__(self, at: datetime | None = None) -> None:
        self._now = _utc(at) if at is not None else datetime(2025, 1, 15, 12, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        self._now = _utc(at)

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Moves the clock forward by `delta` or by keyword units (`hours=2`); returns the new now."""
        step = (delta or timedelta()) + timedelta(**units)
        if step < timedelta():
            raise ValueError(f"a clock only moves forward, not by {step}")
        self._now += step
        return self._now


def _utc(at: datetime) -> datetime:
    return require_aware(at).astimezone(UTC)
