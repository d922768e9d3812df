"""`meterline explain REQUEST_ID`: a refused request's decision record, or a served one's charge.

It reads the decisions store (beside the ledger's) and the ledger's batches of the moment the
id was made (domain/services/request_lookup.py), never writing. Refusals a gateway has queued
but not yet written (at most a second's worth) are not visible here until it writes them.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from rich.console import Console

from domain.services.decisions import Decisions
from domain.services.explain import explain

NOT_FOUND = ("no request {id} is known: neither a refusal record nor a metered fact has this id. "
             "Served requests reach the ledger a few seconds after they are answered; during a "
             "flood, refusals past 20 per key, rule and minute are counted, not recorded.")


def run(settings: Any, config: Any, request_id: str, console: Console | None = None) -> int:
    """Prints the explanation as JSON; exit 0, or 1 when the id is unknown."""
    from adapters.clock import SystemClock
    from adapters.eventstore.environments import open_applications
    from infra.container import billing_timezone, event_store_env
    console = console or Console(stderr=True)
    try:
        request_id = str(UUID(request_id))
    except ValueError:
        raise ValueError(f"{request_id[:80]!r} is not a request id: quote the UUID from the "
                         "x-request-id header or the error's request_id") from None
    if settings.database_url is None and not (settings.data_dir / "ledger.sqlite").exists():
        raise ValueError(f"no event store in {settings.data_dir}: pass the data directory the "
                         "ledger writes (--data-dir or METERLINE_DATA_DIR)")
    env = {**event_store_env(settings), "CREATE_TABLE": "n"}  # read only: never make a table
    registry, ledger = open_applications(env, SystemClock(), billing_timezone(settings, config))
    decisions = _decisions(settings, ledger)
    try:
        found = explain(request_id, decisions, ledger, registry)
    finally:
        for app in (registry, ledger, decisions):
            if app is not None:
                app.close()
    if found is None:
        console.print(NOT_FOUND.format(id=request_id), highlight=False)
        return 1
    print(json.dumps(found, indent=2, default=str))
    return 0


def _decisions(settings: Any, ledger: Any) -> Decisions | None:
    """The decisions store, or None when no gateway has refused anything yet (no file)."""
    if settings.database_url is None and not (settings.data_dir / "decisions.sqlite").exists():
        return None
    return Decisions.beside(ledger)
