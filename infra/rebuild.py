"""`meterline projections rebuild [--from YYYY-MM-DD]`: analytics rebuilt from the ledger's recorded facts.

It deletes analytics from a midnight in the billing time zone on (everything without
`--from`), replays every batch the ledger recorded, inserting the facts at or after that
moment, projects the audit trail into its index again (whole), reconciles the result with
the ledger, and leaves the projector's positions at the end of the log under a new
generation, so the projector goes on from there. The work itself
is the projector's (`LedgerProjector.begin_rebuild`): it records the rebuild in its positions
before deleting anything, so one interrupted by a crash is finished by the next start.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from domain.services.usage_log import UsageLog
from domain.usage import RequestMetered, facts_of
from infra.reconcile import reconcile, report

EVERYTHING = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2299, 12, 31, tzinfo=UTC))  # DateTime64's range


class Refused(Exception):
    """The rebuild cannot start; the message says why and what to do."""


def start_moment(text: str | None, tz: str) -> datetime | None:
    """`--from YYYY-MM-DD` as midnight of that day in `tz`, in UTC; None for everything."""
    if text is None:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) is None:
        raise ValueError(f"--from {text!r}: give a day as YYYY-MM-DD, e.g. 2026-03-01")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--from {text!r} is not a calendar day") from None
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def facts_before(ledger: UsageLog, next_id: int, page: int = 100) -> Iterator[RequestMetered]:
    """Every fact the ledger recorded in notifications before `next_id`: what analytics now holds."""
    start = 1
    while next_id > start and (batch := ledger.usage_batches_from(start, page, stop=next_id - 1)):
        for _, recorded in batch:
            yield from facts_of(recorded.columns, recorded.rows)
        start = batch[-1][0] + 1


def rebuild(projector, since: datetime | None, console: Console) -> int:
    """Runs the rebuild with a progress bar, then the catch-up to the log's end; returns rows inserted."""
    projector.begin_rebuild(since)
    until = projector.positions.rebuild.until
    inserted = projector.inserted
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("{task.fields[rows]:,} rows"), TimeRemainingColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("replaying the ledger's log", total=max(until, 1), rows=0)
        while projector.run_once().notifications:
            done = min(projector.positions.next_id - 1, until)
            progress.update(task, completed=done, rows=projector.inserted - inserted)
        progress.update(task, completed=max(until, 1), rows=projector.inserted - inserted)
    return projector.inserted - inserted


def rebuild_audit_index(settings, store, console: Console) -> int:
    """The audit index emptied and projected again from the trail, whole (`--from` is for usage:
    the index is small, and its place is its own unbroken run from seq 1)."""
    from adapters.clock import SystemClock
    from infra.container import event_store_env, open_trail
    from projections.audit_projector import AuditProjector
    trail = open_trail(SystemClock(), None, event_store_env(settings))  # read only: no signing key
    try:
        began = time.monotonic()
        entries = AuditProjector(trail, store).rebuild()
        console.print(f"rebuilt the audit index: {entries:,} entries in {time.monotonic() - began:.1f} s",
                      highlight=False)
        return entries
    finally:
        trail.close()


def run(settings, config, since_text: str | None, console: Console) -> int:
    """What the command does: refuses while a projector runs, rebuilds, reports, reconciles;
    returns the exit code (1 when analytics then differs from the ledger)."""
    from adapters.clock import SystemClock
    from adapters.eventstore.environments import open_applications
    from infra.container import billing_timezone, build_analytics, event_store_env
    from infra.reconcile import _listening
    from infra.runner import analytics_socket, projector_positions
    from projections.ledger_projector import LedgerProjector
    from projections.positions_file import PositionsLocked
    tz = billing_timezone(settings, config)
    since = start_moment(since_text, tz)
    if settings.analytics_url is None and _listening(analytics_socket(settings.data_dir)):
        raise Refused(f"a projector is serving the embedded analytics of {settings.data_dir} (its "
                      "socket answers): stop `meterline up` or `meterline projector` first")
    registry, ledger = open_applications(event_store_env(settings), SystemClock(), tz)
    store = build_analytics(settings, rollup_timezone=tz)
    projector = LedgerProjector(ledger, store, projector_positions(settings))
    try:
        try:
            projector.start()
        except PositionsLocked as error:
            raise Refused(str(error)) from None
        except RuntimeError as error:  # chDB's own lock: another process has the directory open
            raise Refused(f"{error}") from None
        zone = getattr(store, "rollup_timezone", tz)
        if since is not None and zone != tz:
            # checked before the rebuild is recorded: a delete the store refuses would stall the
            # projector, which finishes a recorded rebuild before anything else
            raise Refused(f"analytics' daily rollup sums days of {zone}, the billing time zone is now "
                          f"{tz}: a day of one is not a day of the other. Rebuild everything (no --from)")
        began = time.monotonic()
        rows = rebuild(projector, since, console)
        seconds = time.monotonic() - began
        console.print(f"rebuilt analytics {'from ' + since.isoformat() if since else 'entirely'}: "
                      f"{rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} events/s); "
                      f"{projector.malformed} malformed facts skipped; the projector goes on from "
                      f"notification {projector.positions.next_id}, generation "
                      f"{projector.positions.generation}", highlight=False)
        rebuild_audit_index(settings, store, console)
        start, end = (since or EVERYTHING[0]), EVERYTHING[1]
        rows_compared = reconcile(facts_before(ledger, projector.positions.next_id), store, start, end)
        return report(rows_compared, start, end, tz, console,
                      what=f"from {since_text} ({tz})" if since_text else "all time")
    finally:
        projector.close()
        for closeable in (store, ledger, registry):
            getattr(closeable, "close", lambda: None)()
