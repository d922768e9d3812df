"""Dates and ids at the edge of the management API (issue 9, items 5 and 7) and trailing slashes.

Every date the API accepts is read as an instant in [2000-01-01, 2200-01-01) UTC (a date without
an offset is UTC); anything else is a 400 that names the field, on a connection that stays usable.
User and team ids follow `domain.ids.ID_RULE`; free-text labels refuse control and bidi characters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from domain.ids import ID_MAX_LENGTH
from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, openai_error, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger", "scheduler"})
OWNER = "owner"

EXTREME_DATES = [
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999999",
    "0001-01-01",
    "1999-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
    "2199-12-31T23:00:00-05:00",  # 2200-01-01T04:00 in UTC
    "2000-01-01T00:00:00+01:00",  # 1999-12-31T23:00 in UTC
]
BAD_IDS = {
    "slash": "x/y",
    "nul": "a\x00b",
    "right-to-left override": "evil\u202egnp.exe",
    "empty": "",
    "200 characters": "a" * 200,
    "one past the cap": "a" * (ID_MAX_LENGTH + 1),
    "leading space": " alice",
    "trailing newline": "alice\n",
    "inner space": "al ice",
    "leading dash": "-lead",
    "leading dot": ".hidden",
    "non-ascii letter": "ünï",
    "percent": "a%2Fb",
    "question mark": "a?b",
    "hash": "a#b",
    "backslash": "a\\b",
}
BAD_LABELS = {
    "nul": "a\x00b",
    "newline": "two\nlines",
    "escape": "red\x1b[31m",
    "right-to-left override": "invoice\u202efdp.exe",
    "first strong isolate": "a\u2068b",
    "left-to-right mark": "a\u200eb",
    "201 characters": "a" * 201,
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-dates-ids"),
                                                   sim_config(sim.base_url), roles=ROLES) as gateway:
        gateway.setup_user(OWNER)
        yield gateway


@pytest.fixture
def admin(gw: RunningGateway) -> Iterator[httpx.Client]:
    with gw.client(ADMIN_TOKEN) as client:
        yield client


def local_port(response: httpx.Response) -> int:
    """The client's side of the connection that carried `response`."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def assert_connection_still_serves(client: httpx.Client, refused: httpx.Response) -> None:
    """The server either kept the connection (the next request uses it) or said it closes it."""
    if refused.headers.get("connection", "").lower() == "close":
        return
    following = client.get("/healthz")
    assert following.status_code == 200, following.text
    assert local_port(following) == local_port(refused), "the server dropped the connection"


# ----- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["from", "to"])
@pytest.mark.parametrize("value", EXTREME_DATES)
def test_a_usage_window_outside_the_supported_years_is_a_400_naming_the_field(admin, field, value):
    other = {"from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z"}
    response = admin.get("/api/usage", params={**other, field: value})
    error = openai_error(response, 400, "invalid_date")
    assert error["param"] == field
    assert "2000-01-01" in error["message"] and "2200-01-01" in error["message"], error
    assert response.headers.get("connection", "").lower() != "close"
    assert_connection_still_serves(admin, response)


@pytest.mark.parametrize("value", EXTREME_DATES + [253402300799, -62135596800, 10**20, "infinity"])
def test_a_key_expiry_outside_the_supported_years_is_a_400_naming_the_field(admin, value):
    response = admin.post("/api/keys", json={"name": "k", "models": ["sim"], "user_id": OWNER,
                                             "expires_at": value})
    error = openai_error(response, 400)
    assert "expires_at" in error["message"], error
    assert_connection_still_serves(admin, response)


def test_a_usage_window_inside_the_supported_years_is_answered_in_utc(admin):
    response = admin.get("/api/usage", params={"from": "2000-01-01T01:00:00+01:00",
                                               "to": "2199-12-31T23:59:59"})
    assert response.status_code == 200, response.text
    assert response.json()["from"] == "2000-01-01T00:00:00+00:00"
    assert response.json()["to"] == "2199-12-31T23:59:59+00:00"


def test_a_key_expiry_late_in_the_supported_years_is_kept_and_a_naive_one_is_utc(admin):
    response = admin.post("/api/keys", json={"name": "k", "models": ["sim"], "user_id": OWNER,
                                             "expires_at": "2199-12-31T23:59:59"})
    assert response.status_code == 201, response.text
    assert response.json()["expires_at"] == "2199-12-31T23:59:59+00:00"
    listed = admin.get("/api/keys", params={"user_id": OWNER})
    assert listed.status_code == 200 and any(k["id"] == response.json()["id"] for k in listed.json()["data"])


# ----- ids at creation ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_a_user_id_outside_the_id_rule_is_refused_at_creation(gw, admin, bad):
    response = admin.post("/api/admin/users", json={"user_id": bad, "team_id": None})
    error = openai_error(response, 400, "invalid_request")
    assert "user_id" in error["message"] and "letters, digits" in error["message"], error
    assert gw.system.ctx.registry_view.user(bad) is None
    assert_connection_still_serves(admin, response)


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_a_team_id_outside_the_id_rule_is_refused_at_creation(gw, admin, bad):
    response = admin.post("/api/admin/teams", json={"team_id": bad, "name": "Team"})
    error = openai_error(response, 400, "invalid_request")
    assert "team_id" in error["message"], error
    assert gw.system.ctx.registry_view.team(bad) is None


@pytest.mark.parametrize("field", ["name", "description"])
@pytest.mark.parametrize("bad", list(BAD_LABELS.values()), ids=list(BAD_LABELS))
def test_a_key_name_with_control_or_bidi_characters_is_refused(admin, field, bad):
    if field == "description" and bad in ("two\nlines", "a" * 201):
        bad = "a\x00b"  # a description may span lines and be long
    body = {"name": "k", "models": ["sim"], "user_id": OWNER, field: bad}
    error = openai_error(admin.post("/api/keys", json=body), 400, "invalid_request")
    assert field in error["message"], error


@pytest.mark.parametrize("field", ["name", "cost_center"])
@pytest.mark.parametrize("bad", list(BAD_LABELS.values()), ids=list(BAD_LABELS))
def test_a_team_label_with_control_or_bidi_characters_is_refused(admin, field, bad):
    body = {"team_id": f"t-{uuid.uuid4().hex[:8]}", "name": "Team", field: bad}
    error = openai_error(admin.post("/api/admin/teams", json=body), 400, "invalid_request")
    assert field in error["message"], error


def test_an_email_with_control_characters_is_refused(admin):
    body = {"user_id": f"u-{uuid.uuid4().hex[:8]}", "email": "a\x00@acme.com"}
    error = openai_error(admin.post("/api/admin/users", json=body), 400, "invalid_request")
    assert "email" in error["message"], error


def test_a_lone_surrogate_in_a_name_is_a_400_not_a_server_error(admin):
    raw = b'{"name": "bad \\ud800", "models": ["sim"], "user_id": "owner"}'
    response = admin.post("/api/keys", content=raw, headers={"content-type": "application/json"})
    openai_error(response, 400)
    assert_connection_still_serves(admin, response)


def test_a_key_description_may_span_lines(admin):
    body = {"name": "k", "models": ["sim"], "user_id": OWNER, "description": "line one\nline two\ttab"}
    response = admin.post("/api/keys", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["description"] == "line one\nline two\ttab"


def test_an_id_of_the_longest_allowed_length_is_accepted(admin):
    longest = "u" * ID_MAX_LENGTH
    assert admin.post("/api/admin/users", json={"user_id": longest}).status_code == 201
    token = admin.post(f"/api/admin/users/{longest}/tokens")
    assert token.status_code == 201, token.text


def test_an_email_shaped_user_id_works_end_to_end(gw, admin):
    team = admin.post("/api/admin/teams", json={"team_id": "acme.com", "name": "ACME"})
    assert team.status_code == 201, team.text
    created = admin.post("/api/admin/users", json={"user_id": "john@acme.com", "team_id": "acme.com",
                                                   "email": "john@acme.com"})
    assert created.status_code == 201, created.text
    issued = admin.post("/api/admin/users/john@acme.com/tokens")
    assert issued.status_code == 201, issued.text
    with gw.client(issued.json()["token"]) as john:
        key = john.post("/api/keys", json={"name": "john's key", "models": ["sim"]})
        assert key.status_code == 201, key.text
        assert key.json()["user_id"] == "john@acme.com"
        assert john.get("/api/usage").json()["user_id"] == "john@acme.com"
    plus = admin.post("/api/admin/users", json={"user_id": "john+bot@acme.com"})
    assert plus.status_code == 201, plus.text
    budget = admin.put("/api/admin/budgets/user/john@acme.com", json={"limit_usd": "5"})
    assert budget.status_code == 200, budget.text
    offboarded = admin.delete("/api/admin/users/john@acme.com")
    assert offboarded.status_code == 200, offboarded.text
    assert offboarded.json()["revoked_keys"] == [key.json()["id"]]
    with gw.client(issued.json()["token"]) as john:
        openai_error(john.get("/api/keys"), 401, "invalid_token")


# ----- ids in paths --------------------------------------------------------------------------

UNADDRESSABLE_PATHS = [
    ("POST", "/api/admin/users/%00/tokens"),
    ("POST", "/api/admin/users/%E2%80%AE/tokens"),
    ("DELETE", "/api/admin/users/x%2Fy"),
    ("DELETE", "/api/admin/users/x/y"),
    ("DELETE", "/api/admin/users/%E2%80%AE/x"),
    ("GET", "/api/%00/"),
    ("DELETE", "/api/admin/users/%20"),
    ("GET", "/api/admin/budgets/user/%00"),
    ("PUT", "/api/admin/budgets/team/%E2%80%AE"),
    ("POST", "/api/keys/%00/rotate"),
    ("DELETE", "/api/keys/..%2F..%2Fadmin"),
]


@pytest.mark.parametrize(("method", "path"), UNADDRESSABLE_PATHS,
                         ids=[f"{m} {p}" for m, p in UNADDRESSABLE_PATHS])
def test_a_path_naming_an_id_that_cannot_exist_is_a_clean_404(admin, method, path):
    response = admin.request(method, path, json={"limit_usd": "1"} if method == "PUT" else None)
    error = openai_error(response, 404)
    assert "\x00" not in response.text and "\u202e" not in response.text
    assert error["message"], error
    assert_connection_still_serves(admin, response)


# ----- trailing slashes --------------------------------------------------------------------

TRAILING = [("POST", "/v1/chat/completions/"), ("POST", "/v1/embeddings/"), ("GET", "/v1/models/"),
            ("GET", "/api/keys/"), ("POST", "/api/admin/users/"), ("GET", "/api/usage/"),
            ("GET", "/healthz/")]


@pytest.mark.parametrize(("method", "path"), TRAILING, ids=[f"{m} {p}" for m, p in TRAILING])
def test_a_trailing_slash_is_a_404_in_the_error_shape_not_a_redirect(gw, api_key, method, path):
    token = api_key if path.startswith("/v1") else ADMIN_TOKEN
    with gw.client(token) as client:
        response = client.request(method, path, json={"model": "sim", "input": "hi"}
                                  if method == "POST" else None)
        error = openai_error(response, 404)
        assert "location" not in response.headers
        assert path.rstrip("/") in error["message"], error
        assert_connection_still_serves(client, response)


@pytest.fixture(scope="module")
def api_key(gw: RunningGateway) -> str:
    return gw.issue_key(OWNER, models=["*"])["key"]
