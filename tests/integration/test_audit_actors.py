"""Domain entries name who asked: a key a user makes through /api/keys says `user:<id>`, one the
admin token makes says `admin:` and the token's first characters (never the token); the
scheduler's and the configuration's events, and events stored before actors were, say `system`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env
from domain.principals import Role
from domain.services.acting import acting_as, as_actor
from domain.services.audit_of_events import actor_of, entry_of
from domain.services.registry import Registry
from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, running_gateway, sim_config

ADMIN_ACTOR = f"admin:{ADMIN_TOKEN[:6]}…"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-actors"),
                                                   sim_config(sim.base_url)) as gateway:
        yield gateway


def entries_of(gw: RunningGateway, target: str, action: str, timeout_s: float = 10) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r.entry for r in gw.system.audit.records()
                 if (r.entry.target, r.entry.action) == (target, action)]
        if found:
            return found
        assert time.monotonic() < deadline, f"no {action} of {target} in the trail"
        time.sleep(0.05)


def test_a_key_alice_makes_is_hers_in_the_trail_and_one_the_admin_makes_shows_the_tokens_prefix(gw) -> None:
    alice = gw.setup_user("alice")
    with gw.client(alice) as client:
        mine = client.post("/api/keys", json={"name": "mine", "models": ["sim"], "budget_usd": "5"}).json()
        client.post(f"/api/keys/{mine['id']}/rotate").raise_for_status()
    made = gw.issue_key("alice")
    with gw.client() as admin:
        admin.delete(f"/api/keys/{made['id']}").raise_for_status()
        admin.put("/api/admin/users/alice/grant", json={"models": ["sim", "sim-embed"]}).raise_for_status()
    assert [e.actor for e in entries_of(gw, f"key:{mine['id']}", "KeyIssued")] == ["user:alice"]
    assert [e.actor for e in entries_of(gw, f"key:{mine['id']}", "KeyRotated")] == ["user:alice"]
    assert [e.actor for e in entries_of(gw, f"key:{mine['id']}", "BudgetSet")] == ["user:alice"]
    assert [e.actor for e in entries_of(gw, f"key:{made['id']}", "KeyIssued")] == [ADMIN_ACTOR]
    assert [e.actor for e in entries_of(gw, f"key:{made['id']}", "KeyRevoked")] == [ADMIN_ACTOR]
    assert [e.actor for e in entries_of(gw, "user:alice", "UserRegistered")] == [ADMIN_ACTOR]
    assert {e.actor for e in entries_of(gw, "user:alice", "UserGrantChanged")} == {ADMIN_ACTOR}
    # the same actor names the request that caused it, so one search finds both
    assert {e.actor for e in entries_of(gw, f"key:{made['id']}", "AdminActionPerformed")} == {ADMIN_ACTOR}
    with gw.client() as admin:
        found = admin.get("/api/admin/audit", params={"actor": "user:alice", "type": "KeyIssued"}).json()
    assert [e["target"] for e in found["entries"]] == [f"key:{mine['id']}"]
    trail_text = str([r.as_record() for r in gw.system.audit.records()])
    assert ADMIN_TOKEN not in trail_text and ADMIN_TOKEN[:12] not in trail_text
    assert {e.actor for e in entries_of(gw, "model:sim", "PriceSet")} == {"system"}  # the config's


def test_events_saved_outside_a_command_or_stored_before_actors_were_say_system() -> None:
    registry = Registry(FixedClock(datetime(2025, 3, 3, tzinfo=UTC)), env=memory_env())
    try:
        registry.register_user("bob")  # the configuration sync, the scheduler: nobody asked
        as_actor("user:carol", registry.register_user)("carol", Role.USER)
        with acting_as("user:dave"):
            registry.register_user("dave")
        events = [registry.mapper.to_domain_event(n) for n in registry.notification_log.select(1, 10)]
        assert [actor_of(e) for e in events] == ["system", "user:carol", "user:dave"]
        entries = [entry_of(n.topic, registry.mapper.to_domain_event(n), lambda *_: None)
                   for n in registry.notification_log.select(1, 10)]
        assert [e.actor for e in entries] == ["system", "user:carol", "user:dave"]
        assert all("actor" not in e.details for e in entries)  # the actor is the entry's, not a detail
        assert registry.user("carol").user_id == "carol"  # replay ignores the extra attribute
    finally:
        registry.close()


@pytest.mark.parametrize("stored", [None, "", 7, "x" * 201, "user:a\nb"])
def test_an_actor_that_is_not_a_short_printable_name_is_read_as_system(stored) -> None:
    class Event:
        actor = stored

    assert actor_of(Event()) == "system"


def test_a_secret_passed_as_an_actor_is_cut_to_its_display_prefix() -> None:
    registry = Registry(FixedClock(datetime(2025, 3, 3, tzinfo=UTC)), env=memory_env())
    try:
        secret = "sk-ml-" + "A" * 43
        as_actor(f"key:{secret}", registry.register_user)("erin")
        (event,) = [registry.mapper.to_domain_event(n) for n in registry.notification_log.select(1, 10)]
        assert secret not in event.actor and event.actor.endswith("…")
    finally:
        registry.close()
