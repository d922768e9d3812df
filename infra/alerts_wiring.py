"""The alerts part of the composition root: its store, its channels and its worker."""

from __future__ import annotations

import logging
from typing import Any

from adapters.notify.in_app import InAppNotifier
from domain.alerts.retry import RetrySchedule
from domain.ports.clock import Clock
from domain.ports.notifier import Notifier
from domain.services.alerts import Alerts
from domain.services.ledger import Ledger
from infra.config.env_settings import Settings
from infra.notifiers import build_channels
from infra.store_open import open_racing
from infra.workers.alert_recipients import RegistryDirectory
from infra.workers.alert_triggers import TriggerFollower
from infra.workers.alerts_worker import AlertsWorker

log = logging.getLogger(__name__)


def open_alerts(ledger: Ledger, clock: Clock, attempts: int = 5) -> Alerts:
    """The alerts store beside the ledger's (infra/store_open.py: processes starting together race)."""
    return open_racing(lambda: Alerts.beside(ledger, clock), "the alerts store", attempts)


def channels_of(settings: Settings, alerts: Alerts) -> dict[str, Notifier]:
    """E-mail and webhooks as the settings say (infra/notifiers.py), and in-app notices."""
    return {**build_channels(settings), "in_app": InAppNotifier(alerts)}


def anomaly_log(ledger: Ledger) -> Any:
    """The anomalies application's log beside the ledger's, or None where it cannot be opened
    (alerts on budgets must not wait for it)."""
    try:
        from domain.services.anomalies import Anomalies
        return Anomalies(env=dict(ledger.env))
    except Exception:  # noqa: BLE001 - no anomaly alerts, said once, rather than no alerts at all
        log.exception("alerts: the anomalies store could not be opened; anomaly rules will not fire")
        return None


def build_alerts_worker(system: Any, channels: dict[str, Notifier] | None = None) -> AlertsWorker:
    """The worker of an assembled system (infra.container.Meterline, not imported: it imports this)."""
    settings = system.settings
    alerts = system.alerts
    assert alerts is not None
    follower = TriggerFollower(alerts, system.ledger, RegistryDirectory(system.registry),
                               anomaly_log(system.ledger), settings.alerts_webhook_url)
    return AlertsWorker(alerts, follower, channels or channels_of(settings, alerts), system.ctx.server_secret,
                        RetrySchedule(max_attempts=settings.alerts_max_attempts),
                        timeout_s=settings.alerts_timeout_s)
