"""Tagged requests end to end: tags reach the fact's labels, analytics groups by application,
and a malformed tag is a 400 that costs the key nothing (issue 11, application tags)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from infra.runner import ALL_ROLES
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, openai_error, running_gateway, sim_config


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-tags"),
                                                   sim_config(sim.base_url), roles=ALL_ROLES) as gateway:
        yield gateway


def chat(gw: RunningGateway, secret: str, tags: str | None = None, **body) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"} | ({"x-meterline-tags": tags} if tags else {})
    return httpx.post(gw.v1 + "/chat/completions", headers=headers, timeout=30,
                      json={"model": "sim", "max_tokens": 4,
                            "messages": [{"role": "user", "content": "hi"}], **body})


def test_tags_reach_the_facts_and_usage_groups_by_application(gw) -> None:
    token = gw.setup_user("ana")
    key = gw.issue_key("ana")
    assert chat(gw, key["key"], "app=canopy,env=prod").status_code == 200
    assert chat(gw, key["key"], metadata={"app": "lumen"}, user="end-7").status_code == 200
    assert chat(gw, key["key"]).status_code == 200
    facts = gw.wait_metered(key["id"], 3)
    assert [dict(f.labels) for f in facts] == [{"app": "canopy", "env": "prod"},
                                               {"app": "lumen", "end_user": "end-7"}, {}]
    deadline = time.monotonic() + 20  # the projector folds facts into analytics in batches
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as ana:
        while (usage := ana.get("/api/usage", params={"group_by": "application"}).json())[
                "totals"]["requests"] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert {row["group"]: row["requests"] for row in usage["data"]} == {"": 1, "canopy": 1, "lumen": 1}


def test_a_malformed_tag_is_a_400_and_does_not_count_against_the_key(gw) -> None:
    gw.setup_user("ben")
    key = gw.issue_key("ben", rpm_limit=1)
    refused = chat(gw, key["key"], "App=Canopy")
    assert "x-meterline-tags" in openai_error(refused, 400, "invalid_tags")["message"]
    assert openai_error(chat(gw, key["key"], metadata="canopy"), 400, "invalid_tags")["param"] == "metadata"
    assert chat(gw, key["key"], "app=canopy").status_code == 200  # the one request a minute
