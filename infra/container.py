"""The composition root: the only place that picks adapters and wires them together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.persistence import DatabaseError

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, postgres_env, sqlite_env
from adapters.notify.webhook import WebhookNotifier
from adapters.upstream.pool import UpstreamPool
from domain.audit import key_id
from domain.ports.analytics import AnalyticsStore
from domain.ports.bus import EventBus
from domain.ports.clock import Clock
from domain.ports.upstream import Upstream
from domain.services.alerts import Alerts
from domain.services.audit_trail import AuditTrail
from domain.services.billing import Billing
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from gateway.context import GatewayContext, GatewayOptions, ModelRoute
from gateway.views.model_routes import CatalogueRoutes
from gateway.views.store_feed import StoreFeed
from infra.alerts_wiring import open_alerts
from infra.anomaly_wiring import open_anomalies
from infra.audit_keys import load_or_create_signing_key, publish_public_key, published_public_key
from infra.config.env_settings import Settings, resolve_secrets
from infra.config.errors import ConfigError
from infra.config.toml_file import MeterlineConfig
from infra.store_open import open_racing

log = logging.getLogger(__name__)


@dataclass
class Meterline:
    """The assembled system of one process."""

    settings: Settings
    config: MeterlineConfig
    clock: Clock
    registry: Registry
    ledger: Ledger
    bus: EventBus
    analytics: AnalyticsStore
    ctx: GatewayContext
    feed: StoreFeed
    audit: AuditTrail
    alerts: Alerts | None = None  # rules, triggers, deliveries, in-app notices (infra/alerts_wiring.py)
    billing: Billing | None = None  # month closes and their sealed exports

    def close(self) -> None:
        if self.ctx.anomalies is not None:
            self.ctx.anomalies.close()
        for closeable in (self.registry, self.ledger, self.audit, self.alerts, self.billing, self.analytics):
            close = getattr(closeable, "close", None)
            if close is not None:
                close()


def event_store_env(settings: Settings) -> dict[str, str]:
    if settings.database_url is not None:
        return postgres_env(settings.database_url.get_secret_value())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return sqlite_env(settings.data_dir)


def open_stores(settings: Settings, config: MeterlineConfig, clock: Clock, tz: str,
                attempts: int = 5) -> tuple[Registry, Ledger]:
    """The registry and the ledger with the configuration recorded; retried on a race.

    Processes starting together on a fresh PostgreSQL database race in CREATE TABLE IF
    NOT EXISTS ("tuple concurrently updated", a duplicate pg_type row) and in recording
    the same configured price or budget (a version conflict); the loser's next attempt
    finds the tables made and the configuration already recorded.
    """
    def opened_with_config() -> tuple[Registry, Ledger]:
        registry, ledger = open_applications(event_store_env(settings), clock, tz)
        try:
            sync_config(registry, ledger, config)
        except DatabaseError:
            registry.close()
            ledger.close()
            raise
        return registry, ledger

    # `up` starts its processes together on SQLite too
    return open_racing(opened_with_config, "the event store and its configuration", attempts)


def open_audit(settings: Settings, clock: Clock, signer: bool = False, attempts: int = 5) -> AuditTrail:
    """The audit trail in the event store's location (its own file or tables). Only the signer
    (the process with the scheduler role) loads the private key, from its file outside the store,
    and publishes its public half beside it; every other process appends unsigned and reads that
    public key (when first needed, so it may start before the signer).

    Retried like `open_stores`: processes starting together race in creating its tables (the
    loser's migration record conflicts), and the next attempt finds them made."""
    path = settings.audit_key_path
    if signer:
        key = load_or_create_signing_key(path)
        publish_public_key(path, key)
        trail = open_trail(clock, key, event_store_env(settings), attempts)
        _check_signer(trail, key.public_key(), settings)
        return trail
    trail = open_trail(clock, None, event_store_env(settings), attempts,
                       public_key=lambda: _published(path))
    if (published := _published(path)) is not None:
        _check_signer(trail, published, settings)
    return trail


def _published(path) -> Ed25519PublicKey | None:
    try:
        return published_public_key(path)
    except ConfigError as exc:  # a damaged file: the API says the key is not available, the log why
        log.error("the published audit public key cannot be read: %s", exc)
        return None


def open_trail(clock: Clock, key: Ed25519PrivateKey | None, env: dict[str, str], attempts: int = 5,
               **options: Any) -> AuditTrail:
    """An AuditTrail on `env` (infra/store_open.py: processes opening it together race)."""
    return open_racing(lambda: AuditTrail(clock, key, env=env, **options), "the audit trail", attempts)


def _check_signer(trail: AuditTrail, key: Ed25519PublicKey, settings: Settings) -> None:
    """Refuses a key other than the one that signed the trail's last checkpoint: a process that
    made its own key (another data directory, another host) could not sign, and its verify
    would call an intact trail broken."""
    last = trail.last_checkpoint()
    if last is not None and last.key_id != key_id(key):
        trail.close()
        raise ConfigError(str(settings.audit_key_path), [
            f"is not the audit key that signs this trail (its checkpoints are signed by key "
            f"{last.key_id}, this one is {key_id(key)}); point METERLINE_AUDIT_KEY_FILE "
            "at the key the other processes use"])


def build_bus(settings: Settings) -> EventBus:
    if settings.bus == "kafka":
        from adapters.bus.kafka import KafkaBus
        return KafkaBus(settings.kafka_bootstrap, client_id=f"meterline-{settings.gateway_id}")
    # the journal on disk: the gateway appends, the ledger and the projector follow it (`meterline up`)
    from adapters.bus.journal_bus import JournalBus
    return JournalBus(settings.data_dir / "bus", partitions=4)


def build_analytics(settings: Settings, rollup_timezone: str = "UTC") -> AnalyticsStore:
    """The configured analytics store; its daily rollup sums calendar days of `rollup_timezone`
    (the billing time zone), fixed when the store is made."""
    if settings.analytics_url and settings.analytics_url.startswith("unix:"):
        from adapters.analytics.remote import RemoteAnalytics  # the projector's chDB, served
        return RemoteAnalytics(settings.analytics_url.removeprefix("unix:"))
    if settings.analytics_url:
        from adapters.analytics.clickhouse import ClickHouseAnalytics
        return ClickHouseAnalytics(settings.analytics_url, rollup_timezone=rollup_timezone)
    from adapters.analytics.chdb import ChdbAnalytics
    return ChdbAnalytics(settings.analytics_path, rollup_timezone=rollup_timezone)


def billing_timezone(settings: Settings, config: MeterlineConfig) -> str:
    return config.billing_timezone or settings.billing_timezone


def sync_config(registry: Registry, ledger: Ledger, config: MeterlineConfig) -> None:
    """Records the configured prices and budgets; unchanged ones record nothing.

    The config file seeds the catalogue: a model changed through the catalogue API since is the
    catalogue's (its prices, route and state), and the file's lines for it are ignored, said so
    at every start rather than applied silently over an admin's change."""
    for model in config.models:
        book = registry.find_price_book(model.name)
        if book is not None and book.changed_through_api_at is not None:
            log.warning("model %s: changed through the catalogue API on %s, which wins over the config "
                        "file; change it with PUT /api/admin/models/%s, or drop it from the file",
                        model.name, book.changed_through_api_at.isoformat(), model.name)
            continue
        registry.set_price(model.name, input_per_million=model.input_per_million,
                           output_per_million=model.output_per_million,
                           cached_input_per_million=model.cached_input_per_million,
                           gpu_cost_per_hour=model.gpu_cost_per_hour,
                           bill_failed_requests=model.bill_failed_requests,
                           cache_write_per_million=model.cache_write_per_million,
                           reasoning_per_million=model.reasoning_per_million)
    for budget in config.budgets:
        ledger.set_budget(budget.scope, budget.scope_id, budget.policy)


def routes_of(config: MeterlineConfig) -> dict[str, ModelRoute]:
    return {m.name: ModelRoute(m.name, m.upstream_url.rstrip("/"), m.upstream_model,
                               m.max_output_tokens, m.kind, tuple(m.stop),
                               max_image_tokens=m.max_image_tokens, max_audio_tokens=m.max_audio_tokens,
                               max_video_tokens=m.max_video_tokens, max_file_tokens=m.max_file_tokens,
                               apis=frozenset(m.apis), keeps_state=m.upstream_keeps_state)
            for m in config.models}


def build(settings: Settings, config: MeterlineConfig, *, clock: Clock | None = None,
          bus: EventBus | None = None, upstream: Upstream | None = None,
          analytics: AnalyticsStore | None = None, signs_audit: bool = False) -> Meterline:
    """Builds one process's system; tests pass in-memory twins for any port. `signs_audit`: this
    process signs the audit trail's checkpoints (the one with the scheduler role)."""
    clock = clock or SystemClock()
    admin_token, key_secret = resolve_secrets(settings)
    tz = billing_timezone(settings, config)
    registry, ledger = open_stores(settings, config, clock, tz)
    try:
        audit = open_audit(settings, clock, signer=signs_audit)
        alerts = open_alerts(ledger, clock)
        billing = open_racing(lambda: Billing.beside(ledger, clock), "the billing store")
    except BaseException:
        registry.close()
        ledger.close()
        raise
    bus = bus or build_bus(settings)
    analytics = analytics or build_analytics(settings, rollup_timezone=tz)
    options = GatewayOptions(gateway_id=settings.gateway_id, max_body_bytes=settings.max_body_bytes,
                             upstream_timeout_s=settings.upstream_timeout_s,
                             default_max_tokens=settings.reservation_default_max_tokens,
                             billing_timezone=tz, reservation_wait_s=settings.reservation_wait_s,
                             stream_progress_tokens=settings.stream_progress_tokens,
                             stream_progress_s=settings.stream_progress_s)
    ctx = GatewayContext(clock=clock, registry=registry, ledger=ledger, bus=bus,
                         upstream=upstream or UpstreamPool(), analytics=analytics,
                         routes=routes_of(config), server_secret=key_secret.get_secret_value().encode(),
                         admin_token=admin_token.get_secret_value(), options=options, audit=audit,
                         alerts=alerts, billing=billing)
    ctx.routes = CatalogueRoutes(ctx.routes, ctx.registry_view)  # the catalogue's changes over the file's
    feed = StoreFeed(registry, ledger, ctx.registry_view, ctx.guard)
    ctx.after_command = feed.pull
    ctx.anomalies = open_anomalies(ledger)  # the anomaly scan's incidents (infra/anomaly_wiring.py)
    # the job webhooks' channel: the alerts' signed webhooks (its client pools idle connections only)
    ctx.job_notifier = WebhookNotifier(allow_private=settings.webhook_allow_private,
                                       timeout_s=settings.webhook_timeout_s)
    return Meterline(settings, config, clock, registry, ledger, bus, analytics, ctx, feed, audit, alerts,
                     billing)
