"""`meterline up`: the processes of one machine, each a `meterline run <roles>` child of a supervisor.

    gateway            serves /v1 and /api; the only writer of the journal (data_dir/bus)
    ledger+scheduler+alerts
                       follows the journal into the event store; periodic budget and key work;
                       alert triggers and their delivery (light: a few reads per ledger batch,
                       and deliveries are tasks with timeouts, so they never hold the ledger up)
    projector          follows the ledger's store (its recorded batches) into chDB
                       (data_dir/analytics) and serves it on a unix socket, where the
                       gateway's /api/usage asks

The same children run on Kafka and PostgreSQL when the environment says so; the gateway
then also asks the projector for analytics unless METERLINE_ANALYTICS_URL names a server.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from infra.config.env_settings import Settings, resolve_secrets
from infra.runner import analytics_socket
from infra.supervisor import Child, Supervisor

log = logging.getLogger(__name__)
ANALYTICS_ENV = "METERLINE_ANALYTICS_URL"


def children(settings: Settings, config: Path) -> list[Child]:
    """The gateway, the ledger with the scheduler, and the projector, on one data directory."""
    data_dir = settings.data_dir.resolve()
    common = ["--data-dir", str(data_dir), "--config", str(Path(config).resolve())]

    def child(name: str, roles: str, *extra: str, env: dict[str, str] | None = None) -> Child:
        return Child(name, [sys.executable, "-m", "infra.cli", "run", roles, *common, *extra], env or {})

    gateway_env = {} if settings.analytics_url else {ANALYTICS_ENV: f"unix:{analytics_socket(data_dir)}"}
    return [child("gateway", "gateway", "--port", str(settings.port), "--host", settings.host,
                  env=gateway_env),
            child("ledger", "ledger,scheduler,alerts"),
            child("projector", "projector")]


def run_up(settings: Settings, config: Path | None, demo_model: bool = False) -> int:
    """Supervises the children until SIGTERM/SIGINT; returns the exit code."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    resolve_secrets(settings)  # in dev mode: the secrets file, made once before the children read it
    demo = None
    if demo_model:
        from infra.demo.demo_config import DEMO_TOML, start_demo_model
        demo = start_demo_model(settings.data_dir)
        if config is None:
            config = settings.data_dir / "demo-meterline.toml"
            config.write_text(DEMO_TOML.format(url=demo.base_url))
    assert config is not None
    try:
        supervisor = Supervisor(children(settings, config))
        return supervisor.run(on_started=lambda: log.info(
            "meterline up: serving http://%s:%d (gateway, ledger+scheduler+alerts, projector); "
            "Ctrl-C to stop",
            settings.host, settings.port))
    finally:
        if demo is not None:
            demo.stop()
