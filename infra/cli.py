"""The `meterline` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infra.audit_cli import audit_app
from infra.config.errors import ConfigError, format_config_error
from infra.config.toml_file import MeterlineConfig, load_config
from infra.report_cli import period_app, report_app

app = typer.Typer(help="Meterline: metering and billing for OpenAI-compatible model gateways.",
                  no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Check configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
projections_app = typer.Typer(help="Analytics, the ledger's projection.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")
app.add_typer(audit_app, name="audit")
app.add_typer(report_app, name="report")
app.add_typer(period_app, name="period")
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


def _logging(label: str) -> None:
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {label} %(levelname)s %(name)s: %(message)s")


def _run(roles: frozenset[str], data_dir, config, port, host) -> None:
    _logging("+".join(sorted(roles)))
    from infra.container import build
    from infra.runner import analytics_socket, serve
    try:
        settings = _settings(data_dir, config, port, host)
        if settings.bus == "inproc" and "gateway" in roles and "projector" not in roles \
                and settings.analytics_url is None:
            # on the embedded default the projector's process owns chDB and answers for it
            socket = analytics_socket(settings.data_dir)
            settings = settings.model_copy(update={"analytics_url": f"unix:{socket}"})
        cfg = _config(settings)
        _check_split_analytics(settings, roles)
        system = build(settings, cfg, signs_audit="scheduler" in roles)  # only the scheduler signs
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    serve(system, roles, settings.host, settings.port)


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
    """Run everything on this machine: gateway, ledger (+ scheduler) and projector, supervised."""
    _logging("up")
    from infra.up import run_up
    try:
        settings = _settings(data_dir, config, port, host)
        if not demo_model or settings.config is not None:
            _config(settings)  # refused here, once, rather than by every child
        if settings.dev:
            err.print(f"dev mode: admin token and key secret are in {settings.data_dir / 'dev-secrets.json'}"
                      " (or set METERLINE_ADMIN_TOKEN)")
        code = run_up(settings, settings.config, demo_model)
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command(hidden=True)
def run(roles: Annotated[str, typer.Argument(
            help="Comma-separated: gateway, ledger, projector, scheduler, alerts.")],
        data_dir: DataDir = None, config: ConfigFile = None, port: Port = None, host: Host = None) -> None:
    """Run several roles in one process (what `up` starts its children with)."""
    chosen = frozenset(role.strip() for role in roles.split(","))
    from infra.runner import ALL_ROLES
    if not chosen or not chosen <= ALL_ROLES:
        raise _fail(ConfigError("roles", [f"{roles!r}: choose among {', '.join(sorted(ALL_ROLES))}"]))
    _run(chosen, data_dir, config, port, host)


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
    """Run the projector: folds the ledger's recorded facts into the analytics store, each batch once."""
    _run(frozenset({"projector"}), data_dir, config, None, None)


@app.command()
def scheduler(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Run the scheduler: budget period rollover, grace expiry, key expiry."""
    _run(frozenset({"scheduler"}), data_dir, config, None, None)


@app.command()
def alerts(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Run the alerts worker: budget events and anomalies into alerts, sent by e-mail, webhook, in-app."""
    _run(frozenset({"alerts"}), data_dir, config, None, None)


@app.command()
def reconcile(period: Annotated[str | None, typer.Option(
                  "--period", help="A month, YYYY-MM, in the billing time zone (default: this one).")] = None,
              data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Compare the ledger's totals with analytics' per user, key, team and model; exit 1 on any difference."""
    from infra.reconcile import run as run_reconcile
    try:
        settings = _settings(data_dir, config, None, None)
        code = run_reconcile(settings, _config(settings), period, Console())
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command()
def replay(until: Annotated[str, typer.Option(
               "--until", help="An instant, ISO 8601 (e.g. 2026-03-01T12:00:00Z; no zone means UTC).")],
           scope: Annotated[str | None, typer.Option(
               "--scope", help="Only one principal: user:ID, key:ID or team:ID.")] = None,
           fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
           data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Rebuild budgets and keys as they stood at an instant, from the event store; writes nothing."""
    from infra.replay import run as run_replay
    try:
        settings = _settings(data_dir, config, None, None)
        code = run_replay(settings, _config(settings), until, scope, fmt)
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command()
def explain(request_id: Annotated[str, typer.Argument(help="The request id a response or error carried.")],
            data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Why a /v1 request was refused (its decision record), or what a served one cost; exit 1 if unknown."""
    from infra.explain import run as run_explain
    try:
        settings = _settings(data_dir, config, None, None)
        code = run_explain(settings, _config(settings), request_id)
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@projections_app.command("rebuild")
def projections_rebuild(
        since: Annotated[str | None, typer.Option(
            "--from", help="A day, YYYY-MM-DD: rebuild from its midnight in the billing time zone on "
                           "(default: everything).")] = None,
        data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Delete analytics (from --from on) and replay the ledger's recorded facts into it.

    Exit 1 if the result does not reconcile with the ledger, 2 if a projector is running."""
    _logging("rebuild")
    from infra.rebuild import Refused
    from infra.rebuild import run as run_rebuild
    try:
        settings = _settings(data_dir, config, None, None)
        code = run_rebuild(settings, _config(settings), since, Console())
    except Refused as refusal:
        err.print(f"[red]refused: {refusal}[/red]", highlight=False)
        raise typer.Exit(2) from None
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


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


if __name__ == "__main__":  # `python -m infra.cli`: how `up` starts its children
    app()
