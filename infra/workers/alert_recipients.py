"""Who an alert goes to: a rule's recipients (`@owner`, `@admins`, user ids, addresses) made into
the addresses each channel understands, read from the registry."""

from __future__ import annotations

import logging
import time
from typing import Protocol
from uuid import UUID

from domain.alerts.rule_spec import ADMINS, OWNER, RuleSpec, is_email
from domain.principals import Role, User
from domain.services.registry import Registry

log = logging.getLogger(__name__)
ADMINS_TTL_S = 30.0  # admins change rarely; reading every user for each trigger would not scale


class Directory(Protocol):
    def user_email(self, user_id: str) -> str | None: ...
    def owner_of(self, scope: str, scope_id: str) -> str | None: ...
    def admins(self) -> list[tuple[str, str | None]]: ...


class RegistryDirectory:
    """The registry's users and keys, as the alerts worker needs them."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._admins: tuple[float, list[tuple[str, str | None]]] | None = None

    def _user(self, user_id: str) -> User | None:
        try:
            user = self.registry.user(user_id)
        except Exception:  # noqa: BLE001 - an unknown or unreadable user receives nothing
            return None
        return user if user.active else None

    def user_email(self, user_id: str) -> str | None:
        user = self._user(user_id)
        return user.email if user else None

    def owner_of(self, scope: str, scope_id: str) -> str | None:
        """The user whose spend it is: the user, a key's user; a team has none (its admins hear)."""
        if scope == "user":
            return scope_id
        if scope == "key":
            try:
                return self.registry.key(UUID(scope_id)).user_id
            except Exception:  # noqa: BLE001 - a key id the registry does not know has no owner
                return None
        return None

    def admins(self) -> list[tuple[str, str | None]]:
        """(user id, e-mail) of every active admin user."""
        now = time.monotonic()
        if self._admins is None or now - self._admins[0] > ADMINS_TTL_S:
            ids = {u: None for t in ("meterline.UserRegistered", "meterline.UserChanged")
                   for u in self.registry._originators(t)}  # noqa: SLF001 - the registry's own log walk
            users = [u for u in (self._by_id(i) for i in ids) if u and u.active and u.role is Role.ADMIN]
            self._admins = (now, [(u.user_id, u.email) for u in users])
        return self._admins[1]

    def _by_id(self, aggregate_id: UUID) -> User | None:
        try:
            found = self.registry.repository.get(aggregate_id)
        except Exception:  # noqa: BLE001
            return None
        return found if isinstance(found, User) else None


def users_of(recipient: str, scope: str, scope_id: str, directory: Directory) -> list[str]:
    """The user ids one recipient entry stands for (none for an e-mail address)."""
    if is_email(recipient):
        return []
    if recipient == OWNER:
        owner = directory.owner_of(scope, scope_id)
        if owner is not None:
            return [owner]
        recipient = ADMINS  # a team's or an unknown key's spend: the admins hear of it
    if recipient == ADMINS:
        return [uid for uid, _ in directory.admins()]
    return [recipient]


def user_ids(spec: RuleSpec, scope: str, scope_id: str, directory: Directory) -> list[str]:
    """The users an in-app notice goes to (e-mail addresses in the recipients are skipped)."""
    return list(dict.fromkeys(u for r in spec.recipients for u in users_of(r, scope, scope_id, directory)))


def email_addresses(spec: RuleSpec, scope: str, scope_id: str, directory: Directory) -> list[str]:
    """The addresses an e-mail goes to; a user without an e-mail address is logged and skipped."""
    found: list[str] = []
    for recipient in spec.recipients:
        if is_email(recipient):
            found.append(recipient)
        for uid in users_of(recipient, scope, scope_id, directory):
            email = directory.user_email(uid)
            if email:
                found.append(email)
            else:
                log.info("alert rule %r: user %s has no e-mail address; no e-mail sent to them",
                         spec.name, uid)
    return list(dict.fromkeys(found))
