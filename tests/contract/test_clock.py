"""The clock port's contract: aware UTC that never runs backwards, on both adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.clock import FixedClock, SystemClock


class ClockContract:
    def make(self):
        raise NotImplementedError

    def test_now_is_timezone_aware_utc(self) -> None:
        now = self.make().now()
        assert now.tzinfo is not None and now.utcoffset() == timedelta(0)

    def test_now_never_runs_backwards(self) -> None:
        clock = self.make()
        readings = [clock.now() for _ in range(1000)]
        assert readings == sorted(readings)


class TestSystemClock(ClockContract):
    def make(self) -> SystemClock:
        return SystemClock()


class TestFixedClock(ClockContract):
    def make(self) -> FixedClock:
        return FixedClock(datetime(2026, 3, 29, 0, 59, tzinfo=timezone(timedelta(hours=-5))))

    def test_it_stores_another_zone_as_utc_and_moves_only_forward(self) -> None:
        clock = self.make()
        assert clock.now() == datetime(2026, 3, 29, 5, 59, tzinfo=UTC)
        assert clock.advance(hours=2) == datetime(2026, 3, 29, 7, 59, tzinfo=UTC)
        with pytest.raises(ValueError, match="only moves forward"):
            clock.advance(minutes=-1)

    def test_a_naive_time_is_refused(self) -> None:
        with pytest.raises(ValueError):
            FixedClock(datetime(2026, 1, 1))
