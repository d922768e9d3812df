"""Grants (issue 9, item 8): the models and key budgets a user may give the keys they create.

The escape this closes: an admin puts a budget on a user's key, and the user mints a second
key for every model with no budget. With a grant, keys the user (or an admin for them) creates
are held to it; /v1/models lists only what the grant allows. Nobody set a grant: nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.simulator.server import Simulator
from tests.support.gateway import (
    ADMIN_TOKEN,
    RunningGateway,
    add_models,
    openai_error,
    running_gateway,
    sim_config,
)

ROLES = frozenset({"gateway", "ledger", "scheduler"})
EVERY_MODEL = ["sim", "sim-b", "sim-embed"]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0) as simulator:
        yield simulator


def config(sim: Simulator):
    return add_models(sim_config(sim.base_url), {"sim-b": "sim-model"})


@pytest.fixture(scope="module")
def gw(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(tmp_path_factory.mktemp("gw-grants"), config(sim), roles=ROLES) as gateway:
        yield gateway


def as_(gw: RunningGateway, token: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {token}"}, timeout=30)


def put_grant(gw: RunningGateway, kind: str, name: str, **body) -> dict:
    with gw.client() as admin:
        response = admin.put(f"/api/admin/{kind}/{name}/grant", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def new_key(client: httpx.Client, models: list[str], **fields) -> httpx.Response:
    return client.post("/api/keys", json={"name": "mine", "models": models, **fields})


def listed_models(gw: RunningGateway, secret: str) -> list[str]:
    response = httpx.get(gw.v1 + "/models", headers={"authorization": f"Bearer {secret}"})
    response.raise_for_status()
    return [m["id"] for m in response.json()["data"]]


def test_a_user_cannot_escape_a_key_budget_by_minting_an_unbudgeted_key_for_every_model(gw):
    token = gw.setup_user("eve", team_id="team-escape")
    budgeted = gw.issue_key("eve", ["sim"])
    with gw.client() as admin:
        admin.put(f"/api/admin/budgets/key/{budgeted['id']}", json={"limit_usd": "1"}
                  ).raise_for_status()
    put_grant(gw, "users", "eve", models=["sim"], max_key_budget_usd="1")
    with as_(gw, token) as eve:
        error = openai_error(new_key(eve, ["*"]), 403, "model_not_granted")
        assert "'*'" in error["message"] and "['sim']" in error["message"]
        openai_error(new_key(eve, ["sim", "sim-b"]), 403, "model_not_granted")
        openai_error(new_key(eve, ["sim"], budget_usd="5"), 403, "budget_not_granted")
        openai_error(new_key(eve, ["sim"], budget_usd="1", budget_mode="soft"), 403,
                     "budget_not_granted")
        bounded = new_key(eve, ["sim"])
    assert bounded.status_code == 201, bounded.text
    assert (bounded.json()["models"], bounded.json()["budget_usd"]) == (["sim"], "1")
    assert bounded.json()["budget_mode"] == "hard"


def test_a_key_created_without_a_budget_gets_the_grants_default_budget(gw):
    token = gw.setup_user("dora", team_id=None)
    shown = put_grant(gw, "users", "dora", max_key_budget_usd="2",
                      default_key_budget={"limit_usd": "0.5", "period": "week", "mode": "grace",
                                          "grace_percent": 20})
    assert shown["grant"]["default_key_budget"] == {
        "limit_usd": "0.5", "period": "week", "mode": "grace", "grace_percent": 20,
        "grace_hours": None}
    with as_(gw, token) as dora:
        key = new_key(dora, ["sim"]).json()
        kept = new_key(dora, ["sim"], budget_usd="1.5").json()
    with gw.client() as admin:
        budget = admin.get(f"/api/admin/budgets/key/{key['id']}").json()
    assert (budget["limit_usd"], budget["period"], budget["mode"], budget["grace_percent"]) == (
        "0.5", "week", "grace", 20)
    assert (kept["budget_usd"], kept["budget_mode"]) == ("1.5", "hard")


def test_an_admin_creating_a_key_for_a_user_is_held_to_the_users_grant(gw):
    gw.setup_user("carl", team_id=None)
    put_grant(gw, "users", "carl", models=["sim-b"], max_key_budget_usd="3")
    with gw.client() as admin:
        error = openai_error(new_key(admin, ["sim"], user_id="carl"), 403, "model_not_granted")
        assert "PUT /api/admin/users/carl/grant" in error["message"]
        openai_error(new_key(admin, ["sim-b"], user_id="carl", budget_usd="4"), 403,
                     "budget_not_granted")
        key = admin.post("/api/keys", json={"name": "k", "models": ["sim-b"], "user_id": "carl"})
        assert key.status_code == 201 and key.json()["budget_usd"] == "3"
        raised = admin.put(f"/api/admin/budgets/key/{key.json()['id']}", json={"limit_usd": "9"})
        openai_error(raised, 403, "budget_not_granted")
        put_grant(gw, "users", "carl")  # {} lifts every restriction
        assert admin.put(f"/api/admin/budgets/key/{key.json()['id']}",
                         json={"limit_usd": "9"}).status_code == 200


def test_a_users_grant_is_intersected_with_their_teams(gw):
    token = gw.setup_user("tina", team_id="team-narrow")
    put_grant(gw, "teams", "team-narrow", models=["sim", "sim-embed"], max_key_budget_usd="5")
    shown = put_grant(gw, "users", "tina", models=["sim", "sim-b"], max_key_budget_usd="10",
                      default_key_budget={"limit_usd": "3"})
    assert shown["effective"]["models"] == ["sim"]
    assert shown["effective"]["max_key_budget_usd"] == "5"
    assert shown["effective"]["default_key_budget"]["limit_usd"] == "3"
    with gw.client() as admin:
        assert admin.get("/api/admin/users/tina/grant").json() == shown
        team = admin.get("/api/admin/teams/team-narrow/grant").json()
    assert team["grant"]["models"] == ["sim", "sim-embed"] and "effective" not in team
    with as_(gw, token) as tina:
        openai_error(new_key(tina, ["sim-embed"]), 403, "model_not_granted")
        openai_error(new_key(tina, ["sim-b"]), 403, "model_not_granted")
        openai_error(new_key(tina, ["sim"], budget_usd="6"), 403, "budget_not_granted")
        assert new_key(tina, ["sim"]).json()["budget_usd"] == "3"


def test_v1_models_lists_only_models_both_the_key_and_the_grant_allow(gw):
    gw.setup_user("vic", team_id="team-vic")
    wide = gw.issue_key("vic", ["*"])
    narrow = gw.issue_key("vic", ["sim-b"])
    assert listed_models(gw, wide["key"]) == EVERY_MODEL
    put_grant(gw, "teams", "team-vic", models=["sim", "sim-b"])
    put_grant(gw, "users", "vic", models=["sim", "sim-embed", "sim-b"])
    assert listed_models(gw, wide["key"]) == ["sim", "sim-b"]
    assert listed_models(gw, narrow["key"]) == ["sim-b"]
    put_grant(gw, "users", "vic", models=["sim-embed"])
    assert listed_models(gw, wide["key"]) == []


def test_a_grant_naming_unknown_models_or_a_default_above_its_maximum_is_refused(gw):
    gw.setup_user("gus", team_id=None)
    with gw.client() as admin:
        error = openai_error(admin.put("/api/admin/users/gus/grant",
                                       json={"models": ["sim", "gpt-nope", "nope-2"]}),
                             400, "model_not_found")
        assert "gpt-nope" in error["message"] and "nope-2" in error["message"]
        error = openai_error(admin.put("/api/admin/users/gus/grant", json={
            "max_key_budget_usd": "1", "default_key_budget": {"limit_usd": "2"}}), 400)
        assert "default key budget" in error["message"]
        openai_error(admin.put("/api/admin/users/gus/grant", json={"max_key_budget_usd": "-1"}),
                     400)
        openai_error(admin.put("/api/admin/users/gus/grant", json={"max_key_budget_usd": "0.1234567891"}),
                     400)
        openai_error(admin.put("/api/admin/users/gus/grant", json={"modles": ["sim"]}), 400)
        openai_error(admin.put("/api/admin/users/nobody/grant", json={}), 404, "user_not_found")
        openai_error(admin.get("/api/admin/teams/no-team/grant"), 404, "team_not_found")
        assert admin.get("/api/admin/users/gus/grant").json()["grant"]["models"] == ["*"]


def test_only_admins_may_read_or_change_grants(gw):
    token = gw.setup_user("mallory", team_id=None)
    with as_(gw, token) as mallory:
        openai_error(mallory.put("/api/admin/users/mallory/grant", json={}), 403, "admin_required")
        openai_error(mallory.get("/api/admin/users/mallory/grant"), 403, "admin_required")


def test_a_deployment_that_never_set_a_grant_behaves_as_before(gw):
    token = gw.setup_user("olga", team_id="team-old")
    with as_(gw, token) as olga:
        key = new_key(olga, ["*"])
    assert key.status_code == 201, key.text
    assert (key.json()["models"], key.json()["budget_usd"]) == (["*"], None)
    assert listed_models(gw, key.json()["key"]) == EVERY_MODEL
    with gw.client() as admin:
        shown = admin.get("/api/admin/users/olga/grant").json()
    open_grant = {"models": ["*"], "default_key_budget": None, "max_key_budget_usd": None}
    assert shown == {"user_id": "olga", "team_id": "team-old", "grant": open_grant,
                     "effective": open_grant}


def test_grants_survive_a_restart(sim: Simulator, tmp_path: Path):
    with running_gateway(tmp_path / "data", config(sim), roles=ROLES) as first:
        token = first.setup_user("rita", team_id="team-r")
        wide = first.issue_key("rita", ["*"])
        put_grant(first, "teams", "team-r", models=["sim", "sim-b"])
        put_grant(first, "users", "rita", models=["sim"], max_key_budget_usd="2",
                  default_key_budget={"limit_usd": "1", "period": "day"})
        before = as_(first, ADMIN_TOKEN).get("/api/admin/users/rita/grant").json()
    with running_gateway(tmp_path / "data", config(sim), roles=ROLES) as second:
        assert as_(second, ADMIN_TOKEN).get("/api/admin/users/rita/grant").json() == before
        assert listed_models(second, wide["key"]) == ["sim"]
        with as_(second, token) as rita:
            openai_error(new_key(rita, ["*"]), 403, "model_not_granted")
            assert new_key(rita, ["sim"]).json()["budget_usd"] == "1"


def test_a_key_made_before_a_grant_narrowed_cannot_use_the_models_taken_away(gw):
    gw.setup_user("gil", team_id=None)
    key = gw.issue_key("gil", models=["sim", "sim-b"])["key"]
    put_grant(gw, "users", "gil", models=["sim"])
    auth = {"authorization": f"Bearer {key}"}
    body = {"max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    served = httpx.post(gw.v1 + "/chat/completions", headers=auth, json={"model": "sim", **body})
    assert served.status_code == 200
    taken = httpx.post(gw.v1 + "/chat/completions", headers=auth, json={"model": "sim-b", **body})
    assert "sim-b" in openai_error(taken, 403, "model_not_granted")["message"]
