"""Counting and summarising what the load generator saw."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadStats:
    """Result of one load run; latencies cover every answered request, sorted."""

    requests: int
    ok: int
    statuses: dict[int, int]  # status 0 counts connection failures
    elapsed_s: float
    latencies_ms: list[float]

    @property
    def errors(self) -> int:
        """Requests not answered with a 2xx."""
        return self.requests - self.ok

    @property
    def rps(self) -> float:
        """Answered requests per second."""
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, p: float) -> float:
        """Latency in ms at percentile p (nearest rank)."""
        if not self.latencies_ms:
            return 0.0
        rank = min(len(self.latencies_ms) - 1, max(0, round(p / 100 * len(self.latencies_ms)) - 1))
        return self.latencies_ms[rank]

    def summary(self) -> dict:
        """A JSON-friendly digest."""
        return {"requests": self.requests, "ok": self.ok, "errors": self.errors,
                "elapsed_s": round(self.elapsed_s, 3), "rps": round(self.rps, 1),
                "p50_ms": round(self.percentile(50), 3), "p90_ms": round(self.percentile(90), 3),
                "p99_ms": round(self.percentile(99), 3),
                "max_ms": round(self.latencies_ms[-1], 3) if self.latencies_ms else 0.0,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}

    def __str__(self) -> str:
        s = self.summary()
        return (f"{s['requests']} requests in {s['elapsed_s']} s = {s['rps']} req/s, "
                f"errors {s['errors']}, latency p50 {s['p50_ms']} ms, p90 {s['p90_ms']} ms, "
                f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms, statuses {s['statuses']}")


class Recorder:
    """Hands out request slots (by count or deadline) and collects the outcomes."""

    def __init__(self, total: int | None, duration_s: float | None) -> None:
        self._started = time.perf_counter()
        self._total = total
        self._deadline = self._started + duration_s if duration_s else None
        self._issued = 0
        self._latencies: list[float] = []
        self._statuses: Counter[int] = Counter()

    def finished(self) -> bool:
        """True once no more requests may be sent."""
        if self._total is not None:
            return self._issued >= self._total
        return self._deadline is not None and time.perf_counter() >= self._deadline

    def take(self) -> bool:
        """Claim the right to send one more request."""
        if self.finished():
            return False
        self._issued += 1
        return True

    def record(self, status: int, seconds: float) -> None:
        """One answered (or failed, status 0) request."""
        self._statuses[status] += 1
        self._latencies.append(seconds * 1000)

    def stats(self) -> LoadStats:
        """Freeze what was recorded."""
        ok = sum(n for s, n in self._statuses.items() if 200 <= s < 300)
        return LoadStats(sum(self._statuses.values()), ok, dict(self._statuses),
                         time.perf_counter() - self._started, sorted(self._latencies))
