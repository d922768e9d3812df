"""The scheduled anomaly scan as the composition root wires it (once at start, in the process
holding the analytics store) and GET /api/admin/anomalies: incidents newest first, filtered and
paged; bad parameters are a 400 naming the parameter, never a 500; users are refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from adapters.analytics.chdb import ChdbAnalytics
from adapters.bus.inproc import InProcessBus
from adapters.clock import FixedClock
from infra.anomaly_wiring import start_anomaly_scan
from infra.config.env_settings import Settings
from infra.container import Meterline, build
from infra.runner import gateway_app
from tests.support.anomaly_history import LAST_HOUR, NOW, ZONE, requests_in, working_days
from tests.support.gateway import ADMIN_TOKEN, KEY_SECRET, sim_config


@dataclass
class Running:
    system: Meterline
    client: TestClient
    clock: FixedClock


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir = tmp_path_factory.mktemp("anomalies-api")
    store = ChdbAnalytics(data_dir / "analytics", rollup_timezone=ZONE)
    facts = working_days("steady") + working_days("spiker") + working_days("flaky")
    facts += requests_in("spiker", LAST_HOUR, 65) + requests_in("flaky", LAST_HOUR, 25, errors=15)
    store.insert_usage(facts, batch_id="history")
    clock = FixedClock(NOW)
    settings = Settings(data_dir=data_dir / "system", dev=True, admin_token=ADMIN_TOKEN,
                        key_secret=KEY_SECRET, billing_timezone=ZONE, anomaly_scan_interval_s=3600)
    system = build(settings, sim_config("http://127.0.0.1:9/v1"), clock=clock, analytics=store,
                   bus=InProcessBus(partitions=1))
    try:
        asyncio.run(_scan_at_start(system))
        with TestClient(gateway_app(system, frozenset({"gateway"}))) as client:
            client.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
            yield Running(system, client, clock)
    finally:
        system.close()


async def _scan_at_start(system: Meterline) -> None:
    """The projector's scheduler, started as its process starts it: the first scan runs at once."""
    scheduler = start_anomaly_scan(system.settings, system.analytics, system.ctx.anomalies, system.clock,
                                   system.ctx.options.billing_timezone)
    assert scheduler is not None
    try:
        deadline = time.monotonic() + 30
        while not system.ctx.anomalies.incidents() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)


def test_the_scan_runs_once_at_start_and_records_what_it_found(running: Running) -> None:
    found = {(v.kind, v.scope, v.scope_id) for v in running.system.ctx.anomalies.incidents()}
    assert {("spike", "user", "spiker"), ("spike", "key", "spiker-key"),
            ("error_rate", "user", "flaky")} <= found
    assert not {f for f in found if f[2].startswith("steady")}


def test_admins_list_incidents_newest_first_with_their_figures(running: Running) -> None:
    body = running.client.get("/api/admin/anomalies").json()
    incidents = body["anomalies"]
    assert body["next_cursor"] is None and len(incidents) == len(running.system.ctx.anomalies.incidents())
    spike = next(i for i in incidents if (i["kind"], i["scope"], i["user_id"]) == ("spike", "user", "spiker"))
    assert spike["state"] == "open" and spike["resolved_at"] is None
    assert spike["figures"]["value_usd"] == "1.80" and spike["figures"]["baseline_median_usd"] == "0.50"
    assert spike["figures"]["window"] == "hour" and spike["figures"]["factor"] == 3.0


def test_incidents_are_filtered_by_kind_user_state_and_time(running: Running) -> None:
    def get(**params: str) -> list[dict]:
        return running.client.get("/api/admin/anomalies", params=params).json()["anomalies"]
    assert {i["kind"] for i in get(kind="error_rate")} == {"error_rate"}
    assert {i["user_id"] for i in get(user_id="flaky")} == {"flaky"}
    assert get(state="resolved") == []
    later = (NOW + timedelta(minutes=1)).isoformat()
    assert get(**{"from": later}) == []
    assert len(get(to=later, state="open")) >= 3


def test_pages_follow_the_cursor_to_the_oldest_incident(running: Running) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        body = running.client.get("/api/admin/anomalies", params=params).json()
        seen += [i["incident_id"] for i in body["anomalies"]]
        if not (cursor := body["next_cursor"]):
            break
    everything = running.client.get("/api/admin/anomalies").json()["anomalies"]
    assert seen == [i["incident_id"] for i in everything]


@pytest.mark.parametrize(("params", "param"), [
    ({"state": "closed"}, "state"), ({"kind": "spikes"}, "kind"), ({"user_id": "a/b"}, "user_id"),
    ({"user_id": "x" * 500}, "user_id"), ({"from": "yesterday"}, "from"), ({"to": "9999-01-01"}, "to"),
    ({"from": "2026-02-09", "to": "2026-02-08"}, "to"), ({"cursor": "nonsense"}, "cursor"),
    ({"cursor": "YW5vbWFsaWVzLWJlZm9yZTow"}, "cursor"), ({"cursor": "x" * 200}, "cursor"),
    ({"limit": "0"}, "limit"), ({"limit": "-1"}, "limit"), ({"limit": "١٢"}, "limit"),
    ({"from": "\x00"}, "from"), ({"from": "99999999999999999999"}, "from"),
])
def test_bad_parameters_are_a_400_naming_the_parameter(running: Running, params: dict, param: str) -> None:
    response = running.client.get("/api/admin/anomalies", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_only_admins_read_anomalies(running: Running) -> None:
    stranger = {"authorization": "Bearer nope"}
    assert running.client.get("/api/admin/anomalies", headers=stranger).status_code == 401
    user = {"user_id": "ursula", "email": "u@example.com"}
    running.client.post("/api/admin/users", json=user).raise_for_status()
    token = running.client.post("/api/admin/users/ursula/tokens").json()["token"]
    response = running.client.get("/api/admin/anomalies", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_the_api_answers_503_when_the_gateway_has_no_anomalies_store(running: Running) -> None:
    anomalies, running.system.ctx.anomalies = running.system.ctx.anomalies, None
    try:
        assert running.client.get("/api/admin/anomalies").status_code == 503
    finally:
        running.system.ctx.anomalies = anomalies
