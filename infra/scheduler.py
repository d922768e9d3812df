"""Periodic work (apscheduler): budget period rollover, grace-window expiry, key expiry."""

from __future__ import annotations

import logging

import anyio
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from domain.budget import Budget
from domain.ledger import Ledger
from domain.registry import Registry
from gateway.directory import Directory

log = logging.getLogger(__name__)


def budget_ids(directory: Directory) -> list:
    """Every budget a known principal may have."""
    return [Budget.id_for(scope, scope_id) for scope, scope_id in directory.budget_scopes()]


def observe_budgets(ledger: Ledger, directory: Directory) -> int:
    ids = [i for i in budget_ids(directory) if i in ledger.repository]
    return ledger.observe_budgets(ids)


def expire_keys(registry: Registry, directory: Directory) -> int:
    return registry.expire_keys(directory.api_keys())


def build_scheduler(registry: Registry, ledger: Ledger, directory: Directory,
                    after: object = None, interval_s: int = 60) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")

    async def tick() -> None:
        try:
            changed = await anyio.to_thread.run_sync(observe_budgets, ledger, directory)
            changed += await anyio.to_thread.run_sync(expire_keys, registry, directory)
            if changed and callable(after):
                await anyio.to_thread.run_sync(after)
        except Exception:
            log.exception("scheduler: periodic budget and key checks failed; retrying next tick")

    scheduler.add_job(tick, "interval", seconds=interval_s, id="budgets-and-keys",
                      max_instances=1, coalesce=True)
    return scheduler
