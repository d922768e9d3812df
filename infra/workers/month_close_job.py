"""Closing the previous month on a configured day (METERLINE_CLOSE_DAY), in the projector's process.

It runs where the analytics store is (embedded chDB admits one process). At 02:00 in the billing
time zone on that day, and once at start when the day has passed, it closes the previous month
unless it is closed already or a later month is; a refused or failed close is logged and tried
again at the next start or the next month's day.
"""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import anyio
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from domain.errors import DomainError
from infra.books import prices_of, registry_directory
from reports.closing import close_month, closed_months

log = logging.getLogger(__name__)


def previous_month(now: datetime, timezone: str) -> str:
    local = now.astimezone(ZoneInfo(timezone))
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{month:02d}"


def close_due_month(system, timezone: str, day: int) -> str | None:
    """Closes the previous month if the close day has come and it is open; the month closed, or None."""
    now = system.clock.now()
    if now.astimezone(ZoneInfo(timezone)).day < day:
        return None
    month = previous_month(now, timezone)
    if any(c.month >= month for c in closed_months(system.billing)):
        return None
    models = [m.name for m in system.config.models]
    close_month(system.analytics, system.billing, month, timezone, now, "scheduler",
                registry_directory(system.registry), prices_of(system.registry, models))
    log.info("month close: %s closed and its exports sealed", month)
    return month


def start_month_close(system, timezone: str) -> AsyncIOScheduler | None:
    day = system.settings.close_day
    if day is None or system.billing is None:
        return None

    async def close() -> None:
        try:
            await anyio.to_thread.run_sync(close_due_month, system, timezone, day)
        except (DomainError, ValueError) as exc:
            log.warning("month close: not closed: %s", exc)
        except Exception:
            log.exception("month close failed; it is tried again at the next start or close day")

    scheduler = AsyncIOScheduler(timezone=timezone)
    scheduler.add_job(close, CronTrigger(day=day, hour=2, timezone=timezone), id="month-close",
                      max_instances=1, coalesce=True)
    scheduler.add_job(close, id="month-close-at-start", max_instances=1)  # a close day missed while down
    scheduler.start()
    return scheduler
