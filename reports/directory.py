"""Names for the ids in a report, looked up in whatever knows the registry's state (the gateway's
in-memory view, or the registry application in the CLI); an unknown id keeps its id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID


class LookupDirectory:
    """`key(UUID)` and `team(team_id)` return the aggregate or None (or raise: read as unknown)."""

    def __init__(self, key: Callable[[UUID], Any], team: Callable[[str], Any]) -> None:
        self._key, self._team = key, team

    def key_name(self, key_id: str) -> str | None:
        try:
            return getattr(self._key(UUID(key_id)), "name", None)
        except ValueError:  # not a UUID, or a key the registry does not know (its NotFoundError)
            return None

    def team_name(self, team_id: str) -> str | None:
        return getattr(self._find_team(team_id), "name", None)

    def cost_center(self, team_id: str) -> str | None:
        return getattr(self._find_team(team_id), "cost_center", None)

    def _find_team(self, team_id: str) -> Any:
        try:
            return self._team(team_id)
        except ValueError:  # a team the registry does not know
            return None
