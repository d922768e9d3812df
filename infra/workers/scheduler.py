"""Periodic work (apscheduler): budget period rollover, grace-window expiry, key expiry, and the
audit trail's signed checkpoints (this process is the only one holding the signing key)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import anyio
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from domain.budget import Budget
from domain.keys import ApiKey
from domain.quota_policy import Scope
from domain.services.audit_trail import AuditTrail
from domain.services.ledger import Ledger
from domain.services.registry import Registry

log = logging.getLogger(__name__)
# Only this process signs (it holds the key); appends never do. Every few seconds it asks the
# trail whether a checkpoint is due (1,000 entries, or 5 minutes with entries since the last):
# a head and a last-checkpoint read each time, so "every N entries" is at most this late.
CHECKPOINT_POLL_S = 5


class KnownPrincipals(Protocol):
    """What the scheduler needs to know of the registry: an in-memory view kept by events
    (the gateway's registry view, handed in by the composition root)."""

    def budget_scopes(self) -> Iterable[tuple[Scope, str]]: ...

    def api_keys(self) -> list[ApiKey]: ...


def budget_ids(principals: KnownPrincipals) -> list:
    """Every budget a known principal may have."""
    return [Budget.id_for(scope, scope_id) for scope, scope_id in principals.budget_scopes()]


def observe_budgets(ledger: Ledger, principals: KnownPrincipals) -> int:
    ids = [i for i in budget_ids(principals) if i in ledger.repository]
    return ledger.observe_budgets(ids)


def expire_keys(registry: Registry, principals: KnownPrincipals) -> int:
    return registry.expire_keys(principals.api_keys())


def checkpoint_if_due(audit: AuditTrail) -> bool:
    """Signs the trail's head when the checkpoint policy says it is time; whether it signed."""
    try:
        signed = audit.checkpoint(only_if_due=True)
    except Exception as exc:
        audit.checkpoint_error = str(exc)  # kept for whoever looks at this process; logged too
        raise
    audit.checkpoint_error = None
    return signed is not None


def build_scheduler(registry: Registry, ledger: Ledger, principals: KnownPrincipals,
                    after: object = None, interval_s: int = 60,
                    audit: AuditTrail | None = None) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")

    async def tick() -> None:
        try:
            changed = await anyio.to_thread.run_sync(observe_budgets, ledger, principals)
            changed += await anyio.to_thread.run_sync(expire_keys, registry, principals)
            if changed and callable(after):
                await anyio.to_thread.run_sync(after)
        except Exception:
            log.exception("scheduler: periodic budget and key checks failed; retrying next tick")

    scheduler.add_job(tick, "interval", seconds=interval_s, id="budgets-and-keys",
                      max_instances=1, coalesce=True)

    async def checkpoint() -> None:
        try:
            await anyio.to_thread.run_sync(checkpoint_if_due, audit)
        except Exception:
            log.exception("scheduler: the audit checkpoint was not signed; retrying next time")

    if audit is not None and audit.signing_key is not None:
        scheduler.add_job(checkpoint, "interval", seconds=CHECKPOINT_POLL_S, id="audit-checkpoint",
                          max_instances=1, coalesce=True)
    return scheduler
