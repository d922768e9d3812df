"""Who asked for a command: the actor recorded on the events it stores.

An API request runs its command through `as_actor(actor, command)` (in the worker thread that
runs it); the registry and the ledger stamp that actor on each event they save, as an extra
`actor` attribute. Events are stored with every attribute they carry, so the actor is kept and
read back; an aggregate's methods are called with only the attributes they name, so replay
ignores it; and an event stored before actors were recorded has none, which the audit trail
reads as `system` (`domain/services/audit_of_events.py`). The scheduler, the configuration sync
and the ledger's own work set no actor: their events are the system's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, TypeVar

from domain.audit.entry import redact

T = TypeVar("T")
_ACTOR: ContextVar[str | None] = ContextVar("meterline_actor", default=None)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Events saved inside the block carry `actor` (cut to a display prefix if it is a secret)."""
    token = _ACTOR.set(redact(actor))
    try:
        yield
    finally:
        _ACTOR.reset(token)


def as_actor(actor: str, command: Callable[..., T]) -> Callable[..., T]:
    """`command`, run as `actor`: for `ctx.command(as_actor(who.actor, registry.revoke_key), …)`."""
    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> T:
        with acting_as(actor):
            return command(*args, **kwargs)
    return run


def stamp(objects: tuple[Any, ...]) -> None:
    """Gives every pending event of `objects` the current actor, if a command set one."""
    actor = _ACTOR.get()
    if actor is None:
        return
    for obj in objects:
        for event in getattr(obj, "pending_events", ()):
            object.__setattr__(event, "actor", actor)  # events are frozen dataclasses


class RecordsActor:
    """Mixin for an Application: `save` stamps the acting actor on the events it stores."""

    def save(self, *objects: Any, **kwargs: Any) -> Any:
        stamp(objects)
        return super().save(*objects, **kwargs)  # type: ignore[misc]
