"""Long streams are billed in parts: a kill -9 of the gateway mid-stream loses at most one
part of the bill, and the parts of a stream that ends sum to its exact usage, counted once
as one request (issue 9, "Long streams survive a gateway crash in the bill")."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from domain.pricing import Usage
from infra.config.toml_file import parse_config
from testkit.simulator.server import Simulator
from tests.support.deployment import ADMIN_TOKEN, KEY_SECRET
from tests.support.gateway import free_port, running_gateway
from tests.support.processes import Processes

PART = 10  # tokens per progress part in these tests
TOKENS = 300


def config_text(base_url: str) -> str:
    return f"""[[models]]
name = "sim"
upstream_url = "{base_url}"
upstream_model = "sim-model"
input_price_per_million = "1.00"
output_price_per_million = "2.00"
max_output_tokens = {TOKENS}
"""


def stream_body(tokens: int = TOKENS) -> dict:
    return {"model": "sim", "stream": True, "max_tokens": tokens,
            "messages": [{"role": "user", "content": "tell me a long story " * 20}]}


def test_a_stream_metered_in_parts_sums_to_its_exact_usage_and_counts_once(tmp_path: Path) -> None:
    with Simulator(port=0, completion_tokens=TOKENS) as sim, running_gateway(
            tmp_path, parse_config(config_text(sim.base_url), source="<test>"),
            stream_progress_tokens=PART, stream_progress_s=60) as gw:
        gw.setup_user("ada")
        key = gw.issue_key("ada", models=["sim"])
        with gw.client(key["key"]) as client, client.stream(
                "POST", "/v1/chat/completions",
                json={**stream_body(), "stream_options": {"include_usage": True}}) as response:
            events = [json.loads(line[6:]) for line in response.iter_lines()
                      if line.startswith("data: {")]
        usage = events[-1]["usage"]
        deadline = time.monotonic() + 15
        facts = gw.metered(key["id"])
        while not any(f.final for f in facts):
            assert time.monotonic() < deadline, f"no final fact among {len(facts)}"
            time.sleep(0.05)
            facts = gw.metered(key["id"])
        price = gw.system.ctx.registry_view.model("sim").price_at(gw.system.clock.now())
    parts = [f for f in facts if not f.final]
    assert len(parts) >= TOKENS // PART - 2
    assert [f.final for f in facts].count(True) == 1 and facts[-1].final
    assert len({f.request_id for f in facts}) == 1 and facts[0].request_id
    assert sum(f.requests for f in facts) == 1 and facts[0].requests == 1
    assert sum(f.prompt_tokens for f in facts) == usage["prompt_tokens"]
    assert sum(f.completion_tokens for f in facts) == usage["completion_tokens"] == TOKENS
    exact = price.cost(Usage(usage["prompt_tokens"], usage["completion_tokens"]))
    assert sum(f.cost for f in facts) == exact
    assert all(f.cost >= 0 and f.completion_tokens >= 0 for f in facts)


def test_a_short_stream_is_metered_in_one_fact_as_before(tmp_path: Path) -> None:
    with Simulator(port=0) as sim, running_gateway(
            tmp_path, parse_config(config_text(sim.base_url), source="<test>"),
            stream_progress_tokens=PART) as gw:
        gw.setup_user("bo")
        key = gw.issue_key("bo", models=["sim"])
        with gw.client(key["key"]) as client, client.stream(
                "POST", "/v1/chat/completions", json=stream_body(PART - 2)) as response:
            assert response.status_code == 200 and list(response.iter_lines())
        (fact,) = gw.wait_metered(key["id"], 1)
    assert (fact.request_id, fact.requests, fact.final) == ("", 1, True)


@pytest.mark.slow
def test_a_kill_9_mid_stream_loses_at_most_one_part_of_the_bill(tmp_path: Path) -> None:
    """Streams are cut by SIGKILL of `meterline up`; after a restart the ledger holds, per
    stream, at least what was delivered less one part, and each stream counts one request."""
    streams = 4
    with Simulator(port=0, completion_tokens=TOKENS, chunk_delay_ms=25) as sim, \
            Processes(tmp_path, _embedded_env(tmp_path, sim.base_url)) as processes:
        up = processes.spawn("up", "up", port=free_port())
        up.wait_healthy()
        keys = _keys(up, streams)
        delivered = [0] * streams
        threads = [threading.Thread(target=_consume, args=(up.url, key["key"], delivered, i), daemon=True)
                   for i, key in enumerate(keys)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while min(delivered) < 8 * PART and time.monotonic() < deadline:
            time.sleep(0.02)
        up.kill()
        for thread in threads:
            thread.join(10)
        assert all(8 * PART <= d < TOKENS for d in delivered), delivered
        up.start()
        up.wait_healthy()
        metered = _metered_per_key(up, keys, delivered)
    print(f"\nkill -9 mid-stream, parts of {PART} tokens: delivered {delivered}, metered "
          f"{[metered[k['id']][0] for k in keys]} completion tokens, requests "
          f"{[metered[k['id']][1] for k in keys]}")
    for key, got in zip(keys, delivered, strict=True):
        completion, requests = metered[key["id"]]
        assert requests == 1, (key["id"], metered)
        assert completion >= got - PART, (got, completion)
        assert completion <= got + PART + 1  # billed for what was (about to be) delivered, no more


def _embedded_env(tmp_path: Path, upstream: str) -> dict[str, str]:
    import os
    config = tmp_path / "meterline.toml"
    config.write_text(config_text(upstream))
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update(METERLINE_ADMIN_TOKEN=ADMIN_TOKEN, METERLINE_KEY_SECRET=KEY_SECRET,
               METERLINE_CONFIG=str(config), METERLINE_STREAM_PROGRESS_TOKENS=str(PART),
               METERLINE_STREAM_PROGRESS_S="60", PYTHONUNBUFFERED="1")
    return env


def _keys(up, streams: int) -> list[dict]:
    with up.client() as admin:
        admin.post("/api/admin/users", json={"user_id": "streamer"}).raise_for_status()
        return [admin.post("/api/keys", json={"name": f"s{i}", "models": ["sim"],
                                              "user_id": "streamer"}).raise_for_status().json()
                for i in range(streams)]


def _consume(url: str, secret: str, delivered: list[int], i: int) -> None:
    try:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"authorization": f"Bearer {secret}"}) as client, \
                client.stream("POST", "/v1/chat/completions", json=stream_body()) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"]:
                    delivered[i] += 1
    except httpx.HTTPError:
        pass  # the gateway died mid-stream


def _metered_per_key(up, keys: list[dict], delivered: list[int]) -> dict[str, tuple[int, int]]:
    """(completion tokens, requests) per key from /api/usage, once the restart has caught up."""
    deadline = time.monotonic() + 60
    with up.client() as admin:
        while True:
            rows = admin.get("/api/usage", params={"group_by": "key", "user_id": "streamer"}).json()
            got = {r["group"]: (r["completion_tokens"], r["requests"]) for r in rows.get("data", [])}
            if all(got.get(k["id"], (0, 0))[0] >= d - PART for k, d in zip(keys, delivered, strict=True)):
                return got
            if time.monotonic() > deadline:
                return got
            time.sleep(0.2)
