"""When a failed delivery is tried again: exponential backoff with jitter, then the dead letter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetrySchedule:
    max_attempts: int = 6  # 1 try + 5 retries, ~1 min of backoff at the defaults, then dead-lettered
    base_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 3600.0

    def delay_s(self, attempt: int, rand: float) -> float:
        """The wait after failed attempt `attempt` (1-based): base·factor^(attempt-1), capped, of
        which the upper half is random ("equal jitter"), so failed deliveries do not retry in step.
        `rand` is a number in [0, 1) the caller draws."""
        ceiling = min(self.cap_s, self.base_s * self.factor ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * rand

    def next_try(self, attempt: int, at: datetime, rand: float, permanent: bool = False) -> datetime | None:
        """When to try again after attempt `attempt` failed at `at`; None means dead-letter it."""
        if permanent or attempt >= self.max_attempts:
            return None
        return at + timedelta(seconds=self.delay_s(attempt, rand))
