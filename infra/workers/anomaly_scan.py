"""The anomaly scan as a scheduled job (apscheduler): every `interval_s` (5 minutes by default) and
once at start, in the process that holds the analytics store (the projector's). Each run reads
the signals in SQL over the hourly rollup, judges them, and records incidents that start or end
(`domain/services/anomaly_scan.py`); store and event store are synchronous, so it runs in a thread.
A failed run is logged and the next one tries again: nothing is lost, the rollups keep the usage."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from domain.anomaly.detection import Thresholds
from domain.ports.anomaly_signals import AnomalySignals
from domain.ports.clock import Clock
from domain.services.anomalies import Anomalies
from domain.services.anomaly_scan import ScanReport, scan_anomalies

log = logging.getLogger(__name__)
SCAN_INTERVAL_S = 300


class AnomalyScanJob:
    """One process's scan: the signals it reads, where incidents go, the zone and thresholds."""

    def __init__(self, signals: AnomalySignals, anomalies: Anomalies, clock: Clock, timezone: str,
                 limits: Thresholds | None = None) -> None:
        self.signals, self.anomalies, self.clock = signals, anomalies, clock
        self.timezone, self.limits = timezone, limits or Thresholds()
        self.last: ScanReport | None = None  # for whoever looks at this process
        self.failures = 0

    def run_once(self) -> ScanReport:
        """A scan now (blocking)."""
        self.last = scan_anomalies(self.signals, self.anomalies, self.clock.now(), self.timezone, self.limits)
        return self.last

    async def run_in_thread(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.run_once)
        except Exception:
            self.failures += 1
            log.exception("anomaly scan failed; the next run tries again")


def build_anomaly_scheduler(job: AnomalyScanJob, interval_s: int = SCAN_INTERVAL_S) -> AsyncIOScheduler:
    """A scheduler running the scan every `interval_s` seconds, the first run at once."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(job.run_in_thread, "interval", seconds=interval_s, id="anomaly-scan",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
    return scheduler
