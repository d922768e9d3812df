"""Gateway hot-path benchmark: Meterline (one worker, full metering) vs LiteLLM's proxy.

python -m bench.bench_gateway [--duration 10] [--requests-for-rss 100000] [--no-litellm]

Starts the OpenAI-compatible simulator (testkit/simulator/server.py, a separate process), then:
  1. the simulator alone (direct),
  2. `meterline up` (embedded default: a supervisor and its gateway, ledger+scheduler and
     projector processes; journal bus with fdatasync, SQLite ledger, chDB) with a key, and
  3. LiteLLM's proxy (own venv in .bench/litellm-venv, master key, 1 worker),
each measured with testkit/loadgen.py: req/s at 64 connections, latency p50/p99 at one
connection; the gateway's RSS after `--requests-for-rss` requests. For `up` the CPU and the
RSS are the gateway process's; the CPU of all its processes is given beside. Ports are
chosen free, so runs of others on the machine do not answer in this one's place.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from testkit.loadgen import run_load

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "bench-admin-token-0123456789"
BODY = {"model": "sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



def spawn(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def wait_http(url: str, timeout_s: float = 60, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> dict[str, int]:
    """`meterline up`'s processes by role (`meterline run <roles>`)."""
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"run" in args:
            found[args[args.index(b"run") + 1].decode()] = int(child)
    return found


def measure(name: str, url: str, headers: dict, duration: float, pid: int | None = None,
            tree: list[int] | None = None) -> dict:
    """`pid` is the server process whose CPU counts; `tree` all of its processes (for `up`)."""
    run_load(url, BODY, connections=8, duration_s=2, headers=headers)  # warm-up
    tree = tree or ([pid] if pid else [])
    cpu_before = {p: cpu_seconds(p) for p in tree}
    wide = run_load(url, BODY, connections=64, duration_s=duration, headers=headers)
    cpu_used = {p: cpu_seconds(p) - cpu_before[p] for p in tree}
    narrow = run_load(url, BODY, connections=1, duration_s=duration / 2, headers=headers)
    own = cpu_used.get(pid or 0, 0.0)
    result = {"name": name, "rps_64": wide.rps, "errors_64": wide.errors,
              # requests served per second of the server's own CPU: what one worker does with a core
              "requests_per_cpu_s": round(wide.requests / own) if own else None,
              "cpu_s_all_processes": round(sum(cpu_used.values()), 2),
              "p50_1_ms": narrow.percentile(50), "p99_1_ms": narrow.percentile(99), "rps_1": narrow.rps}
    print(json.dumps(result), flush=True)
    return result


def sim_config(path: Path, sim_url: str) -> Path:
    path.write_text(f'[[models]]\nname = "sim"\nupstream_url = "{sim_url}"\n'
                    'input_price_per_million = "1"\noutput_price_per_million = "2"\n'
                    'max_output_tokens = 64\n')
    return path


def bench_key(base_url: str) -> str:
    """Creates the bench user and a key for it through the admin API; returns the secret."""
    admin = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN}"})
    admin.post("/api/admin/users", json={"user_id": "bench"}).raise_for_status()
    key = admin.post("/api/keys", json={"name": "bench", "models": ["sim"], "user_id": "bench"})
    return key.json()["key"]


def meterline(work: Path, sim_url: str, port: int) -> tuple[subprocess.Popen, str]:
    config = sim_config(work / "meterline.toml", sim_url)
    proc = spawn([str(ROOT / ".venv/bin/meterline"), "up", "--data-dir", str(work / "data"),
                  "--port", str(port), "--config", str(config)], work / "meterline.log",
                 {"METERLINE_ADMIN_TOKEN": ADMIN, "METERLINE_KEY_SECRET": "b" * 40})
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc, bench_key(f"http://127.0.0.1:{port}")


def up_on_simulator(work: Path, procs: list[subprocess.Popen]) -> tuple[str, str]:
    """The simulator and `meterline up` in front of it, both added to `procs`: up's URL and a key."""
    sim_port, port = free_port(), free_port()
    procs.append(spawn([sys.executable, "-m", "testkit.simulator.server", "--port", str(sim_port)],
                       work / "sim.log"))
    wait_http(f"http://127.0.0.1:{sim_port}/health")
    up, key = meterline(work, f"http://127.0.0.1:{sim_port}/v1", port)
    procs.append(up)
    return f"http://127.0.0.1:{port}", key


def kafka_gateway(work: Path, sim_url: str, bootstrap: str, database_url: str, port: int
                  ) -> tuple[subprocess.Popen, subprocess.Popen, str]:
    """`meterline ledger` and `meterline gateway` apart, on Kafka (tansu) and PostgreSQL."""
    config = sim_config(work / "meterline-kafka.toml", sim_url)
    env = {"METERLINE_ADMIN_TOKEN": ADMIN, "METERLINE_KEY_SECRET": "b" * 40,
           "METERLINE_BUS": "kafka", "METERLINE_KAFKA_BOOTSTRAP": bootstrap,
           "METERLINE_DATABASE_URL": database_url, "METERLINE_CONFIG": str(config)}
    meterline_bin = str(ROOT / ".venv/bin/meterline")
    ledger = spawn([meterline_bin, "ledger", "--data-dir", str(work / "ledger")], work / "ledger.log", env)
    gateway = spawn([meterline_bin, "gateway", "--data-dir", str(work / "gateway"), "--port", str(port)],
                    work / "gateway.log", env)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return ledger, gateway, bench_key(f"http://127.0.0.1:{port}")


def run_kafka(work: Path, sim_url: str, duration: float, rss_requests: int, procs: list) -> dict:
    from testkit.postgres import temporary_database
    from testkit.tansu import running_tansu
    with temporary_database("bench_gw") as database_url, running_tansu() as bootstrap:
        port = free_port()
        ledger, gateway, key = kafka_gateway(work, sim_url, bootstrap, database_url, port)
        procs += [ledger, gateway]
        auth = {"authorization": f"Bearer {key}"}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        result = measure("meterline gateway (kafka)", url, auth, duration, gateway.pid,
                         [gateway.pid, ledger.pid])
        sent = run_load(url, BODY, connections=64,
                        total_requests=rss_requests, headers=auth)
        print(json.dumps({"name": "meterline gateway (kafka) rss", "requests": sent.requests,
                          "rss_mb": round(rss_mb(gateway.pid), 1)}), flush=True)
        for proc in (gateway, ledger):
            proc.terminate()
            proc.wait(15)
        return result


def litellm(work: Path, sim_url: str, port: int) -> subprocess.Popen | None:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"LiteLLM not installed: python3 -m venv {LITELLM_VENV} && "
              f"{LITELLM_VENV}/bin/pip install 'litellm[proxy]'", file=sys.stderr)
        return None
    config = work / "litellm.yaml"
    config.write_text("model_list:\n  - model_name: sim\n    litellm_params:\n"
                      f"      model: openai/sim-model\n      api_base: {sim_url}\n      api_key: none\n"
                      "general_settings:\n  master_key: sk-bench-master\n")
    proc = spawn([str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"],
                 work / "litellm.log", {"LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                        "LITELLM_LOG": "ERROR"})
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=180)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--requests-for-rss", type=int, default=100_000)
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--kafka", action="store_true",
                    help="also run gateway and ledger apart on tansu + PostgreSQL")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterline-bench-"))
    sim_port, up_port, litellm_port = free_port(), free_port(), free_port()
    sim = spawn([sys.executable, "-m", "testkit.simulator.server", "--port", str(sim_port)], work / "sim.log")
    procs = [sim]
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/health")
        sim_url = f"http://127.0.0.1:{sim_port}/v1"
        results = [measure("direct (simulator)", sim_url + "/chat/completions", {}, args.duration)]
        gw, key = meterline(work, sim_url, up_port)
        procs.append(gw)
        auth = {"authorization": f"Bearer {key}"}
        up_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        roles = children(gw.pid)
        results.append(measure("meterline up", up_url, auth, args.duration, roles["gateway"],
                               [gw.pid, *roles.values()]))
        sent = run_load(up_url, BODY, connections=64, total_requests=args.requests_for_rss, headers=auth)
        print(json.dumps({"name": "meterline rss", "requests": sent.requests,
                          "rss_mb": round(rss_mb(roles["gateway"]), 1),
                          "rss_mb_by_process": {role: round(rss_mb(pid), 1) for role, pid in
                                                {"up": gw.pid, **roles}.items()}}), flush=True)
        gw.terminate()  # idle, but its ledger, projector and scheduler still poll: not during the next run
        gw.wait(15)
        if args.kafka:
            results.append(run_kafka(work, sim_url, args.duration, args.requests_for_rss, procs))
        if not args.no_litellm and (lite := litellm(work, sim_url, litellm_port)) is not None:
            procs.append(lite)
            results.append(measure("litellm proxy", f"http://127.0.0.1:{litellm_port}/v1/chat/completions",
                                   {"authorization": "Bearer sk-bench-master"}, args.duration, lite.pid))
        direct = results[0]
        for r in results[1:]:
            added_p50 = r["p50_1_ms"] - direct["p50_1_ms"]
            added_p99 = r["p99_1_ms"] - direct["p99_1_ms"]
            print(f"{r['name']}: {r['rps_64']:,.0f} req/s at 64 conns ({r['rps_64'] / direct['rps_64']:.1%} "
                  f"of direct; {r['requests_per_cpu_s']} per CPU-second of its own process); "
                  f"added p50 {added_p50:.2f} ms, p99 {added_p99:.2f} ms at 1 conn")
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
