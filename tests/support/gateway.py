"""A real Meterline gateway (uvicorn on a free port, in a thread) for tests."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from adapters.analytics.memory import InMemoryAnalytics
from adapters.bus.inproc import InProcessBus
from domain.usage import RequestMetered
from infra.config.env_settings import Settings
from infra.config.toml_file import MeterlineConfig, parse_config
from infra.container import Meterline, build
from infra.runner import ALL_ROLES, http_server_config

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
KEY_SECRET = "test-key-secret-0123456789abcdef0123456789"


def sim_config(base_url: str, **model: Any) -> MeterlineConfig:
    """One chat model 'sim' and one embedding model 'sim-embed', both on `base_url`."""
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in model.items())
    return parse_config(f"""
[[models]]
name = "sim"
upstream_url = "{base_url}"
upstream_model = "sim-model"
input_price_per_million = "1.00"
output_price_per_million = "2.00"
max_output_tokens = 64
{extra}
[[models]]
name = "sim-embed"
upstream_url = "{base_url}"
kind = "embedding"
input_price_per_million = "0.10"
output_price_per_million = "0"
""", source="<test config>")


def add_models(config: MeterlineConfig, models: dict[str, str | tuple[str, str]],
               like: str = "sim") -> MeterlineConfig:
    """A copy of `config` with more models priced like `like`.

    `models` maps a name to the upstream model it calls on the same server (e.g. a simulator
    knob: {"sim-slow": "sim-slow"}), or to (base URL, upstream model) for another server.
    """
    template = next(m for m in config.models if m.name == like)
    added = []
    for name, target in models.items():
        url, upstream = target if isinstance(target, tuple) else (template.upstream_url, target)
        added.append(dataclasses.replace(template, name=name, upstream_url=url, upstream_model=upstream))
    return dataclasses.replace(config, models=[*config.models, *added])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningGateway:
    url: str
    system: Meterline

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def client(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token}"},
                            timeout=30)

    def setup_user(self, user_id: str, team_id: str | None = "team-a", role: str = "user") -> str:
        """Creates the team (if any) and the user; returns a user token."""
        with self.client() as admin:
            if team_id:
                admin.post("/api/admin/teams", json={"team_id": team_id, "name": team_id}
                           ).raise_for_status()
            admin.post("/api/admin/users", json={"user_id": user_id, "team_id": team_id,
                                                 "role": role}).raise_for_status()
            return admin.post(f"/api/admin/users/{user_id}/tokens").json()["token"]

    def issue_key(self, user_id: str, models: list[str] | None = None, **fields: Any) -> dict:
        with self.client() as admin:
            response = admin.post("/api/keys", json={"name": "test", "models": models or ["sim", "sim-embed"],
                                                     "user_id": user_id, **fields})
            response.raise_for_status()
            return response.json()

    def wait_ledger(self, requests: int, timeout_s: float = 10) -> None:
        """Waits until the ledger has recorded at least `requests` facts."""
        deadline = time.monotonic() + timeout_s
        ledger = self.system.ledger
        while time.monotonic() < deadline:
            if (ledger.recorder.max_notification_id() or 0) and _recorded(self.system) >= requests:
                return
            time.sleep(0.02)
        raise AssertionError(f"ledger recorded {_recorded(self.system)} of {requests} requests")

    def metered(self, key_id: str | None = None) -> list[RequestMetered]:
        """The RequestMetered facts the ledger has recorded (of one key), in recording order."""
        facts = list(self.system.ledger.metered_facts())
        return [f for f in facts if key_id is None or f.key_id == key_id]

    def wait_metered(self, key_id: str, requests: int, timeout_s: float = 10) -> list[RequestMetered]:
        """Waits until the ledger holds at least `requests` facts of a key; returns them all."""
        deadline = time.monotonic() + timeout_s
        while len(facts := self.metered(key_id)) < requests:
            if time.monotonic() > deadline:
                raise AssertionError(f"ledger recorded {len(facts)} of {requests} requests of key {key_id}")
            time.sleep(0.05)
        return facts


def openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """Asserts an error response in OpenAI's shape with this status (and code); returns its error."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def _recorded(system: Meterline) -> int:
    return system.ledger.count_metered()


@contextmanager
def running_gateway(data_dir: Path, config: MeterlineConfig, *, clock: Any = None,
                    roles: frozenset[str] = ALL_ROLES, bus: Any = None, **settings: Any
                    ) -> Iterator[RunningGateway]:
    port = free_port()
    values: dict[str, Any] = {"data_dir": data_dir, "dev": True, "admin_token": ADMIN_TOKEN,
                              "key_secret": KEY_SECRET, "port": port, "gateway_id": "gw-test"}
    values.update(settings)
    system = build(Settings(**values), config, clock=clock, analytics=InMemoryAnalytics(),
                   bus=bus or InProcessBus(partitions=4, journal_dir=data_dir / "bus"),
                   signs_audit="scheduler" in roles)
    server = uvicorn.Server(http_server_config(system, roles, "127.0.0.1", port, "warning"))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", system)
    finally:
        server.should_exit = True
        thread.join(20)
        system.close()
