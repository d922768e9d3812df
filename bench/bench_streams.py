"""Thousands of concurrent streams: direct vs `meterline up` vs LiteLLM's proxy, in one run.

python -m bench.bench_streams [--streams 500,2000] [--chunks 20] [--chunk-delay-ms 100] [--no-litellm]

LLM calls last seconds, so a gateway's real load is many open streams. The simulator streams
`--chunks` chunks `--chunk-delay-ms` apart; N clients (a raw asyncio HTTP/1.1 client, one
connection each, all started at once) read them through each target. Per target and N:
time to first chunk p50/p99, end-to-end p50/p99, chunks/s, failures (an error status, or a
stream without its [DONE]), the serving process's peak RSS and CPU-seconds per 1,000 streams,
and for Meterline the requests the ledger metered (from /api/usage). The client shares the two
cores with the servers, as it does for every target, so compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from bench.bench_gateway import (
    ADMIN,
    children,
    cpu_seconds,
    free_port,
    litellm,
    meterline,
    rss_mb,
    spawn,
    wait_http,
)


@dataclass
class Stream:
    ok: bool
    first_s: float = 0.0
    total_s: float = 0.0
    chunks: int = 0


def request_bytes(port: int, path: str, secret: str | None, chunks: int) -> bytes:
    body = orjson.dumps({"model": "sim", "stream": True, "max_tokens": chunks,
                         "messages": [{"role": "user", "content": "stream to me"}]})
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    if secret:
        head.append(f"Authorization: Bearer {secret}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def one_stream(port: int, raw: bytes, timeout_s: float) -> Stream:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
    except (OSError, TimeoutError):
        return Stream(False)
    try:
        writer.write(raw)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        if not head.startswith(b"HTTP/1.1 200"):
            return Stream(False)
        seen, first, buffer, done = 0, 0.0, b"", False
        deadline = started + timeout_s
        while not done:
            data = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.perf_counter()))
            if not data:
                break
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                line = event[event.find(b"data: "):]
                if line.startswith(b"data: [DONE]"):
                    done = True
                elif line.startswith(b"data: {") and b'"content"' in line:
                    seen += 1
                    first = first or time.perf_counter() - started
        return Stream(done, first, time.perf_counter() - started, seen)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return Stream(False)
    finally:
        writer.close()


def sample_rss(pid: int | None, stop: threading.Event, peak: list[float]) -> None:
    while pid and not stop.is_set():
        try:
            peak[0] = max(peak[0], rss_mb(pid))
        except OSError:
            return
        stop.wait(0.2)


def run(name: str, port: int, path: str, secret: str | None, n: int, chunks: int,
        pid: int | None) -> dict:
    raw = request_bytes(port, path, secret, chunks)
    stop, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=sample_rss, args=(pid, stop, peak), daemon=True)
    sampler.start()
    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()

    async def all_streams() -> list[Stream]:
        return await asyncio.gather(*(one_stream(port, raw, 300) for _ in range(n)))

    results = asyncio.run(all_streams())
    elapsed = time.perf_counter() - started
    stop.set()
    cpu_used = cpu_seconds(pid) - cpu_before if pid else None
    good = [r for r in results if r.ok]
    firsts = sorted(r.first_s for r in good) or [float("nan")]
    totals = sorted(r.total_s for r in good) or [float("nan")]
    out = {"name": name, "streams": n, "failures": n - len(good),
           "ttft_p50_s": round(statistics.median(firsts), 3), "ttft_p99_s": round(pct(firsts, 99), 3),
           "e2e_p50_s": round(statistics.median(totals), 3), "e2e_p99_s": round(pct(totals, 99), 3),
           "chunks_per_s": round(sum(r.chunks for r in good) / elapsed),
           "peak_rss_mb": round(peak[0], 1) if pid else None,
           # the serving process's CPU per 1,000 streams: the cost that two shared cores feel
           "cpu_s_per_1000": round(cpu_used * 1000 / n, 2) if cpu_used is not None else None}
    print(json.dumps(out), flush=True)
    return out


def pct(values: list[float], p: int) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def metered(base_url: str, expected: int, timeout_s: float = 60) -> int:
    """How many requests of the bench user the ledger and analytics hold, once they caught up."""
    deadline, got = time.monotonic() + timeout_s, 0
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN}"}) as admin:
        while time.monotonic() < deadline:
            got = admin.get("/api/usage", params={"user_id": "bench"}).json().get("totals", {}).get(
                "requests", 0)
            if got >= expected:
                break
            time.sleep(0.5)
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="500,2000")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--chunk-delay-ms", type=float, default=100)
    ap.add_argument("--no-litellm", action="store_true")
    args = ap.parse_args()
    sizes = [int(n) for n in args.streams.split(",")]
    work = Path(tempfile.mkdtemp(prefix="meterline-streams-"))
    sim_port, up_port, litellm_port = free_port(), free_port(), free_port()
    sim = spawn([sys.executable, "-m", "testkit.simulator.server", "--port", str(sim_port),
                 "--chunk-delay-ms", str(args.chunk_delay_ms), "--completion-tokens", str(args.chunks)],
                work / "sim.log")
    procs = [sim]
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/health")
        sim_url = f"http://127.0.0.1:{sim_port}/v1"
        gw, key = meterline(work, sim_url, up_port)
        procs.append(gw)
        gateway_pid = children(gw.pid).get("gateway", gw.pid)
        lite = None if args.no_litellm else litellm(work, sim_url, litellm_port)
        if lite is not None:
            procs.append(lite)
        served = 0
        for n in sizes:
            run("direct (simulator)", sim_port, "/v1/chat/completions", None, n, args.chunks, sim.pid)
            result = run("meterline up", up_port, "/v1/chat/completions", key, n, args.chunks, gateway_pid)
            served += n - result["failures"]
            print(json.dumps({"name": "meterline up metered", "streams_served_so_far": served,
                              "requests_metered": metered(f"http://127.0.0.1:{up_port}", served)}),
                  flush=True)
            if lite is not None:
                run("litellm proxy", litellm_port, "/v1/chat/completions", "sk-bench-master", n,
                    args.chunks, lite.pid)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except Exception:
                proc.kill()


if __name__ == "__main__":
    main()
