"""The job-cost API (issue 14) beside plain /v1 chat completions, through `meterline up` over
the simulator, in the same run.

python -m bench.bench_jobs [--duration 5] [--rounds 3] [--jobs 200] [--calls 5] [--workers 16]

Each round measures, one after the other so they share the cores alike:
  - /v1/chat/completions: req/s at 64 connections (the fast lane);
  - POST /api/jobs/{id}/llm-call on one running job: req/s at 64 connections (same body);
  - whole jobs: `--workers` clients each doing create -> `--calls` llm-calls -> complete, for
    `--jobs` jobs in all: jobs/s, and API calls/s counting create and complete.
The summary gives the medians and the llm-call's req/s as a share of /v1's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from statistics import median

import httpx

from bench.bench_apis import start
from bench.bench_gateway import ADMIN
from testkit.loadgen import run_load

HELLO = [{"role": "user", "content": "hello"}]
CHAT = {"model": "sim", "messages": HELLO, "max_tokens": 16}
CALL = {"messages": HELLO, "max_tokens": 16, "purpose": "bench"}


def team_key(base: str) -> str:
    admin = httpx.Client(base_url=base, headers={"authorization": f"Bearer {ADMIN}"})
    admin.post("/api/admin/teams", json={"team_id": "bench-team", "name": "bench"}).raise_for_status()
    admin.post("/api/admin/users", json={"user_id": "bench", "team_id": "bench-team"}).raise_for_status()
    return admin.post("/api/keys", json={"name": "bench", "models": ["sim"], "user_id": "bench"}
                      ).json()["key"]


async def whole_jobs(base: str, auth: dict, jobs: int, calls: int, workers: int) -> dict:
    left = list(range(jobs))
    failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while left:
            left.pop()
            job = (await client.post("/api/jobs/create", json={"job_type": "bench"})).json()["job_id"]
            for _ in range(calls):
                failures += (await client.post(f"/api/jobs/{job}/llm-call", json=CALL)).status_code != 200
            done = await client.post(f"/api/jobs/{job}/complete", json={"status": "completed"})
            failures += done.status_code != 200 or done.json()["costs"]["total_calls"] != calls

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60,
                                 limits=httpx.Limits(max_connections=workers)) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    took = time.perf_counter() - started
    return {"jobs_per_s": round(jobs / took, 1), "api_calls_per_s": round(jobs * (calls + 2) / took),
            "failures": failures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterline-bench-jobs-"))
    procs: list = []
    try:
        _sim, up_v1, _pid = start(work, procs)
        base = up_v1.removesuffix("/v1")
        auth = {"authorization": f"Bearer {team_key(base)}"}
        job = httpx.post(base + "/api/jobs/create", json={"job_type": "steady"},
                         headers=auth).json()["job_id"]
        rounds = []
        for round_ in range(args.rounds):
            run_load(up_v1 + "/chat/completions", CHAT, connections=8, duration_s=1, headers=auth)
            v1 = run_load(up_v1 + "/chat/completions", CHAT, connections=64, duration_s=args.duration,
                          headers=auth)
            call = run_load(f"{base}/api/jobs/{job}/llm-call", CALL, connections=64,
                            duration_s=args.duration, headers=auth)
            cycle = asyncio.run(whole_jobs(base, auth, args.jobs, args.calls, args.workers))
            result = {"round": round_ + 1, "v1_rps_64": round(v1.rps), "v1_errors": v1.errors,
                      "llm_call_rps_64": round(call.rps), "llm_call_errors": call.errors,
                      "llm_call_p50_ms": call.percentile(50), "v1_p50_ms": v1.percentile(50), **cycle}
            print(json.dumps(result), flush=True)
            rounds.append(result)
        v1_rps = median(r["v1_rps_64"] for r in rounds)
        call_rps = median(r["llm_call_rps_64"] for r in rounds)
        print(f"/v1 chat: {v1_rps:,.0f} req/s; llm-call on one job: {call_rps:,.0f} req/s "
              f"({call_rps / v1_rps:.0%} of /v1); whole jobs (create, {args.calls} calls, complete; "
              f"{args.workers} clients): {median(r['jobs_per_s'] for r in rounds):,.1f} jobs/s = "
              f"{median(r['api_calls_per_s'] for r in rounds):,.0f} API calls/s; failures "
              f"{sum(r['failures'] + r['llm_call_errors'] + r['v1_errors'] for r in rounds)}")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(15)


if __name__ == "__main__":
    main()
