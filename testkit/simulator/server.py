"""OpenAI-compatible upstream SIMULATOR for benchmarks and fast tests. Not a model.

It answers instantly (or after a set latency) with filler text and exactly predictable
usage (rules in `testkit.simulator.openai_shapes`), so a benchmark measures the gateway, not inference.
`make run` and the end-to-end tests use the real model in `infra.demo.model_server` instead.

Endpoints: POST /v1/chat/completions, /v1/completions (both with `stream`, and a final
usage chunk when `stream_options.include_usage`), /v1/embeddings, /v1/responses (OpenAI
Responses, with `stream`), /v1/messages (Anthropic Messages, with `stream`) and
/v1/messages/count_tokens (shapes in `testkit.simulator.api_shapes`); GET /v1/models, /health.

Request knobs, chosen by the request's `model`:
  sim-slow       answers after `slow_s` (2 s) more
  sim-error      HTTP 500 (OpenAI error shape)
  sim-ratelimit  HTTP 429, code "rate_limit_exceeded"
  sim-nousage    answers without `usage` (and streams without a usage chunk)
  sim-cache      Responses and Messages report cached / cache-creation / reasoning tokens

Run: `python -m testkit.simulator.server --port 9100 [--latency-ms 5] [--fail-rate 0.01]
[--no-usage] [--completion-tokens 16] [--chunk-delay-ms 0]`; in tests:
`with Simulator(port=0) as sim: OpenAI(base_url=sim.base_url, api_key="x")`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from dataclasses import replace
from typing import NamedTuple

from testkit.simulator.app import KNOBS, SimApp, SimConfig
from testkit.simulator.protocol import HttpProtocol

__all__ = ["KNOBS", "Running", "SimConfig", "Simulator", "serve"]


class Running(NamedTuple):
    """A listening simulator: its asyncio server, its handler, its open connections."""

    server: asyncio.Server
    app: SimApp
    connections: set

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return self.server.sockets[0].getsockname()[1]


async def serve(config: SimConfig, host: str, port: int) -> Running:
    """Start listening on the running loop; port 0 picks a free port."""
    app, connections = SimApp(config), set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(app, connections), host, port,
                                      backlog=2048)
    return Running(server, app, connections)


class Simulator:
    """The simulator on its own event loop in a daemon thread (for pytest fixtures)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1",
                 config: SimConfig | None = None, **overrides: object) -> None:
        self.host, self.port = host, port
        self.config = replace(config or SimConfig(), **overrides)
        self.app: SimApp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: Running | None = None
        self._error: Exception | None = None

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Simulator:
        """Start the thread and return once the socket listens."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="simulator",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        if self._running is None:
            raise RuntimeError(f"simulator failed to listen on {self.host}:{self.port}: "
                               f"{self._error!r}")
        self.port, self.app = self._running.port, self._running.app
        return self

    def _run(self, ready: threading.Event) -> None:
        # The loop lives entirely in this thread, so a caller's own loop is never touched.
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._running = loop.run_until_complete(serve(self.config, self.host, self.port))
        except OSError as exc:
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread."""
        running, loop, self._running = self._running, self._loop, None
        if running is None or loop is None:
            return

        def shutdown() -> None:
            running.server.close()
            for transport in list(running.connections):
                transport.close()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """CLI: run the simulator in the foreground (uvloop if installed)."""
    ap = argparse.ArgumentParser(prog="python -m testkit.simulator.server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--no-usage", action="store_true")
    ap.add_argument("--completion-tokens", type=int, default=16)
    a = ap.parse_args(argv)
    config = SimConfig(completion_tokens=a.completion_tokens, latency_ms=a.latency_ms,
                       chunk_delay_ms=a.chunk_delay_ms, fail_rate=a.fail_rate,
                       usage=not a.no_usage)

    async def run() -> None:
        running = await serve(config, a.host, a.port)
        print(f"simulator on http://{a.host}:{running.port}/v1", flush=True)
        await running.server.serve_forever()

    try:
        import uvloop  # optional: faster, not required
    except ImportError:
        uvloop = None
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(run()) if uvloop else asyncio.run(run())


if __name__ == "__main__":
    main()
