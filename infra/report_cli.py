"""`meterline report chargeback …` and `meterline period close|list`: finance reports from the CLI.

They open the stores of the data directory as the other commands do (the analytics through the
projector's socket while `meterline up` runs). Exit status: 0 done, 1 refused (a month not
closable, already closed), 2 the command could not run (bad input, no store).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications
from domain.ports.analytics import AnalyticsStore
from domain.pricing import Price
from domain.services.billing import AlreadyClosedError, Billing
from domain.services.registry import Registry
from infra.books import prices_of, registry_directory
from infra.config.env_settings import load_settings
from infra.config.errors import ConfigError, format_config_error
from infra.config.toml_file import load_config
from infra.container import billing_timezone, event_store_env
from infra.reconcile import open_analytics
from reports.chargeback import GROUPS
from reports.closing import CloseRefusedError, chargeback_file, close_month
from reports.directory import LookupDirectory
from reports.exports import ALL_FORMATS as FORMATS
from reports.exports import file_name
from reports.report_period import EXAMPLES, PeriodError, parse_period

report_app = typer.Typer(help="Finance reports: chargeback per user, key, team, cost centre, model or app.",
                         no_args_is_help=True, add_completion=False)
period_app = typer.Typer(help="Month close: seal a month's chargeback exports.", no_args_is_help=True,
                         add_completion=False)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (METERLINE_DATA_DIR).")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML config (METERLINE_CONFIG).")]


@dataclass
class Books:
    registry: Registry
    billing: Billing
    analytics: AnalyticsStore
    timezone: str
    models: tuple[str, ...]  # the configured models, whose price versions a close names

    def prices(self) -> list[Price]:
        return prices_of(self.registry, self.models)

    @property
    def directory(self) -> LookupDirectory:
        return registry_directory(self.registry)


@contextmanager
def books(data_dir: Path | None, config: Path | None) -> Iterator[Books]:
    overrides = {k: v for k, v in {"data_dir": data_dir, "config": config}.items() if v is not None}
    settings = load_settings(**overrides)
    cfg = load_config(settings.config) if settings.config is not None else None
    tz = billing_timezone(settings, cfg) if cfg is not None else settings.billing_timezone
    clock = SystemClock()
    registry, ledger = open_applications(event_store_env(settings), clock, tz)
    billing = Billing.beside(ledger, clock)
    analytics = open_analytics(settings, rollup_timezone=tz)
    try:
        yield Books(registry, billing, analytics, tz, tuple(m.name for m in cfg.models) if cfg else ())
    finally:
        for closeable in (registry, ledger, billing, analytics):
            getattr(closeable, "close", lambda: None)()


def _fail(exc: BaseException, code: int = 2) -> typer.Exit:
    err.print(f"[red]{format_config_error(exc) if isinstance(exc, ConfigError) else exc}[/red]")
    return typer.Exit(code)


@report_app.command("chargeback")
def chargeback_command(
        period: Annotated[str, typer.Option("--period", help=EXAMPLES)],
        group_by: Annotated[str, typer.Option("--group-by", help=", ".join(GROUPS))] = "user",
        fmt: Annotated[str, typer.Option("--format", help=", ".join(FORMATS))] = "csv",
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="File to write (default: chargeback-2026-03-by-user.csv here).")] = None,
        data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Write a chargeback report; a closed month's is its sealed file, byte for byte."""
    if group_by not in GROUPS or fmt not in FORMATS:
        raise _fail(ValueError(f"--group-by must be one of {', '.join(GROUPS)} and --format one of "
                               f"{', '.join(FORMATS)}; got {group_by!r} and {fmt!r}"))
    try:
        with books(data_dir, config) as b, _progress(f"chargeback {period} by {group_by} as {fmt}"):
            chosen = parse_period(period, b.timezone)
            data, sealed = chargeback_file(b.analytics, b.billing, chosen, group_by, fmt, b.directory)
    except (ConfigError, PeriodError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    target = output or Path(file_name(chosen, group_by, fmt))
    target.write_bytes(data)
    out.print(f"wrote {target} ({len(data):,} bytes{', sealed when the month closed' if sealed else ''})")


@period_app.command("close")
def close_command(month: Annotated[str, typer.Argument(help="The month to close, YYYY-MM.")],
                  data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Close a month: seal every chargeback export of it, with a manifest of their SHA-256."""
    try:
        with books(data_dir, config) as b, _progress(f"closing {month}"):
            closing = close_month(b.analytics, b.billing, month, b.timezone, SystemClock().now(), "cli",
                                  b.directory, b.prices())
    except (AlreadyClosedError, CloseRefusedError) as exc:
        raise _fail(exc, 1) from None
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    manifest = closing.manifest
    out.print(f"closed {closing.month}: {manifest['requests']:,} requests, "
              f"{len(manifest['exports'])} exports sealed")
    for name, seal in sorted(manifest["exports"].items()):
        out.print(f"  {seal['sha256']}  {name}")


@period_app.command("list")
def list_command(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """The closed months, oldest first."""
    try:
        with books(data_dir, config) as b:
            closes = b.billing.closes()
    except (ConfigError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    for close in closes:
        out.print(f"{close.month}  closed {close.closed_at:%Y-%m-%d %H:%M} UTC by {close.closed_by}, "
                  f"{close.manifest['requests']:,} requests")


@contextmanager
def _progress(what: str) -> Iterator[None]:
    with Progress(SpinnerColumn(), TextColumn(what), TimeElapsedColumn(), console=err, transient=True) as bar:
        bar.add_task(what, total=None)
        yield
