"""The anomalies part of the composition root: its store, the signals adapter, the scheduled scan."""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from domain.anomaly.detection import Thresholds, Volume
from domain.money import to_nanos
from domain.ports.analytics import AnalyticsStore
from domain.ports.anomaly_signals import AnomalySignals
from domain.ports.clock import Clock
from domain.services.anomalies import Anomalies
from domain.services.ledger import Ledger
from infra.config.env_settings import Settings
from infra.store_open import open_racing
from infra.workers.anomaly_scan import AnomalyScanJob, build_anomaly_scheduler

log = logging.getLogger(__name__)


def open_anomalies(ledger: Ledger, attempts: int = 5) -> Anomalies:
    """The anomalies store beside the ledger's (its SQLite file, or its tables on PostgreSQL);
    infra/store_open.py: processes starting together race in creating its tables."""
    return open_racing(lambda: Anomalies(env=dict(ledger.env)), "the anomalies store", attempts)


def anomaly_signals(analytics: AnalyticsStore | Any) -> AnomalySignals:
    """SQL over the hourly rollup where the store runs SQL (chDB, a server); else the twin's fold."""
    from adapters.analytics.anomaly_figures import FiguresAnomalySignals
    from adapters.analytics.anomaly_sql import SqlAnomalySignals
    if callable(getattr(analytics, "query_rows", None)):
        return SqlAnomalySignals(analytics)
    return FiguresAnomalySignals(analytics)


def thresholds_of(settings: Settings) -> Thresholds:
    """The anomaly thresholds the settings give; the rest are `Thresholds`' defaults."""
    requests, spend = settings.anomaly_min_requests, to_nanos(settings.anomaly_min_spend_usd)
    start, end = settings.anomaly_night_start, settings.anomaly_night_end
    night = tuple(range(start, end)) if start <= end else (*range(start, 24), *range(end))
    defaults = Thresholds()
    return Thresholds(weeks=settings.anomaly_weeks, factor=settings.anomaly_factor, night_hours=night,
                      hour_minimum=Volume(requests, spend, defaults.hour_minimum.tokens),
                      day_minimum=Volume(5 * requests, 10 * spend, defaults.day_minimum.tokens),
                      min_error_requests=requests)


def start_anomaly_scan(settings: Settings, analytics: AnalyticsStore, anomalies: Anomalies | None,
                       clock: Clock, billing_timezone: str) -> AsyncIOScheduler | None:
    """The scheduled scan of the process holding the analytics store; None when turned off."""
    if settings.anomaly_scan_interval_s == 0 or anomalies is None:
        log.info("anomaly scan: off (METERLINE_ANOMALY_SCAN_INTERVAL_S=0, or no anomalies store)")
        return None
    limits = thresholds_of(settings)
    job = AnomalyScanJob(anomaly_signals(analytics), anomalies, clock, billing_timezone, limits)
    scheduler = build_anomaly_scheduler(job, settings.anomaly_scan_interval_s)
    scheduler.start()
    return scheduler
