"""Who may do what on the management API, offboarding, and secrets shown once.

alice and bob are users of team-a; root is an admin user. A user acts only on their own
keys and usage; another user's key looks exactly like a key that does not exist.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from infra.runner import ALL_ROLES
from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, openai_error, running_gateway, sim_config


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def gw(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(tmp_path_factory.mktemp("gw-authz"), sim_config(sim.base_url),
                         roles=ALL_ROLES) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def tokens(gw: RunningGateway) -> dict[str, str]:
    return {"alice": gw.setup_user("alice"), "bob": gw.setup_user("bob"),
            "root": gw.setup_user("root", team_id=None, role="admin")}


@pytest.fixture
def bob_key(gw: RunningGateway, tokens: dict[str, str]) -> dict:
    return gw.issue_key("bob")


def as_(gw: RunningGateway, token: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=gw.url, headers=headers, timeout=30)


def chat(gw: RunningGateway, secret: str, content: str = "hello", **body) -> httpx.Response:
    return httpx.post(gw.v1 + "/chat/completions", headers={"authorization": f"Bearer {secret}"},
                      json={"model": "sim", "messages": [{"role": "user", "content": content}],
                            "max_tokens": 4, **body}, timeout=30)


def key_ids(client: httpx.Client, **params) -> set[str]:
    response = client.get("/api/keys", params=params)
    response.raise_for_status()
    return {k["id"] for k in response.json()["data"]}


# ----- a user and another user's things -----------------------------------------------------


def test_a_user_cannot_list_another_users_keys(gw, tokens, bob_key):
    mine = gw.issue_key("alice")
    with as_(gw, tokens["alice"]) as alice:
        openai_error(alice.get("/api/keys", params={"user_id": "bob"}), 403, "not_your_resource")
        own = key_ids(alice)
    assert mine["id"] in own and bob_key["id"] not in own
    assert own == key_ids(as_(gw, ADMIN_TOKEN), user_id="alice")


def test_a_user_cannot_create_a_key_for_another_user(gw, tokens):
    before = key_ids(as_(gw, ADMIN_TOKEN), user_id="bob")
    with as_(gw, tokens["alice"]) as alice:
        response = alice.post("/api/keys", json={"name": "sneaky", "models": ["sim"], "user_id": "bob"})
        openai_error(response, 403, "not_your_resource")
        assert "key" not in response.json()
        assert alice.post("/api/keys", json={"name": "mine", "models": ["sim"]}).status_code == 201
    assert key_ids(as_(gw, ADMIN_TOKEN), user_id="bob") == before


@pytest.mark.parametrize("action", ["rotate", "revoke"])
def test_another_users_key_looks_exactly_like_a_key_that_does_not_exist(gw, tokens, bob_key, action):
    missing = str(uuid.uuid4())

    def attempt(client: httpx.Client, key_id: str) -> httpx.Response:
        if action == "rotate":
            return client.post(f"/api/keys/{key_id}/rotate")
        return client.delete(f"/api/keys/{key_id}")

    with as_(gw, tokens["alice"]) as alice:
        theirs, nothing = attempt(alice, bob_key["id"]), attempt(alice, missing)
    assert openai_error(theirs, 404, "key_not_found") == {
        **openai_error(nothing, 404, "key_not_found"),
        "message": openai_error(nothing, 404)["message"].replace(missing, bob_key["id"])}
    assert chat(gw, bob_key["key"]).status_code == 200  # bob's key is untouched


def test_a_user_cannot_read_another_users_usage(gw, tokens):
    with as_(gw, tokens["alice"]) as alice:
        openai_error(alice.get("/api/usage", params={"user_id": "bob"}), 403, "not_your_resource")
        own = alice.get("/api/usage")
        assert own.status_code == 200, own.text
        assert own.json()["user_id"] == "alice"
        assert alice.get("/api/usage", params={"user_id": "alice"}).json()["user_id"] == "alice"


def test_a_users_usage_counts_only_their_own_requests(gw, tokens):
    dora_token = gw.setup_user("dora")
    gw.setup_user("eve")
    dora, eve = gw.issue_key("dora"), gw.issue_key("eve")
    for _ in range(3):
        assert chat(gw, dora["key"]).status_code == 200
    assert chat(gw, eve["key"]).status_code == 200
    gw.wait_metered(dora["id"], 3)
    gw.wait_metered(eve["id"], 1)
    with as_(gw, dora_token) as client:
        for _ in range(200):  # the projector runs behind the ledger
            totals = client.get("/api/usage").json()["totals"]
            if totals["requests"] >= 3:
                break
            time.sleep(0.05)
    facts = gw.metered(dora["id"])
    assert totals["requests"] == 3
    assert totals["prompt_tokens"] == sum(f.prompt_tokens for f in facts)
    assert totals["completion_tokens"] == sum(f.completion_tokens for f in facts)


# ----- admins ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin token", "admin user"])
def test_admins_can_act_on_every_users_keys_and_usage(gw, tokens, bob_key, who):
    token = ADMIN_TOKEN if who == "admin token" else tokens["root"]
    with as_(gw, token) as admin:
        assert bob_key["id"] in key_ids(admin, user_id="bob")
        assert bob_key["id"] in key_ids(admin)  # no user_id: every user's keys
        created = admin.post("/api/keys", json={"name": "for bob", "models": ["sim"], "user_id": "bob"})
        assert created.status_code == 201, created.text
        assert created.json()["user_id"] == "bob"
        rotated = admin.post(f"/api/keys/{bob_key['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        assert chat(gw, rotated.json()["key"]).status_code == 200
        assert admin.delete(f"/api/keys/{bob_key['id']}").json()["status"] == "revoked"
        openai_error(chat(gw, rotated.json()["key"]), 401)
        usage = admin.get("/api/usage", params={"user_id": "bob"})
        assert usage.status_code == 200 and usage.json()["user_id"] == "bob"


def test_the_admin_token_must_say_which_user_a_key_is_for(gw, tokens):
    with as_(gw, ADMIN_TOKEN) as admin:
        openai_error(admin.post("/api/keys", json={"name": "k", "models": ["sim"]}), 400,
                     "user_id_required")


ADMIN_ONLY = [
    ("POST", "/api/admin/teams", {"team_id": "t-x", "name": "X"}),
    ("POST", "/api/admin/users", {"user_id": "mallory", "team_id": "team-a"}),
    ("POST", "/api/admin/users/alice/tokens", None),
    ("DELETE", "/api/admin/users/bob", None),
    ("PUT", "/api/admin/budgets/user/alice", {"limit_usd": "1000"}),
    ("GET", "/api/admin/budgets/user/alice", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY, ids=[f"{m} {p}" for m, p, _ in ADMIN_ONLY])
def test_admin_endpoints_refuse_user_tokens_with_403_and_missing_tokens_with_401(
        gw, tokens, method, path, body):
    with as_(gw, tokens["alice"]) as alice:
        openai_error(alice.request(method, path, json=body), 403, "admin_required")
    with as_(gw, None) as nobody:
        openai_error(nobody.request(method, path, json=body), 401, "missing_token")
    with as_(gw, "mlu-forged-token") as forger:
        openai_error(forger.request(method, path, json=body), 401, "invalid_token")
    with as_(gw, ADMIN_TOKEN) as admin:
        assert admin.get("/api/admin/budgets/user/alice").status_code == 200
    # nothing the refused calls asked for happened
    assert gw.system.ctx.registry_view.user("mallory") is None
    assert gw.system.ctx.registry_view.user("bob").active


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/keys"), ("POST", "/api/keys"),
                                              ("GET", "/api/usage"),
                                              ("POST", f"/api/keys/{uuid.UUID(int=1)}/rotate")])
def test_the_user_api_refuses_a_missing_or_unknown_token_with_401(gw, tokens, method, path):
    with as_(gw, None) as nobody:
        openai_error(nobody.request(method, path, json={"name": "k", "models": ["sim"]}), 401)
    with as_(gw, "mlu-forged-token") as forger:
        openai_error(forger.request(method, path, json={"name": "k", "models": ["sim"]}), 401)


def test_an_api_key_is_not_a_management_token(gw, tokens, bob_key):
    with as_(gw, bob_key["key"]) as client:
        openai_error(client.get("/api/keys"), 401, "invalid_token")


# ----- offboarding -----------------------------------------------------------------------------


def test_offboarding_revokes_every_key_and_kills_the_user_token(gw, tokens):
    token = gw.setup_user("carol")
    keys = [gw.issue_key("carol"), gw.issue_key("carol", models=["sim"])]
    with as_(gw, ADMIN_TOKEN) as admin:
        in_grace = admin.post(f"/api/keys/{keys[0]['id']}/rotate", json={"grace_seconds": 3600}).json()
    secrets = [keys[0]["key"], in_grace["key"], keys[1]["key"]]
    assert [chat(gw, s).status_code for s in secrets] == [200, 200, 200]
    with as_(gw, token) as carol:
        assert carol.get("/api/keys").status_code == 200
    with as_(gw, ADMIN_TOKEN) as admin:
        response = admin.delete("/api/admin/users/carol")
        assert response.status_code == 200, response.text
        assert sorted(response.json()["revoked_keys"]) == sorted(k["id"] for k in keys)
        for secret in secrets:
            openai_error(chat(gw, secret), 401, "invalid_api_key")
        with as_(gw, token) as carol:
            openai_error(carol.get("/api/keys"), 401, "invalid_token")
            openai_error(carol.post("/api/keys", json={"name": "again", "models": ["sim"]}), 401)
        listed = admin.get("/api/keys", params={"user_id": "carol"}).json()["data"]
        assert {k["status"] for k in listed} == {"revoked"}
        openai_error(admin.post("/api/keys", json={"name": "k", "models": ["sim"], "user_id": "carol"}),
                     404, "user_not_found")


# ----- shown once, never stored ------------------------------------------------------------


def test_a_key_secret_is_shown_once_and_never_listed(gw, tokens):
    with as_(gw, tokens["alice"]) as alice:
        created = alice.post("/api/keys", json={"name": "once", "models": ["sim"]})
        assert created.status_code == 201
        secret = created.json()["key"]
        rotated = alice.post(f"/api/keys/{created.json()['id']}/rotate", json={"grace_seconds": 60})
        new_secret = rotated.json()["key"]
        assert secret.startswith("sk-") and new_secret.startswith("sk-") and secret != new_secret
        listings = [alice.get("/api/keys").text]
    with as_(gw, ADMIN_TOKEN) as admin:
        listings += [admin.get("/api/keys").text, admin.get("/api/keys", params={"user_id": "alice"}).text]
    for text in listings:
        assert created.json()["id"] in text
        assert secret not in text and new_secret not in text
        assert '"key":' not in text
