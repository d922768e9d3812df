"""The model catalogue at run time (issue 14): disable, re-route, re-price and add models through
the API, on a real gateway over the simulator; the config file never overwrites those changes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from domain.pricing import Price, Usage
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, openai_error, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger"})
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


def chat(gw: RunningGateway, secret: str, model: str) -> httpx.Response:
    return httpx.post(f"{gw.v1}/chat/completions", json={"model": model, **CHAT},
                      headers={"authorization": f"Bearer {secret}"}, timeout=30)


@pytest.fixture
def gw(tmp_path):
    with Simulator(port=0) as sim, running_gateway(tmp_path, sim_config(sim.base_url),
                                                   roles=ROLES) as gateway:
        gateway.setup_user("alice")
        gateway.sim = sim
        yield gateway


def put(gw: RunningGateway, name: str, body: dict, token: str | None = None) -> httpx.Response:
    with gw.client(token) if token else gw.client() as admin:
        return admin.put(f"/api/admin/models/{name}", json=body)


def test_the_catalogue_lists_the_configured_models_with_their_prices(gw):
    with gw.client() as admin:
        models = {m["model"]: m for m in admin.get("/api/admin/models").json()["models"]}
    sim = models["sim"]
    assert sim["enabled"] and sim["decided_by"] == "config file" and sim["upstream_model"] == "sim-model"
    assert sim["price_in_force"]["input_per_million"] == "1" and sim["price_in_force"]["version"] == 1


def test_a_disabled_model_answers_404_until_it_is_enabled_again(gw):
    secret = gw.issue_key("alice")["key"]
    assert chat(gw, secret, "sim").status_code == 200
    assert put(gw, "sim", {"enabled": False}).json()["enabled"] is False
    error = openai_error(chat(gw, secret, "sim"), 404)
    assert "does not exist or is disabled" in error["message"]
    assert put(gw, "sim", {"enabled": True}).status_code == 200
    assert chat(gw, secret, "sim").status_code == 200


def test_a_new_price_rates_the_next_requests_and_never_the_past_ones(gw):
    key = gw.issue_key("alice")
    assert chat(gw, key["key"], "sim").status_code == 200
    changed = put(gw, "sim", {"price": {"input_per_million": "10", "output_per_million": "20"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["price_in_force"]["version"] == 2 and changed.json()["decided_by"] == "catalogue"
    assert chat(gw, key["key"], "sim").status_code == 200
    before, after = gw.wait_metered(key["id"], 2)
    assert (before.price_version, after.price_version) == (1, 2)
    price = Price("sim", 2, datetime.now(UTC), 10_000_000_000, 20_000_000_000)
    assert after.cost == price.cost(Usage(after.prompt_tokens, after.completion_tokens, after.cached_tokens))
    assert before.cost < after.cost
    past = put(gw, "sim", {"price": {"input_per_million": "1", "output_per_million": "1",
                                     "effective_from": (datetime.now(UTC) - timedelta(days=1)).isoformat()}})
    assert past.status_code == 400 and "never re-rated" in past.text


def test_a_model_added_through_the_catalogue_is_served_from_its_upstream_and_metered(gw):
    added = put(gw, "sim-b", {"upstream_url": gw.sim.base_url + "/", "upstream_model": "sim-model",
                              "price": {"input_per_million": "3", "output_per_million": "4"}})
    assert added.status_code == 200, added.text
    assert added.json()["upstream_url"] == gw.sim.base_url
    key = gw.issue_key("alice", models=["sim-b"])
    answer = chat(gw, key["key"], "sim-b")
    assert answer.status_code == 200, answer.text
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.model == "sim-b" and fact.price_version == 1 and fact.cost > 0
    with httpx.Client() as client:
        listed = client.get(f"{gw.v1}/models", headers={"authorization": f"Bearer {key['key']}"}).json()
    assert [m["id"] for m in listed["data"]] == ["sim-b"]


@pytest.mark.parametrize("name, body, status, says", [
    ("ghost", {"enabled": False}, 400, "upstream_url"),
    ("ghost", {"upstream_url": "http://10.0.0.5:8000/v1"}, 400, "give its price"),
    ("sim", {"upstream_url": "file:///etc/passwd"}, 422, "http(s) URL"),
    ("sim", {"upstream_url": "http://user:pw@10.0.0.5/v1"}, 422, "no credentials"),
    ("sim", {"price": {"input_per_million": "-1", "output_per_million": "1"}}, 400, "input_per_million"),
    ("sim", {"price": {"input_per_million": "0.0000000001", "output_per_million": "1"}}, 400, "9 decimals"),
    ("sim", {"colour": "blue"}, 422, "colour"),
    ("sim", {"max_output_tokens": 0}, 422, "max_output_tokens"),
    ("../etc", {"enabled": False}, 404, ""),
])
def test_bad_changes_are_refused_with_what_is_wrong(gw, name, body, status, says):
    response = put(gw, name, body)
    assert response.status_code in (status, 400, 404, 422) and says in response.text, response.text
    assert "Traceback" not in response.text


def test_only_admins_change_the_catalogue(gw):
    token = gw.setup_user("bob", team_id=None)
    assert put(gw, "sim", {"enabled": False}, token=token).status_code == 403


def test_the_config_file_does_not_overwrite_a_catalogue_change_at_restart(tmp_path, caplog):
    price = {"price": {"input_per_million": "7", "output_per_million": "8"}}
    with Simulator(port=0) as sim:
        config = sim_config(sim.base_url)
        with running_gateway(tmp_path, config, roles=ROLES) as gw:
            assert put(gw, "sim", price).status_code == 200
        with caplog.at_level(logging.WARNING), running_gateway(tmp_path, config, roles=ROLES) as gw, \
                gw.client() as admin:
            sim_model = admin.get("/api/admin/models/sim").json()
    assert sim_model["price_in_force"]["input_per_million"] == "7" and len(sim_model["prices"]) == 2
    assert any("wins over the config file" in record.getMessage() for record in caplog.records)
