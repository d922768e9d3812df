"""Replay (issue 12): `meterline replay --until T` rebuilds budgets and keys as the live system
answered at T: before and after a key rotation, a budget change and a period rollover."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from adapters.clock import FixedClock
from infra.cli import app
from infra.replay import run
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, running_gateway, sim_config

BODY = {"model": "sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


def nanos(usd: str) -> int:
    return int(Decimal(usd) * 10**9)


def chat(gw: RunningGateway, secret: str) -> int:
    return httpx.post(gw.v1 + "/chat/completions", json=BODY, timeout=30,
                      headers={"authorization": f"Bearer {secret}"}).status_code


def settled(gw: RunningGateway, scopes: list[tuple[str, str]]) -> None:
    """Waits until the ledger has acknowledged every cost the gateway settled."""
    deadline = time.monotonic() + 10
    guard = gw.system.ctx.guard
    while any((guard.snapshot(s) or {}).get("unacknowledged") for s in scopes):
        assert time.monotonic() < deadline, "the ledger did not acknowledge the spend"
        time.sleep(0.02)


def live(gw: RunningGateway, key_id: str) -> dict:
    """What the live system answers now: each budget's counters, and the key."""
    with gw.client() as admin:
        budgets = {scope: admin.get(f"/api/admin/budgets/{scope}").json()
                   for scope in (f"key/{key_id}", "user/alice")}
        (key,) = [k for k in admin.get("/api/keys", params={"user_id": "alice"}).json()["data"]
                  if k["id"] == key_id]
    return {"budgets": {scope: (nanos(b["spent_usd"]), nanos(b["limit_usd"]), b["mode"],
                                b["policy_version"], b["period_start"])
                        for scope, b in budgets.items()},
            "key": (key["status"], key["models"], key["prefix"])}


def replayed(gw: RunningGateway, until: datetime, capsys: pytest.CaptureFixture, key_id: str) -> dict:
    capsys.readouterr()
    assert run(gw.system.settings, gw.system.config, until.isoformat(), "user:alice", "json") == 0
    out = json.loads(capsys.readouterr().out)
    budgets = {f"{b['scope']}/{b['scope_id']}": (b["spent"], b["limit"], b["mode"], b["policy_version"],
                                                 b["period_start"])
               for b in out["budgets"] if b["limit"] is not None}  # live shows budgeted scopes only
    (key,) = [k for k in out["keys"] if k["key_id"] == key_id]
    return {"budgets": budgets, "key": (key["status"], key["models"], key["prefix"]),
            "states": {f"{b['scope']}/{b['scope_id']}": b["state"] for b in out["budgets"]}}


def store_files(data_dir: Path) -> dict[str, tuple[int, int]]:
    """The stores replay opens (the audit recorder and the refusal log write theirs meanwhile)."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(data_dir.glob("*.sqlite*"))
            if p.name.startswith(("ledger.", "registry."))}


def test_replay_matches_the_live_answers_before_and_after_a_rotation_a_budget_change_and_a_rollover(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clock = FixedClock(datetime(2025, 1, 31, 20, tzinfo=UTC))
    with Simulator(port=0) as sim, running_gateway(tmp_path, sim_config(sim.base_url), clock=clock,
                                                   roles=frozenset({"gateway", "ledger"})) as gw:
        gw.setup_user("alice")
        key = gw.issue_key("alice", models=["sim"], budget_usd="0.0001", budget_mode="hard")
        scopes = [("key", key["id"]), ("user", "alice")]
        with gw.client() as admin:
            admin.put("/api/admin/budgets/user/alice", json={"limit_usd": "0.001", "mode": "grace"}
                      ).raise_for_status()
        assert [chat(gw, key["key"]) for _ in range(3)] == [200] * 3
        settled(gw, scopes)
        t1, seen = clock.now(), {}
        seen[t1] = live(gw, key["id"])

        clock.advance(hours=1)  # a rotation and a budget change
        with gw.client() as admin:
            new = admin.post(f"/api/keys/{key['id']}/rotate").json()["key"]
            admin.put(f"/api/admin/budgets/key/{key['id']}", json={"limit_usd": "0.0002"}).raise_for_status()
        assert chat(gw, key["key"]) == 401 and chat(gw, new) == 200
        settled(gw, scopes)
        t2 = clock.now()
        seen[t2] = live(gw, key["id"])

        clock.set(datetime(2025, 2, 1, 0, 30, tzinfo=UTC))  # the next month: a new period
        assert chat(gw, new) == 200
        settled(gw, scopes)
        t3 = clock.now()
        seen[t3] = live(gw, key["id"])
        clock.advance(minutes=5)
        gw.system.ctx.refusals.flush()
        before = store_files(tmp_path)

        for at, answered in seen.items():
            assert {k: v for k, v in replayed(gw, at, capsys, key["id"]).items() if k != "states"} == \
                answered, f"replay at {at.isoformat()}"
        assert store_files(tmp_path) == before, "replay wrote to the live stores"

    assert seen[t1]["key"][2] != seen[t2]["key"][2], "the rotation changed the prefix"
    assert seen[t1]["budgets"][f"key/{key['id']}"][1] == 100_000 != seen[t2]["budgets"][f"key/{key['id']}"][1]
    assert seen[t3]["budgets"]["user/alice"][0] < seen[t2]["budgets"]["user/alice"][0], "a new period"


def test_replay_before_anything_happened_shows_nothing_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    clock = FixedClock(datetime(2025, 1, 31, 20, tzinfo=UTC))
    with Simulator(port=0) as sim, running_gateway(tmp_path, sim_config(sim.base_url), clock=clock,
                                                   roles=frozenset({"gateway", "ledger"})) as gw:
        gw.setup_user("alice")
        key = gw.issue_key("alice", budget_usd="0.0001")
        settings, config = gw.system.settings, gw.system.config
        toml = tmp_path / "meterline.toml"
        toml.write_text(f'[[models]]\nname = "sim"\nupstream_url = "{sim.base_url}"\n'
                        'input_price_per_million = "1.00"\noutput_price_per_million = "2.00"\n')
        where = ["--data-dir", str(tmp_path), "--config", str(toml)]
        early = CliRunner().invoke(app, ["replay", "--until", "2025-01-31T19:59:59Z", *where])
        now = CliRunner().invoke(app, ["replay", "--until", "2025-01-31T20:00:00Z", "--scope",
                                       f"key:{key['id']}", *where])
        unknown = CliRunner().invoke(app, ["explain", "01a22b41-4dd7-75c5-af1e-55adbcbae892", *where])
        garbled = CliRunner().invoke(app, ["replay", "--until", "soon", *where])
        for bad in (("yesterday", None, "json"), ("2025-01-01", "group:x", "json"),
                    ("2025-01-01", None, "xml"), ("2025-01-01", "user:", "table")):
            with pytest.raises(ValueError):
                run(settings, config, *bad)
    empty = settings.model_copy(update={"data_dir": tmp_path / "nowhere"})
    with pytest.raises(ValueError, match="no event store"):
        run(empty, config, "2025-01-01", None, "table")
    assert not (tmp_path / "nowhere").exists()
    assert early.exit_code == 0 and "sk-ml" not in early.output, early.output  # no key yet
    assert now.exit_code == 0 and key["id"][:8] in now.output and "$0.0001" in now.output, now.output
    assert unknown.exit_code == 1 and garbled.exit_code == 2 and "ISO 8601" in garbled.output
