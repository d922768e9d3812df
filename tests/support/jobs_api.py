"""A gateway over the simulator with teams, users and keys for the job-cost API's tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from testkit.simulator.openai_shapes import chat_prompt_tokens
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, add_models, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger"})
NANO = Decimal("0.000000001")
COMPLETION_TOKENS = 16  # the simulator's answer length (max_output_tokens of 'sim' is 64)


@dataclass
class JobsWorld:
    gw: RunningGateway
    keys: dict[str, str] = field(default_factory=dict)        # team -> API key secret
    user_tokens: dict[str, str] = field(default_factory=dict)  # team -> user token

    def client(self, team: str | None = None, token: str | None = None) -> httpx.Client:
        """A client with the team's API key (or `token`; neither: the admin token)."""
        return self.gw.client(token or (self.keys[team] if team else None) or _admin())


def _admin() -> str:
    from tests.support.gateway import ADMIN_TOKEN
    return ADMIN_TOKEN


def call_cost(messages: list[dict[str, Any]], completion: int = COMPLETION_TOKENS) -> int:
    """What one call costs on 'sim' ($1 / $2 per million tokens), in nano-USD."""
    return chat_prompt_tokens(messages) * 1_000 + completion * 2_000


@contextmanager
def jobs_world(data_dir: Path, teams: tuple[str, ...] = ("acme-corp", "startup-xyz", "beta-testing"),
               **settings: Any) -> Iterator[JobsWorld]:
    with Simulator(port=0) as sim:
        config = add_models(sim_config(sim.base_url), {"sim-error": "sim-error", "sim-slow": "sim-slow"})
        with running_gateway(data_dir, config, roles=ROLES, webhook_allow_private=True,
                             **settings) as gw:
            world = JobsWorld(gw)
            for team in teams:
                user = f"dev@{team}"
                world.user_tokens[team] = gw.setup_user(user, team_id=team)
                world.keys[team] = gw.issue_key(user, models=["sim", "sim-error", "sim-slow"])["key"]
            yield world
