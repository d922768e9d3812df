"""`meterline up` as a test talks to it: its HTTP API for everything a client does, and the data
directory's stores, read from the test process, for what was metered and at which price."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from adapters.clock import SystemClock
from adapters.eventstore.environments import open_applications, sqlite_env
from domain.pricing import Price
from domain.usage import RequestMetered
from tests.support.embedded import ADMIN, up_env
from tests.support.gateway import RunningGateway, free_port
from tests.support.processes import MeterlineProcess, Processes


class UpGateway(RunningGateway):
    """RunningGateway's HTTP helpers (setup_user, issue_key, wait_metered) over a `meterline up`
    process; nothing in the test's process serves or meters."""

    def __init__(self, process: MeterlineProcess) -> None:
        super().__init__(process.url, system=None)  # type: ignore[arg-type]
        self.process = process

    def client(self, token: str = ADMIN, timeout_s: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {token}"},
                            timeout=timeout_s)

    def metered(self, key_id: str | None = None) -> list[RequestMetered]:
        with self._stores() as (_, ledger):
            facts = list(ledger.metered_facts())
        return [f for f in facts if key_id is None or f.key_id == key_id]

    def price_of(self, fact: RequestMetered) -> Price:
        """The price version that rated a fact, as the registry stores it."""
        with self._stores() as (registry, _):
            return registry.price_book(fact.model).price_version(fact.price_version)

    @contextmanager
    def _stores(self) -> Iterator[tuple]:
        registry, ledger = open_applications(sqlite_env(self.process.data_dir), SystemClock())
        try:
            yield registry, ledger
        finally:
            registry.close()
            ledger.close()


@contextmanager
def meterline_up(base_dir: Path, config_toml: str) -> Iterator[UpGateway]:
    """`meterline up` (its gateway, ledger+scheduler and projector processes) on a fresh data
    directory with this configuration, healthy."""
    config = base_dir / "meterline.toml"
    config.write_text(config_toml)
    with Processes(base_dir, up_env(config)) as processes:
        up = processes.spawn("up", "up", port=free_port())
        up.wait_healthy(120)
        yield UpGateway(up)
        assert "Traceback" not in up.log_text(), up.log_tail()
