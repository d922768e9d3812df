"""Everything the gateway needs, handed in by the composition root (infra). Ports only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from domain.credentials import fingerprint
from domain.ports.analytics import AnalyticsStore
from domain.ports.bus import EventBus
from domain.ports.clock import Clock
from domain.ports.notifier import Notifier
from domain.ports.upstream import Upstream
from domain.services.alerts import Alerts
from domain.services.anomalies import Anomalies
from domain.services.audit_trail import AuditTrail
from domain.services.billing import Billing
from domain.services.decisions import Decisions
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from gateway.access_audit import AccessAudit
from gateway.metrics import Metrics
from gateway.views.quota_guard import QuotaGuard
from gateway.views.rate_limits import RateLimiter
from gateway.views.refusal_log import RefusalLog
from gateway.views.registry_view import RegistryView

T = TypeVar("T")


@dataclass(frozen=True)
class ModelRoute:
    """Where a model name the clients use is served, and how to talk to it."""

    name: str
    upstream_url: str          # base URL ending in /v1
    upstream_model: str
    max_output_tokens: int | None = None
    kind: str = "chat"         # chat | embedding
    stop: tuple[str, ...] = ()
    # The most prompt tokens the model counts for one image, audio clip, video or file part;
    # None: unknown, so a hard or grace budget cannot hold a request carrying one.
    max_image_tokens: int | None = None
    max_audio_tokens: int | None = None
    max_video_tokens: int | None = None
    max_file_tokens: int | None = None
    # The /v1 APIs the upstream speaks (chat, completions, embeddings, responses, messages)
    apis: frozenset[str] = frozenset({"chat", "completions", "embeddings"})
    keeps_state: bool = False  # the upstream stores Responses itself (previous_response_id, store)


@dataclass(frozen=True)
class GatewayOptions:
    gateway_id: str = "gw-1"
    max_body_bytes: int = 1_048_576
    upstream_timeout_s: float = 60.0
    default_max_tokens: int = 4096
    billing_timezone: str = "UTC"
    reservation_wait_s: float = 5.0  # a request refused only for others' reservations waits this long
    stream_progress_tokens: int = 256  # a stream publishes a progress fact every this many tokens
    stream_progress_s: float = 10.0  # … or every this many seconds, whichever comes first


@dataclass
class GatewayContext:
    clock: Clock
    registry: Registry
    ledger: Ledger
    bus: EventBus
    upstream: Upstream
    analytics: AnalyticsStore
    routes: dict[str, ModelRoute]
    server_secret: bytes
    admin_token: str
    options: GatewayOptions = field(default_factory=GatewayOptions)
    registry_view: RegistryView = field(default_factory=RegistryView)
    guard: QuotaGuard | None = None
    rate_limiter: RateLimiter = field(default_factory=RateLimiter)
    metrics: Metrics = field(default_factory=Metrics)
    after_command: Callable[[], Any] | None = None  # pulls new events into the in-memory views
    refusals: RefusalLog | None = None  # decision records of refused /v1 requests
    audit: AuditTrail | None = None  # the tamper-evident trail; None: nothing is recorded
    access_audit: AccessAudit | None = None
    alerts: Alerts | None = None  # alert rules, deliveries and in-app notices; None: no alerts API
    anomalies: Anomalies | None = None  # incidents the anomaly scan recorded; None: no anomalies API
    billing: Billing | None = None  # month closes and sealed exports; None: every period is open
    job_notifier: Notifier | None = None  # signed webhooks when a job ends; None: none are sent
    jobs: Any = None  # the job-cost API's state, made on first use (gateway/api/jobs_desk.py)

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = QuotaGuard(self.clock)
        if self.refusals is None:  # its store lies beside the ledger's, opened on first refusal
            self.refusals = RefusalLog(lambda: Decisions.beside(self.ledger))
        if self.access_audit is None:
            self.access_audit = AccessAudit(self.clock, self.audit.append if self.audit else None)
        self.admin_token_hmac = fingerprint(self.admin_token, self.server_secret)

    def hmac(self, secret: str) -> str:
        return fingerprint(secret, self.server_secret)

    async def command(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs a synchronous event-sourced command off the event loop, then refreshes views."""
        result = await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        if self.after_command is not None:
            await anyio.to_thread.run_sync(self.after_command)
        return result

    async def query(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
