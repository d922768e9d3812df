"""`meterline audit …`: verify the trail (live or an exported bundle) and export it.

Exit status: 0 when the trail is intact, 1 when it is broken (the message names the first
bad seq and how it broke), 2 when the command could not run (no store, no key, bad input).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from adapters.clock import SystemClock
from adapters.eventstore.environments import postgres_env, sqlite_env
from domain.services.audit_trail import AuditTrail
from infra.audit_bundle import export, read_checkpoints, verify_bundle
from infra.audit_keys import load_public_key, public_key_pem, verifying_key
from infra.config.env_settings import Settings, load_settings
from infra.config.errors import ConfigError, format_config_error

audit_app = typer.Typer(help="The tamper-evident audit trail: verify it, export it for an auditor.",
                        no_args_is_help=True, add_completion=False)
out = Console(highlight=False, soft_wrap=True)  # one line per finding, whatever the width
err = Console(stderr=True, highlight=False, soft_wrap=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (METERLINE_DATA_DIR).")]
PublicKey = Annotated[Path | None, typer.Option(
    "--public-key", help="The published audit public key (PEM) to check signatures against.")]


@audit_app.command("verify")
def verify_command(
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Verify an exported bundle "
                                                "offline instead of the live store.")] = None,
    from_checkpoint: Annotated[Path | None, typer.Option(
        "--from-checkpoint", help="Signed checkpoints you kept (JSON lines): the trail must "
                                  "still contain what they signed.")] = None,
    public_key: PublicKey = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the hash chain and check every checkpoint signature."""
    try:
        kept = read_checkpoints(from_checkpoint) if from_checkpoint else []
        pinned = load_public_key(public_key) if public_key else None
        if bundle is not None:
            result = verify_bundle(bundle, pinned, kept)
            ok, lines = result.ok, result.lines()
            data: dict[str, Any] = {**result.report.as_dict(), "ok": result.ok,
                                    "file_problems": result.file_problems, "notes": result.notes}
        else:
            settings = _settings(data_dir)
            key = pinned or verifying_key(settings.audit_key_path)
            with _open_trail(settings) as trail:
                report = trail.verify(key, kept)
            ok, lines, data = report.ok, [report.summary()], report.as_dict()
    except (ConfigError, ValueError, OSError) as exc:
        err.print(format_config_error(exc))
        raise typer.Exit(2) from None
    if as_json:
        out.print(json.dumps(data, indent=2))
    else:
        for line in lines:
            (out if ok else err).print(line)
    raise typer.Exit(0 if ok else 1)


@audit_app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to write the bundle to.")],
    period: Annotated[str | None, typer.Option("--period", help="Only this month, YYYY-MM (UTC).")] = None,
    public_key: PublicKey = None,
    data_dir: DataDir = None,
) -> None:
    """Write entries.jsonl, checkpoints.jsonl, public_key.pem and manifest.json for an auditor."""
    try:
        settings = _settings(data_dir)
        key = load_public_key(public_key) if public_key else verifying_key(settings.audit_key_path)
        with _open_trail(settings) as trail:
            manifest = export(trail, period, output, key)
    except (ConfigError, ValueError, OSError) as exc:
        err.print(format_config_error(exc))
        raise typer.Exit(2) from None
    out.print(f"exported {manifest['entries']} entries (seq {manifest['first_seq']}..{manifest['last_seq']}) "
              f"to {output}; verify with `meterline audit verify --bundle {output} --public-key KEY.pem`")


@audit_app.command("public-key")
def public_key_command(data_dir: DataDir = None) -> None:
    """Print the public key checkpoints are signed with (PEM), for auditors to pin."""
    try:
        key = verifying_key(_settings(data_dir).audit_key_path)
    except (ConfigError, ValueError, OSError) as exc:
        err.print(format_config_error(exc))
        raise typer.Exit(2) from None
    typer.echo(public_key_pem(key).decode(), nl=False)


def _settings(data_dir: Path | None) -> Settings:
    return load_settings(**({"data_dir": data_dir} if data_dir is not None else {}))


@contextmanager
def _open_trail(settings: Settings) -> Iterator[AuditTrail]:
    """The trail in the configured store, read-only in intent (no signing key)."""
    if settings.database_url is not None:
        env = postgres_env(settings.database_url.get_secret_value())
    else:
        env = sqlite_env(settings.data_dir)
        if not Path(env["AUDIT_SQLITE_DBNAME"]).exists():
            raise ConfigError(str(settings.data_dir), ["holds no audit trail (audit.sqlite); "
                                                       "pass --data-dir or set METERLINE_DATA_DIR"])
    trail = AuditTrail(SystemClock(), env=env)
    try:
        yield trail
    finally:
        trail.close()
