"""Alert latency on the embedded default: the request that crosses a threshold → its webhook received.

python -m bench.bench_alerts --crossings 50

`meterline up` in front of the simulator, and a webhook receiver in this process (aiohttp on
loopback) that verifies each signature. One global rule posts a webhook at 50 % of a budget;
each crossing is a fresh user whose budget ($0.000001, soft) the first request crosses. The
figure per crossing: from sending that request to the signed webhook arriving. The path
measured: gateway → journal → ledger (SQLite) → alerts worker (a trigger and its delivery
recorded in alerts.sqlite) → the webhook channel. Crossings run one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiohttp import web

from bench.bench_gateway import ADMIN, ROOT, free_port, sim_config, spawn, wait_http
from bench.bench_lag import percentile
from domain.webhook_signature import HEADER, SignatureInvalid, verify

BUDGET = {"limit_usd": "0.000001", "mode": "soft"}  # the first request crosses every threshold


class Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.arrived: dict[str, float] = {}  # user id -> when its webhook arrived
        self.refused = 0

    async def hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            verify(self.secret, request.headers.get(HEADER), raw, time.time())
        except SignatureInvalid:
            self.refused += 1
            return web.Response(status=400)
        event = json.loads(raw)
        self.arrived.setdefault(event["data"]["scope_id"], time.perf_counter())
        return web.Response(status=204)


def start_up(work: Path, sim_url: str, port: int) -> subprocess.Popen:
    config = sim_config(work / "meterline.toml", sim_url)
    proc = spawn([str(ROOT / ".venv/bin/meterline"), "up", "--data-dir", str(work / "data"),
                  "--port", str(port), "--config", str(config)], work / "meterline.log",
                 {"METERLINE_ADMIN_TOKEN": ADMIN, "METERLINE_KEY_SECRET": "b" * 40,
                  "METERLINE_WEBHOOK_ALLOW_PRIVATE": "1"})  # the receiver is on loopback
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc


async def crossings(base: str, receiver: Receiver, hook_url: str, count: int,
                    timeout_s: float) -> list[float]:
    auth = {"authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as admin:
        rule = await admin.post("/api/admin/alerts", json={
            "name": "bench: half", "scope": "global", "trigger": {"budget_percent": 50},
            "channels": ["webhook"], "webhook_url": hook_url})
        rule.raise_for_status()
        receiver.secret = rule.json()["webhook_secret"]
        keys = {}
        for n in range(count):
            user = f"bench-{n}"
            (await admin.post("/api/admin/users", json={"user_id": user})).raise_for_status()
            key = await admin.post("/api/keys", json={"name": "k", "models": ["sim"], "user_id": user})
            keys[user] = key.json()["key"]
            (await admin.put(f"/api/admin/budgets/user/{user}", json=BUDGET)).raise_for_status()
    await asyncio.sleep(1)  # let the budgets reach the gateway's views and the ledger settle
    delays = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for user, key in keys.items():
            sent = time.perf_counter()
            reply = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                      json={"model": "sim", "max_tokens": 16,
                                            "messages": [{"role": "user", "content": "hi"}]})
            reply.raise_for_status()
            while user not in receiver.arrived:
                if time.perf_counter() - sent > timeout_s:
                    raise RuntimeError(f"no webhook for {user} within {timeout_s} s")
                await asyncio.sleep(0.002)
            delays.append(receiver.arrived[user] - sent)
    return delays


async def run(count: int, timeout_s: float) -> dict:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    procs: list[subprocess.Popen] = []
    # the processes stop before their data directory goes (ignore_cleanup_errors: a straggler's file)
    with tempfile.TemporaryDirectory(prefix="bench-alerts-", ignore_cleanup_errors=True) as tmp:
        try:
            work = Path(tmp)
            sim_port, port = free_port(), free_port()
            procs.append(spawn([sys.executable, "-m", "testkit.simulator.server", "--port", str(sim_port)],
                               work / "sim.log"))
            wait_http(f"http://127.0.0.1:{sim_port}/health")
            procs.append(start_up(work, f"http://127.0.0.1:{sim_port}/v1", port))
            delays = sorted(await crossings(f"http://127.0.0.1:{port}", receiver,
                                            f"http://127.0.0.1:{hook_port}/hook", count, timeout_s))
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(30)
            await runner.cleanup()
    return {"name": "alert: threshold-crossing request -> signed webhook received (meterline up)",
            "crossings": len(delays), "p50_s": round(percentile(delays, 50), 3),
            "p99_s": round(percentile(delays, 99), 3), "max_s": round(delays[-1], 3),
            "refused_signatures": receiver.refused}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crossings", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one webhook")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.crossings, args.timeout))), flush=True)


if __name__ == "__main__":
    main()
