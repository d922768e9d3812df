"""CPU per request of the gateway's own work for /v1/chat/completions, /v1/responses and
/v1/messages, without sockets (issue 15): bench_hot_path's method, one figure per API.

python -m bench.bench_apis_hot_path [--requests 30000] [--rounds 3]

Drives the ASGI fast path in-process (admission, quota guard, metering, CloudEvent encoding
on the in-memory bus); the upstream answers at once with a canned answer of the API asked
(16 output tokens, usage included). The APIs take turns for `--rounds` rounds and each
keeps its lowest figure: CPU time is steadier than req/s on shared cores, but not immune.
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

HELLO = [{"role": "user", "content": "hello"}]
TEXT = "hi " * 8
REQUESTS = {
    "/v1/chat/completions": {"model": "sim", "messages": HELLO, "max_tokens": 16},
    "/v1/responses": {"model": "sim", "input": "hello", "max_output_tokens": 16},
    "/v1/messages": {"model": "sim", "messages": HELLO, "max_tokens": 16},
}
ANSWERS = {
    "/chat/completions": {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": TEXT}}],
                          "usage": {"prompt_tokens": 9, "completion_tokens": 16, "total_tokens": 25}},
    "/responses": {"id": "resp_1", "object": "response", "created_at": 1, "model": "m", "status": "completed",
                   "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                               "content": [{"type": "output_text", "text": TEXT, "annotations": []}]}],
                   "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0},
                             "output_tokens": 16, "output_tokens_details": {"reasoning_tokens": 0},
                             "total_tokens": 25}},
    "/messages": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                  "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
                  "stop_sequence": None,
                  "usage": {"input_tokens": 9, "cache_read_input_tokens": 0,
                            "cache_creation_input_tokens": 0, "output_tokens": 16}},
}
CONFIG = """
[[models]]
name = "sim"
upstream_url = "http://upstream.invalid/v1"
input_price_per_million = "1"
output_price_per_million = "2"
max_output_tokens = 64
apis = ["chat", "responses", "messages"]
"""


class CannedUpstream:
    """Answers every call at once with the canned answer of the API its URL names."""

    def __init__(self) -> None:
        self.bodies = {path: orjson.dumps(answer) for path, answer in ANSWERS.items()}

    async def post(self, url: str, body: bytes, timeout_s: float) -> UpstreamResponse:
        path = url.removeprefix("http://upstream.invalid/v1")
        return UpstreamResponse(200, {"content-type": "application/json"}, self.bodies[path])

    async def stream(self, url: str, body: bytes, timeout_s: float):
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def drive(app: V1FastPath, secret: str, path: str, requests: int) -> float:
    body = orjson.dumps(REQUESTS[path])
    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(b"authorization", f"Bearer {secret}".encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

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
        raise SystemExit(f"{path}: unexpected statuses {sorted(set(statuses))}")
    return used * 1e6 / requests


async def main(requests: int, rounds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="meterline-apis-hot-path-"))
    settings = Settings(data_dir=data, admin_token="bench-admin-token-0123456789", key_secret="b" * 40)
    system = build(settings, parse_config(CONFIG, source="<bench>"), bus=InProcessBus(partitions=4),
                   upstream=CannedUpstream(), analytics=InMemoryAnalytics())
    await system.bus.start()
    secret = new_secret()
    system.registry.register_user("bench", Role.USER)
    system.registry.issue_key("bench", "bench", ["sim"], system.ctx.hmac(secret), secret)
    system.feed.bootstrap()
    app = V1FastPath(gateway_app(system, frozenset({"gateway"})), system.ctx)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for path in REQUESTS:
            used = await drive(app, secret, path, requests)
            best[path] = min(used, best.get(path, used))
    chat = best["/v1/chat/completions"]
    for path, used in best.items():
        print(f"{path}: {used:.1f} µs of CPU a request ({used / chat:.1%} of chat's), in-process, "
              f"no sockets, best of {rounds}")
    await system.bus.stop()
    system.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.run(main(args.requests, args.rounds))
    except ImportError:
        asyncio.run(main(args.requests, args.rounds))
