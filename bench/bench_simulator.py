"""Benchmark the upstream simulator alone: req/s and latency per scenario.

The simulator runs in its own process (pinned to CPU 0 when --pin), the load generator
in this one (CPU 1), so the figures say what one core of simulator sustains.

    python -m bench.bench_simulator [--duration 5] [--connections 64] [--pin] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

from testkit.loadgen import run_load

MESSAGES = [{"role": "user", "content": "Summarise the quarterly usage report in one line."}]
SCENARIOS = {
    "chat": ("/chat/completions", {"model": "m", "messages": MESSAGES, "max_tokens": 16}),
    "chat-stream": ("/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True,
                                          "stream_options": {"include_usage": True}}),
    "completions": ("/completions", {"model": "m", "prompt": "Once upon a time"}),
    "embeddings": ("/embeddings", {"model": "m", "input": ["alpha", "beta"]}),
}


@contextlib.contextmanager
def simulator_process(pin: bool, extra: list[str] | None = None) -> Iterator[str]:
    """Run `python -m testkit.simulator.server` in a child process; yield its base URL."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "testkit.simulator.server", "--port", "0",
                             *(extra or [])], stdout=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline().decode()  # "simulator on http://host:port/v1"
        if not line.startswith("simulator on "):
            raise RuntimeError(f"simulator did not start: {line!r}")
        if pin and len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(proc.pid, {0})
            os.sched_setaffinity(0, {1})
        yield line.removeprefix("simulator on ").strip()
    finally:
        proc.terminate()
        proc.wait(5)


def main(argv: list[str] | None = None) -> None:
    """Run every scenario at N connections, then chat at one connection."""
    ap = argparse.ArgumentParser(prog="python -m bench.bench_simulator")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--pin", action="store_true", help="simulator on CPU 0, load on CPU 1")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    runs = [(name, a.connections) for name in SCENARIOS] + [("chat", 1)]
    results = {}
    affinity = os.sched_getaffinity(0)
    try:
        with simulator_process(a.pin) as base_url:
            run_load(base_url + "/health", None, 8, 0.5)  # warm up the loops
            for name, conns in runs:
                path, body = SCENARIOS[name]
                stats = run_load(base_url + path, body, conns, a.duration)
                results[f"{name} c={conns}"] = stats.summary()
                print(f"{name:12} c={conns:<3} {stats}", flush=True)
    finally:
        os.sched_setaffinity(0, affinity)
    if a.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
