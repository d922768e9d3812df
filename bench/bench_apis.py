"""/v1/responses and /v1/messages beside /v1/chat/completions through `meterline up` (issue 15).

python -m bench.bench_apis [--duration 4] [--rounds 5] [--stream]

Starts the simulator (testkit/simulator/server.py, a separate process; it speaks all three
APIs with the same filler answer of 16 tokens) and `meterline up` in front of it with one
model that declares every API. The three routes take turns for `--rounds` rounds, so a
neighbour's burst on the shared cores lands on each alike; each turn measures req/s at 64
connections and latency p50 at one connection, directly on the simulator and through the
gateway (the added p50 is the difference). The summary gives each route's medians over the
rounds, and its req/s as a share of the chat route's: the issue's target is within 10 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from statistics import median

import httpx

from bench.bench_gateway import ADMIN, ROOT, children, cpu_seconds, free_port, spawn, wait_http
from testkit.loadgen import run_load

HELLO = [{"role": "user", "content": "hello"}]
BODIES = {
    "chat": ("/chat/completions", {"model": "sim", "messages": HELLO, "max_tokens": 16}),
    "responses": ("/responses", {"model": "sim", "input": "hello", "max_output_tokens": 16}),
    "messages": ("/messages", {"model": "sim", "messages": HELLO, "max_tokens": 16}),
}
CONFIG = """[[models]]
name = "sim"
upstream_url = "{url}"
upstream_model = "sim-model"
input_price_per_million = "1"
output_price_per_million = "2"
max_output_tokens = 64
apis = ["chat", "completions", "embeddings", "responses", "messages"]
"""


def measure(url: str, body: dict, headers: dict, duration: float, pid: int | None = None) -> dict:
    """With `pid`, also the CPU that process spent per request: steadier than req/s on a
    machine whose cores other work shares."""
    run_load(url, body, connections=8, duration_s=1, headers=headers)  # warm-up
    cpu = cpu_seconds(pid) if pid else 0.0
    wide = run_load(url, body, connections=64, duration_s=duration, headers=headers)
    cpu_us = round((cpu_seconds(pid) - cpu) / wide.requests * 1e6) if pid and wide.requests else None
    narrow = run_load(url, body, connections=1, duration_s=duration / 2, headers=headers)
    return {"rps_64": round(wide.rps), "errors_64": wide.errors, "cpu_us_per_request": cpu_us,
            "p50_1_ms": narrow.percentile(50), "p99_1_ms": narrow.percentile(99)}


def start(work: Path, procs: list) -> tuple[str, str, int]:
    """The simulator and `meterline up`: their /v1 URLs and up's gateway process id."""
    sim_port, port = free_port(), free_port()
    procs.append(spawn([sys.executable, "-m", "testkit.simulator.server", "--port", str(sim_port)],
                       work / "sim.log"))
    wait_http(f"http://127.0.0.1:{sim_port}/health")
    config = work / "meterline.toml"
    config.write_text(CONFIG.format(url=f"http://127.0.0.1:{sim_port}/v1"))
    up = spawn([str(ROOT / ".venv/bin/meterline"), "up", "--data-dir", str(work / "data"), "--port",
                str(port), "--config", str(config)], work / "meterline.log",
               {"METERLINE_ADMIN_TOKEN": ADMIN, "METERLINE_KEY_SECRET": "b" * 40})
    procs.append(up)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return f"http://127.0.0.1:{sim_port}/v1", f"http://127.0.0.1:{port}/v1", up.pid


def bench_key(v1: str) -> str:
    admin = httpx.Client(base_url=v1.removesuffix("/v1"), headers={"authorization": f"Bearer {ADMIN}"})
    admin.post("/api/admin/users", json={"user_id": "bench"}).raise_for_status()
    key = admin.post("/api/keys", json={"name": "bench", "models": ["sim"], "user_id": "bench"})
    return key.json()["key"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stream", action="store_true", help="streamed answers instead of whole ones")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterline-bench-apis-"))
    procs: list = []
    try:
        sim_v1, up_v1, up_pid = start(work, procs)
        gateway = children(up_pid)["gateway"]
        auth = {"authorization": f"Bearer {bench_key(up_v1)}"}
        runs: dict[str, list[dict]] = {api: [] for api in BODIES}
        for round_ in range(args.rounds):
            for api, (path, body) in BODIES.items():
                body = {**body, "stream": True} if args.stream else body
                direct = measure(sim_v1 + path, body, {}, args.duration)
                through = measure(up_v1 + path, body, auth, args.duration, gateway)
                result = {"api": api, "round": round_ + 1, "direct": direct, "meterline": through,
                          "added_p50_ms": round(through["p50_1_ms"] - direct["p50_1_ms"], 3)}
                print(json.dumps(result), flush=True)
                runs[api].append(result)
        rps = {api: median(r["meterline"]["rps_64"] for r in results) for api, results in runs.items()}
        for api, results in runs.items():
            errors = sum(r["meterline"]["errors_64"] for r in results)
            cpu = median(r["meterline"]["cpu_us_per_request"] for r in results)
            print(f"{api}: median {rps[api]:,.0f} req/s at 64 conns ({rps[api] / rps['chat']:.1%} of chat; "
                  f"errors {errors}), gateway CPU {cpu:.0f} µs a request, added p50 "
                  f"{median(r['added_p50_ms'] for r in results):.2f} ms at 1 conn; direct "
                  f"{median(r['direct']['rps_64'] for r in results):,.0f} req/s")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(15)


if __name__ == "__main__":
    main()
