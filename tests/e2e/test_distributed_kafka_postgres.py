"""Meterline as deployed apart: Kafka-protocol bus (tansu), PostgreSQL event store, real processes.

1. `meterline up` under concurrent traffic is SIGKILLed and restarted on the same stores:
   every answered request is in the ledger exactly once.
2. Two `meterline gateway` replicas and one `meterline ledger`: a budget spent through
   replica A blocks the key on replica B, and a key revoked on A is refused on B, both
   within PROPAGATION_BOUND_S (docs/operations.md has the measured delays).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from domain.ports.bus import USAGE_TOPIC
from domain.quota_policy import Scope
from testkit.simulator.server import Simulator
from testkit.tansu import running_tansu
from tests.support.deployment import (
    BusThread,
    fresh_database,
    ledger_store,
    meterline_env,
    stored_facts,
    wait_audited,
    write_config,
)
from tests.support.gateway import free_port
from tests.support.processes import MeterlineProcess, Processes

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

PROPAGATION_BOUND_S = 2.0  # documented in docs/operations.md; measured ~0.1-0.3 s
CLIENT_WORKERS = 8
NANOS_PER_TOKEN_IN, NANOS_PER_TOKEN_OUT = 1_000, 2_000  # $1 / $2 per million (write_config)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, str, Simulator, Path]]:
    """A broker, a fresh database, the upstream simulator and a config naming it."""
    with running_tansu() as bootstrap, fresh_database("meterline_e2e") as dsn, \
            Simulator(port=0) as simulator:
        yield bootstrap, dsn, simulator, write_config(tmp_path / "meterline.toml", simulator.base_url)


def chat(words: int, max_tokens: int = 16) -> dict:
    return {"model": "sim", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": " ".join(["hello"] * words)}]}


def setup_keys(gateway: MeterlineProcess, count: int, **key_fields: object) -> list[dict]:
    with gateway.client() as admin:
        admin.post("/api/admin/teams", json={"team_id": "t1", "name": "t1"}).raise_for_status()
        admin.post("/api/admin/users", json={"user_id": "u1", "team_id": "t1"}).raise_for_status()
        keys = []
        for i in range(count):
            response = admin.post("/api/keys", json={"name": f"k{i}", "models": ["sim"],
                                                     "user_id": "u1", **key_fields})
            response.raise_for_status()
            keys.append(response.json())
        return keys


# ----- 1. kill -9 of `meterline up` mid-traffic ----------------------------------------------

@dataclass
class Tally:
    """What the clients saw, per key id."""

    ok: Counter = field(default_factory=Counter)
    tokens: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)   # connection refused: never sent
    in_flight: Counter = field(default_factory=Counter)  # sent, no answer: may be metered
    other: Counter = field(default_factory=Counter)      # answered, but not 200
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(url: str, keys: list[dict], tally: Tally, stop: threading.Event, worker: int) -> None:
    """Sends requests one after another, round robin over the keys, until `stop`."""
    i = worker
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            key = keys[i % len(keys)]
            i += 1
            body = chat(words=1 + keys.index(key))  # each key its own prompt size
            try:
                response = client.post("/v1/chat/completions", json=body,
                                       headers={"authorization": f"Bearer {key['key']}"})
            except httpx.ConnectError:
                with tally.lock:
                    tally.refused[key["id"]] += 1
                time.sleep(0.05)
                continue
            except httpx.TransportError:
                with tally.lock:
                    tally.in_flight[key["id"]] += 1
                continue
            with tally.lock:
                if response.status_code == 200:
                    tally.ok[key["id"]] += 1
                    tally.tokens[key["id"]] += response.json()["usage"]["total_tokens"]
                else:
                    tally.other[key["id"]] += 1


def test_up_killed_mid_traffic_loses_and_duplicates_nothing(tmp_path: Path, stack) -> None:
    """Every response a client received is in the ledger exactly once, across a kill -9.

    Precisely, for every key: 0 <= ledger requests - client 200s <= requests that failed
    in flight (sent, then the connection broke) or were answered with another status, and
    the same for tokens (each key's requests all use the same number of tokens); at most
    one request per client worker can be in flight at the kill. The store holds every
    fact published to meterline.usage once (no event id twice, none missing), and the
    analytics store (`/api/usage`) has the same requests and tokens per key.
    """
    bootstrap, dsn, _simulator, config = stack
    port = free_port()
    with Processes(tmp_path, meterline_env(bootstrap, dsn, config)) as processes:
        up = processes.spawn("up", "up", port=port)
        first_start = up.wait_healthy(90)
        keys = setup_keys(up, 3)
        tally, stop = Tally(), threading.Event()
        workers = [threading.Thread(target=client_loop, args=(up.url, keys, tally, stop, w))
                   for w in range(CLIENT_WORKERS)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(1.5)
            served_before_kill = sum(tally.ok.values())
            up.kill()
            killed_at = time.monotonic()
            up.start()
            restart = up.wait_healthy(90)
            time.sleep(2.0)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        served = sum(tally.ok.values())
        assert served_before_kill > 50 and served > served_before_kill + 50, tally

        with BusThread(bootstrap) as bus:
            records = bus.read_all(USAGE_TOPIC, served)
        published = {d.message.id for d in records}
        with ledger_store(dsn) as ledger:
            deadline = time.monotonic() + 60
            while len(facts := stored_facts(ledger)) < len(published) and time.monotonic() < deadline:
                time.sleep(0.2)
            caught_up = time.monotonic() - killed_at
        with up.client() as admin:  # analytics (chDB, fed by the projector in `up`) agrees
            deadline = time.monotonic() + 30
            while (usage := admin.get("/api/usage", params={"group_by": "key"}).json())[
                    "totals"]["requests"] < len(published) and time.monotonic() < deadline:
                time.sleep(0.2)
        up.terminate()

    ids = [f["event_id"] for f in facts]
    assert len(ids) == len(set(ids)), "an event id is stored twice"
    assert set(ids) == published, "the ledger does not hold exactly the published facts"
    ledger_count: Counter = Counter(f["key_id"] for f in facts)
    ledger_tokens: Counter = Counter()
    tokens_per_request: dict[str, set[int]] = defaultdict(set)
    for fact in facts:
        total = fact["prompt_tokens"] + fact["completion_tokens"]
        ledger_tokens[fact["key_id"]] += total
        tokens_per_request[fact["key_id"]].add(total)
    print(f"\nup kill -9: started in {first_start:.1f} s, restarted in {restart:.1f} s; clients: "
          f"{served} answered, {sum(tally.in_flight.values())} broken in flight, "
          f"{sum(tally.refused.values())} refused while down, {sum(tally.other.values())} other; "
          f"ledger {len(ids)} facts ({len(records)} records on the topic), complete "
          f"{caught_up:.1f} s after the kill")
    excess_total = 0
    for key in keys:
        kid = key["id"]
        assert len(tokens_per_request[kid]) == 1, tokens_per_request[kid]
        per_request = next(iter(tokens_per_request[kid]))
        excess = ledger_count[kid] - tally.ok[kid]
        assert 0 <= excess <= tally.in_flight[kid] + tally.other[kid], (kid, excess, tally)
        assert ledger_tokens[kid] - tally.tokens[kid] == excess * per_request
        excess_total += excess
    assert excess_total <= CLIENT_WORKERS
    assert {row["group"]: (row["requests"], row["total_tokens"]) for row in usage["data"]} == {
        k: (ledger_count[k], ledger_tokens[k]) for k in ledger_count}
    assert set(ledger_count) == {k["id"] for k in keys}


# ----- 2. two gateway replicas and a ledger ---------------------------------------------------

def cost_of(response: httpx.Response) -> int:
    usage = response.json()["usage"]
    return usage["prompt_tokens"] * NANOS_PER_TOKEN_IN + usage["completion_tokens"] * NANOS_PER_TOKEN_OUT


def first_status(client: httpx.Client, key: str, status: int, body: dict, timeout_s: float,
                 spent: list[int], waiting: int = 200,
                 served_at: list[float] | None = None) -> tuple[float, httpx.Response]:
    """Posts until a response has `status`, the others `waiting`; returns when and which.

    The cost of every 200 before it goes into `spent`, its arrival time into `served_at`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.post("/v1/chat/completions", json=body,
                               headers={"authorization": f"Bearer {key}"})
        if response.status_code == status:
            return time.monotonic(), response
        assert response.status_code == waiting, response.text
        if response.status_code == 200:
            spent.append(cost_of(response))
            if served_at is not None:
                served_at.append(time.monotonic())
        if time.monotonic() > deadline:
            raise AssertionError(f"no {status} within {timeout_s} s; last {response.status_code}")
        time.sleep(0.005)


def test_replicas_see_budget_blocks_and_revocations_within_the_bound(tmp_path: Path, stack) -> None:
    bootstrap, dsn, _simulator, config = stack
    with Processes(tmp_path, meterline_env(bootstrap, dsn, config)) as processes:
        # all three at once on an empty database: they race to create the tables
        ledger_process = processes.spawn("ledger", "ledger")
        a = processes.spawn("gateway", "gw-a", port=free_port())
        b = processes.spawn("gateway", "gw-b", port=free_port())
        a.wait_healthy(90)
        b.wait_healthy(90)
        ledger_process.wait_log("meterline ledger running", 60)
        body = chat(words=8)
        with a.client() as on_a, b.client() as on_b:
            budgeted = setup_keys(a, 1, budget_usd="0.0005")[0]
            spent_a: list[int] = []   # costs of the budgeted key's 200s on A
            spent_b: list[int] = []   # ... and on B
            issued = time.monotonic()
            seen_on_b, answer = first_status(on_b, budgeted["key"], 200, body, 10, spent_b, 401)
            spent_b.append(cost_of(answer))
            key_delay = seen_on_b - issued

            served_at_a: list[float] = []
            blocked_a, refusal = first_status(on_a, budgeted["key"], 429, body, 30, spent_a,
                                              served_at=served_at_a)
            assert refusal.json()["error"]["code"] == "insufficient_quota"
            served_on_b = len(spent_b)
            blocked_b, refusal = first_status(on_b, budgeted["key"], 429, body,
                                              PROPAGATION_BOUND_S * 2, spent_b)
            assert refusal.json()["error"]["code"] == "insufficient_quota"
            budget_delay = blocked_b - blocked_a
            since_last_on_a = blocked_b - served_at_a[-1]
            served_on_b_meanwhile = len(spent_b) - served_on_b

            revoke_delays = []
            for i in range(3):
                response = on_a.post("/api/keys", json={"name": f"r{i}", "models": ["sim"],
                                                        "user_id": "u1"})
                response.raise_for_status()
                plain = response.json()
                first_status(on_b, plain["key"], 200, body, 10, [], 401)
                on_a.delete(f"/api/keys/{plain['id']}").raise_for_status()
                revoked = time.monotonic()
                assert on_a.post("/v1/chat/completions", json=body, headers={
                    "authorization": f"Bearer {plain['key']}"}).status_code == 401
                refused_b, _ = first_status(on_b, plain["key"], 401, body,
                                            PROPAGATION_BOUND_S * 2, [])
                revoke_delays.append(refused_b - revoked)

        limit = 500_000  # nano-USD
        served = sum(spent_a) + sum(spent_b)
        with ledger_store(dsn) as ledger:
            deadline = time.monotonic() + 30
            while (spend := ledger.budget(Scope.KEY, budgeted["id"]).period_spent) != served \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            # the ledger process records the revocations into the audit trail on PostgreSQL too
            wait_audited(dsn, Path(processes.env["METERLINE_AUDIT_KEY_FILE"]), "KeyRevoked", 3)
        revocations = ", ".join(f"{d:.3f}" for d in revoke_delays)
        print(f"\nreplicas: key issued on A usable on B after {key_delay:.3f} s; budget block "
              f"A -> B {budget_delay:.3f} s after A's first 429, {since_last_on_a:.3f} s after A's "
              f"last 200 ({served_on_b_meanwhile} requests served on B meanwhile); revocation "
              f"A -> B {revocations} s (median {statistics.median(revoke_delays):.3f}); key spend "
              f"{spend} of {limit} nano-USD ({len(spent_a)} requests on A, {len(spent_b)} on B)")
        assert spend == served, "the ledger's spend differs from what the clients were served"
        assert budget_delay < PROPAGATION_BOUND_S
        assert since_last_on_a < PROPAGATION_BOUND_S
        assert max(revoke_delays) < PROPAGATION_BOUND_S
        # the replica bound: A alone never passes the cap, so the excess is at most what B served
        assert spend <= limit + sum(spent_b)
