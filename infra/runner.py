"""Running the roles of one process: gateway, ledger, projector, scheduler, or several together.

`meterline up` runs them as supervised processes (`infra/up.py`); this module runs one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from domain.ports.bus import DOMAIN_TOPIC, USAGE_TOPIC
from domain.services.alerts import RULE_TOPICS
from domain.services.audit_of_events import BILLING_TOPICS
from gateway.views.bus_feed import BusFeed
from infra.container import Meterline, event_store_env
from infra.gc_tuning import freeze_startup_heap
from infra.workers.ledger_worker import LedgerWorker
from infra.workers.outbox_relay import OutboxRelay
from infra.workers.scheduler import build_scheduler
from infra.workers.store_watch import StoreWatch

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

log = logging.getLogger(__name__)
ALL_ROLES = frozenset({"gateway", "ledger", "projector", "scheduler", "alerts"})
FEED_INTERVAL_S = 0.05  # how often the views look for events others wrote to the store


class Workers:
    """The background roles of a process, started and stopped together."""

    def __init__(self, system: Meterline, roles: frozenset[str], own_process: bool = False) -> None:
        self.system = system
        self.roles = roles
        self.own_process = own_process  # the process is ours alone (not a test's): tune its collector
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.ledger: LedgerWorker | None = None
        self.closers: list = []
        self.scheduler = None

    async def start(self) -> None:
        system = self.system
        distributed = system.settings.bus == "kafka"
        views = bool(self.roles & {"gateway", "scheduler"})  # the in-memory views, fed by the store
        await system.bus.start()
        open_writer = getattr(system.bus, "open_writer", None)
        if "gateway" in self.roles and open_writer is not None:
            await open_writer()  # the embedded journal has one writer: fail now, not on a request
        if "projector" in self.roles:
            # Only the projector opens analytics at start (a gateway opens it on its first usage
            # query): an embedded chDB directory admits one process, and the engine adds
            # ~220 MB to the process that loads it.
            await anyio.to_thread.run_sync(system.analytics.ensure_schema)
            if system.settings.analytics_url is None:  # embedded chDB: serve it to the gateway
                from adapters.analytics.remote_server import AnalyticsServer
                server = AnalyticsServer(system.analytics, analytics_socket(system.settings.data_dir))
                await anyio.to_thread.run_sync(server.start)
                self.closers.append(lambda: anyio.to_thread.run_sync(server.stop))
        if distributed and "gateway" in self.roles:
            # Replicas learn of other processes' changes from meterline.domain.
            bus_feed = BusFeed(
                system.bus.consumer(DOMAIN_TOPIC, f"meterline-gateway-{system.settings.gateway_id}"),
                system.registry, system.ledger, system.ctx.registry_view, system.ctx.guard)
            await bus_feed.start()
            self.closers.append(bus_feed.stop)
            self._spawn(bus_feed.run(self.stop_event), "bus-feed")
        if views:
            await anyio.to_thread.run_sync(system.feed.bootstrap)
        relay = None
        if distributed and "ledger" in self.roles:
            relay = OutboxRelay(system.registry, system.ledger, system.bus, system.clock)
            self._spawn(relay.run(self.stop_event), "outbox-relay")
        if "ledger" in self.roles:
            # In the gateway's process its views learn the new spend at once; elsewhere the feed polls.
            on_recorded = system.feed.pull_ledger if "gateway" in self.roles else None
            self.ledger = LedgerWorker(system.bus.consumer(USAGE_TOPIC, "meterline-ledger"),
                                       system.ledger, on_recorded=on_recorded,
                                       after_batch=relay.wake if relay else None,
                                       max_batch=system.settings.ledger_max_batch,
                                       linger_ms=system.settings.ledger_linger_ms)
            await self.ledger.start()
            self._spawn(self.ledger.run(self.stop_event), "ledger")
        if "ledger" in self.roles:
            # Domain events reach the trail from the stores, whichever process wrote them.
            from infra.workers.audit_recorder import AuditRecorder
            recorder = AuditRecorder(system.audit, system.registry, system.ledger)
            if system.alerts is not None:  # alert rules' changes too
                recorder.sources.append((system.alerts, tuple(RULE_TOPICS)))
            if system.billing is not None:  # month closes and their sealed exports (names and hashes)
                recorder.sources.append((system.billing, BILLING_TOPICS))
            self._spawn(recorder.run(self.stop_event), "audit-recorder")
        if "alerts" in self.roles:
            # Follows the ledger's and the anomalies' logs in the store, whichever process wrote them.
            from infra.alerts_wiring import build_alerts_worker
            alerts_worker = build_alerts_worker(system)
            self.closers.append(alerts_worker.aclose)
            self._spawn(alerts_worker.run(self.stop_event), "alerts")
        if "projector" in self.roles:
            # It follows the ledger's store, where each fact is recorded once, not the bus.
            from projections.ledger_projector import LedgerProjector
            projector = LedgerProjector(system.ledger, system.analytics, projector_positions(system.settings))
            await anyio.to_thread.run_sync(projector.start)
            self._spawn(projector.run(self.stop_event, self._ledger_news()), "projector")
            # The audit trail into the same store, for search (its place is the index itself).
            from projections.audit_projector import AuditProjector
            self._spawn(AuditProjector(system.audit, system.analytics).run(self.stop_event),  # type: ignore[arg-type]
                        "audit-projector")
        if "projector" in self.roles:
            # The anomaly scan runs where the analytics store is (infra/anomaly_wiring.py).
            from infra.anomaly_wiring import start_anomaly_scan
            anomaly_scan = start_anomaly_scan(system.settings, system.analytics, system.ctx.anomalies,
                                              system.clock, system.ctx.options.billing_timezone)
            if anomaly_scan is not None:
                async def stop_anomaly_scan() -> None:
                    anomaly_scan.shutdown(wait=False)
                self.closers.append(stop_anomaly_scan)
        if "projector" in self.roles:
            # So does the month close on METERLINE_CLOSE_DAY (infra/workers/month_close_job.py).
            from infra.workers.month_close_job import start_month_close
            if (month_close := start_month_close(system, system.ctx.options.billing_timezone)) is not None:
                async def stop_month_close() -> None:
                    month_close.shutdown(wait=False)
                self.closers.append(stop_month_close)
        if not distributed and views:
            # Several processes on one store: follow its logs directly, on SQLite when they change.
            self._spawn(self._follow_store(), "event-feed")
        if "scheduler" in self.roles:
            self.scheduler = build_scheduler(system.registry, system.ledger, system.ctx.registry_view,
                                             after=system.feed.pull, audit=system.audit)
            self.scheduler.start()
        if self.own_process:
            freeze_startup_heap()  # what start-up made lives on: out of the collector's walks

    def _ledger_news(self) -> Callable[[], Awaitable[None]]:
        """How the projector waits for the ledger to record more: on SQLite until its files change
        (looked at every 5 ms), on PostgreSQL 50 ms."""
        system = self.system
        if system.settings.database_url is not None:
            return lambda: asyncio.sleep(FEED_INTERVAL_S)
        path = event_store_env(system.settings)["LEDGER_SQLITE_DBNAME"]
        return StoreWatch([Path(path), Path(f"{path}-wal")], lambda: None).changed

    def _follow_store(self) -> Awaitable[None]:
        system = self.system
        if system.settings.database_url is not None:
            return system.feed.run(self.stop_event, FEED_INTERVAL_S)
        stores = [path for name, path in event_store_env(system.settings).items()
                  if name.endswith("SQLITE_DBNAME")]
        logs = [Path(f"{path}{suffix}") for path in stores for suffix in ("", "-wal")]
        return StoreWatch(logs, system.feed.pull).run(self.stop_event)

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        self.tasks.append(asyncio.ensure_future(work))
        self.tasks[-1].set_name(name)

    async def stop(self) -> None:
        self.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 10)
        if self.ledger is not None:
            await self.ledger.stop()
        for close in self.closers:
            await close()
        await self.system.ctx.upstream.close()
        await self.system.bus.stop()


def projector_positions(settings) -> Path:
    """Where the projector keeps its place in the ledger's log (`projections/positions_file.py`)."""
    return Path(settings.data_dir) / "projector" / "positions.json"


def analytics_socket(data_dir: Path) -> Path:
    """Where the projector serves embedded chDB: in the data directory, or, when that path is
    too long for a unix socket (108 bytes), in a private directory named by its hash."""
    path = Path(data_dir).resolve() / "analytics.sock"
    if len(os.fsencode(path)) < 100:
        return path
    private = Path(tempfile.gettempdir()) / f"meterline-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    if private.stat().st_uid != os.getuid() or private.stat().st_mode & 0o077:
        raise RuntimeError(f"{private} belongs to another user or is open to others; remove it, "
                           "or use a shorter data directory path")
    return private / f"{hashlib.sha256(os.fsencode(path)).hexdigest()[:20]}.sock"


def gateway_app(system: Meterline, roles: frozenset[str], own_process: bool = False) -> FastAPI:
    # Imported here: the ledger, projector and scheduler never load the web stack, so they
    # start (and recover from a crash) faster.
    from gateway.api.jobs_webhook import drain
    from gateway.app import create_app

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        workers = Workers(system, roles, own_process)
        await workers.start()
        try:
            yield
        finally:
            await workers.stop()
            await drain(system.ctx)  # job webhooks under way, then their channel's client

    return create_app(system.ctx, lifespan)


def http_server_config(system: Meterline, roles: frozenset[str], host: str, port: int,
                       log_level: str = "info", own_process: bool = False) -> uvicorn.Config:
    """uvicorn serving the /v1 fast path in front of the FastAPI app.

    No access log and no proxy-header rewriting: neither is used, and both cost CPU on
    every request (the access log would also turn off the fast path's direct writes).
    `own_process`: the process serves only this (`meterline run`, not a test), so its garbage
    collector is tuned once it has started (infra/gc_tuning.py).
    """
    import uvicorn

    from gateway.v1.fast_path import V1FastPath
    from infra.http_protocol import GuardedHttpToolsProtocol
    settings = system.settings
    protocol = GuardedHttpToolsProtocol.configured(settings.request_timeout_s, settings.max_connections)
    app = V1FastPath(gateway_app(system, roles, own_process), system.ctx)
    return uvicorn.Config(app, host=host, port=port,
                          log_level=log_level, access_log=False, proxy_headers=False,
                          lifespan="on", timeout_graceful_shutdown=10, loop="auto", http=protocol,
                          timeout_keep_alive=settings.keepalive_timeout_s)


def serve(system: Meterline, roles: frozenset[str], host: str, port: int) -> None:
    """Runs the given roles until SIGINT/SIGTERM; with the gateway role, serves HTTP."""
    try:
        if "gateway" in roles:
            import uvicorn
            uvicorn.Server(http_server_config(system, roles, host, port, own_process=True)).run()
        else:
            _run_loop(_headless(system, roles))
    finally:
        system.close()


def _run_loop(main: Awaitable[None]) -> None:
    """Runs a headless process on uvloop (as uvicorn does for the gateway): the ledger's and
    the projector's consumers spend much of their CPU in the event loop itself."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _headless(system: Meterline, roles: frozenset[str]) -> None:
    workers = Workers(system, roles, own_process=True)
    await workers.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    log.info("meterline %s running; Ctrl-C to stop", "+".join(sorted(roles)))
    await done.wait()
    await workers.stop()
