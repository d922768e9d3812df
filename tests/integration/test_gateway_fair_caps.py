"""Fair hard caps under a burst: a request refused only because of what others hold reserved
waits, bounded, for them to settle, so every affordable request is served and the cap is
never passed (issue 9, "Fair hard caps under a burst")."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx

from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, running_gateway, sim_config

BODY = {"model": "sim", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
BURST = 40


def record_reservations(gw: RunningGateway) -> list[int]:
    """The worst case of every reservation the guard is asked for, in order."""
    guard, amounts = gw.system.ctx.guard, []
    real = guard.reserve

    def reserve(scopes, amount, now=None):
        amounts.append(amount)
        return real(scopes, amount, now)

    guard.reserve = reserve  # type: ignore[method-assign]
    return amounts


def usd(nanos: int) -> str:
    return str(Decimal(nanos) / 10**9)


def call(gw: RunningGateway, secret: str) -> httpx.Response:
    return httpx.post(gw.v1 + "/chat/completions", json=BODY, timeout=60,
                      headers={"authorization": f"Bearer {secret}"})


def burst(gw: RunningGateway, secret: str) -> list[tuple[int, str | None, float]]:
    def one(_: int) -> tuple[int, str | None, float]:
        started = time.monotonic()
        response = call(gw, secret)
        code = response.json()["error"]["code"] if response.status_code >= 400 else None
        return response.status_code, code, time.monotonic() - started

    with ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(one, range(BURST)))


def measure(gw: RunningGateway) -> tuple[int, int]:
    """(worst case reserved, metered cost) of one request of BODY."""
    amounts = record_reservations(gw)
    gw.setup_user("probe")
    probe = gw.issue_key("probe", models=["sim"])
    assert call(gw, probe["key"]).status_code == 200
    (fact,) = gw.wait_metered(probe["id"], 1)
    return amounts[-1], fact.cost


def test_a_burst_of_40_on_a_budget_that_affords_7_serves_all_7_and_never_overspends(tmp_path: Path) -> None:
    with Simulator(port=0, latency_ms=150) as sim, running_gateway(
            tmp_path, sim_config(sim.base_url), reservation_wait_s=10) as gw:
        worst, cost = measure(gw)
        assert worst > 2 * cost, "the scenario needs reservations well above the real cost"
        cap = 6 * cost + worst + cost // 2  # the 7th fits (6 spent + its worst case), an 8th not
        gw.setup_user("burst")
        key = gw.issue_key("burst", models=["sim"], budget_usd=usd(cap))
        results = burst(gw, key["key"])
        served = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] != 200]
        facts = gw.wait_metered(key["id"], len(served))
        gw.wait_ledger(len(facts) + 1)
    waited = sorted(round(r[2], 2) for r in served)
    print(f"\nburst of {BURST}, worst case {worst}, cost {cost}, cap {cap} nano-USD: served "
          f"{len(served)}, refused {len(refused)}, spent {sum(f.cost for f in facts)}; "
          f"served after {waited} s")
    assert len(served) == 7, results
    assert {(status, code) for status, code, _ in refused} == {(429, "insufficient_quota")}
    assert sum(f.cost for f in facts) == 7 * cost <= cap


def test_without_a_wait_the_same_burst_refuses_affordable_requests(tmp_path: Path) -> None:
    """The control: what the wait changes (and why it exists)."""
    with Simulator(port=0, latency_ms=150) as sim, running_gateway(
            tmp_path, sim_config(sim.base_url), reservation_wait_s=0) as gw:
        worst, cost = measure(gw)
        gw.setup_user("burst")
        key = gw.issue_key("burst", models=["sim"], budget_usd=usd(6 * cost + worst + cost // 2))
        served = [r for r in burst(gw, key["key"]) if r[0] == 200]
    print(f"\nthe same burst without the wait: served {len(served)} of the 7 affordable")
    assert len(served) < 7


def test_a_request_that_cannot_fit_even_with_nothing_reserved_is_refused_at_once(tmp_path: Path) -> None:
    with Simulator(port=0) as sim, running_gateway(
            tmp_path, sim_config(sim.base_url), reservation_wait_s=10) as gw:
        worst, _ = measure(gw)
        gw.setup_user("poor")
        key = gw.issue_key("poor", models=["sim"], budget_usd=usd(worst - 1))
        started = time.monotonic()
        response = call(gw, key["key"])
    assert response.status_code == 429 and time.monotonic() - started < 2
