"""CPU per request of the gateway's own /v1 work, without sockets: what Python costs us.

python -m bench.bench_hot_path [--requests 50000]

Drives the ASGI fast path in-process with the real admission, quota guard, metering and
CloudEvent encoding; the bus is the in-memory bus and the upstream answers at once with a
canned OpenAI body. HTTP parsing, the kernel and the broker are left out on purpose, so
the figure (µs of CPU per request) moves only with the gateway's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import orjson

from adapters.analytics.memory import InMemoryAnalytics
from adapters.bus.inproc import InProcessBus
from domain.credentials import new_secret
from domain.ports.upstream import UpstreamResponse
from domain.services.registry import Role
from gateway.v1.fast_path import V1FastPath
from infra.config.env_settings import Settings
from infra.config.toml_file import parse_config
from infra.container import build
from infra.runner import gateway_app

BODY = orjson.dumps({"model": "sim", "messages": [{"role": "user", "content": "hello"}],
                     "max_tokens": 16})
ANSWER = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "hi " * 8}}],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 16, "total_tokens": 25}})
CONFIG = """
[[models]]
name = "sim"
upstream_url = "http://upstream.invalid/v1"
input_price_per_million = "1"
output_price_per_million = "2"
max_output_tokens = 64
"""


class CannedUpstream:
    """Answers every call at once with the same OpenAI chat completion."""

    async def post(self, url: str, body: bytes, timeout_s: float) -> UpstreamResponse:
        return UpstreamResponse(200, {"content-type": "application/json"}, ANSWER)

    async def stream(self, url: str, body: bytes, timeout_s: float):
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def drive(app: V1FastPath, secret: str, requests: int) -> float:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {secret}".encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(BODY)).encode())]}

    async def receive() -> dict:
        return {"type": "http.request", "body": BODY, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(2000):  # warm-up
        await app(scope, receive, send)
    statuses.clear()
    started = time.process_time()
    for _ in range(requests):
        await app(scope, receive, send)
    used = time.process_time() - started
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return used


async def main(requests: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="meterline-hot-path-"))
    settings = Settings(data_dir=data, admin_token="bench-admin-token-0123456789",
                        key_secret="b" * 40)
    system = build(settings, parse_config(CONFIG, source="<bench>"), bus=InProcessBus(partitions=4),
                   upstream=CannedUpstream(), analytics=InMemoryAnalytics())
    await system.bus.start()
    secret = new_secret()
    system.registry.register_user("bench", Role.USER)
    system.registry.issue_key("bench", "bench", ["sim"], system.ctx.hmac(secret), secret)
    system.feed.bootstrap()
    app = V1FastPath(gateway_app(system, frozenset({"gateway"})), system.ctx)
    used = await drive(app, secret, requests)
    print(f"{requests:,} requests: {used * 1e6 / requests:.1f} µs of CPU each "
          f"({requests / used:,.0f} per CPU-second), in-process, no sockets")
    await system.bus.stop()
    system.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50_000)
    try:
        import uvloop
        uvloop.run(main(ap.parse_args().requests))
    except ImportError:
        asyncio.run(main(ap.parse_args().requests))
