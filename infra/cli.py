"""The `meterline` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infra.config.errors import ConfigError, format_config_error
from infra.config.toml_file import MeterlineConfig, load_config

app = typer.Typer(help="Meterline: metering and billing for OpenAI-compatible model gateways.",
                  no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Check configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (METERLINE_DATA_DIR).")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML config (METERLINE_CONFIG).")]
Port = Annotated[int | None, typer.Option("--port", help="HTTP port (METERLINE_PORT).")]
Host = Annotated[str | None, typer.Option("--host", help="HTTP address (METERLINE_HOST).")]


def _fail(exc: BaseException) -> typer.Exit:
    err.print(f"[red]{format_config_error(exc)}[/red]", highlight=False)
    return typer.Exit(2)


def _settings(data_dir: Path | None, config: Path | None, port: int | None, host: str | None):
    from infra.config.env_settings import load_settings
    overrides = {k: v for k, v in {"data_dir": data_dir, "config": config, "port": port,
                                   "host": host}.items() if v is not None}
    return load_settings(**overrides)


def _config(settings) -> MeterlineConfig:
    if settings.config is None:
        raise ConfigError("settings", ["no configuration file: pass --config FILE or set "
                                       "METERLINE_CONFIG (see infra/meterline.example.toml)"])
    return load_config(settings.config)


def _run(roles: frozenset[str], data_dir, config, port, host, demo_model: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from infra.container import build
    from infra.runner import serve
    try:
        settings = _settings(data_dir, config, port, host)
        demo = None
        if demo_model:
            from infra.demo.demo_config import demo_config, start_demo_model
            demo = start_demo_model(settings.data_dir)
            cfg = demo_config(demo.base_url) if settings.config is None else _config(settings)
        else:
            cfg = _config(settings)
        _check_split_analytics(settings, roles)
        system = build(settings, cfg)
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    try:
        if settings.dev:
            err.print(f"dev mode: admin token and key secret are in {settings.data_dir / 'dev-secrets.json'}"
                      " (or set METERLINE_ADMIN_TOKEN)")
        serve(system, roles, settings.host, settings.port)
    finally:
        if demo is not None:
            demo.stop()


def _check_split_analytics(settings, roles: frozenset[str]) -> None:
    """Warns when processes run apart cannot share analytics (an embedded chDB is per process)."""
    uses = roles & {"gateway", "projector"}
    if settings.bus == "kafka" and not settings.analytics_url and uses and uses != {"gateway", "projector"}:
        err.print("[yellow]warning: METERLINE_ANALYTICS_URL is not set, so this process uses its own "
                  "embedded chDB: with the gateway and the projector in separate processes, "
                  "/api/usage will not see what the projector writes. Set "
                  "METERLINE_ANALYTICS_URL=http://host:8123 to share a ClickHouse server, or run "
                  "both with `meterline up`.[/yellow]", highlight=False)


@app.command()
def up(data_dir: DataDir = None, config: ConfigFile = None, port: Port = None, host: Host = None,
       demo_model: Annotated[bool, typer.Option("--demo-model", help=(
           "Start the bundled Gemma 3 270M model server and serve it (the default config)."))] = False
       ) -> None:
    """Run everything in one process: gateway, ledger, projector and scheduler."""
    from infra.runner import ALL_ROLES
    _run(ALL_ROLES, data_dir, config, port, host, demo_model)


@app.command()
def gateway(data_dir: DataDir = None, config: ConfigFile = None, port: Port = None,
            host: Host = None) -> None:
    """Run the gateway alone (scale it out with replicas)."""
    _run(frozenset({"gateway"}), data_dir, config, port, host)


@app.command()
def ledger(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Run the ledger: folds meterline.usage into the event store, exactly once."""
    _run(frozenset({"ledger"}), data_dir, config, None, None)


@app.command()
def projector(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Run the projector: folds meterline.usage into the analytics store."""
    _run(frozenset({"projector"}), data_dir, config, None, None)


@app.command()
def scheduler(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Run the scheduler: budget period rollover, grace expiry, key expiry."""
    _run(frozenset({"scheduler"}), data_dir, config, None, None)


@config_app.command("check")
def config_check(config: ConfigFile = None) -> None:
    """Validate the settings and the config file, and print what they configure."""
    try:
        settings = _settings(None, config, None, None)
        cfg = _config(settings)
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    for model in cfg.models:
        typer.echo(f"model {model.name} -> {model.upstream_url} ({model.upstream_model})")
    for budget in cfg.budgets:
        typer.echo(f"budget {budget.scope}/{budget.scope_id}: {budget.policy.limit} nano-USD "
                   f"per {budget.policy.period}, {budget.policy.mode}")
    typer.echo("configuration is valid")
