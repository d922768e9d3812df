"""What the `meterline <role>` test processes run against: a fresh database, config, environment, bus."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.ports.bus import BusMessage
from testkit.postgres import temporary_database

if TYPE_CHECKING:
    from domain.services.ledger import Ledger

ADMIN_TOKEN = "proc-admin-token-0123456789abcdef"
KEY_SECRET = "proc-key-secret-0123456789abcdef0123456789abcdef"


# ----- PostgreSQL ------------------------------------------------------------------------

@contextmanager
def fresh_database(prefix: str = "meterline_proc") -> Iterator[str]:
    """A new, empty database on the local server; dropped (WITH FORCE) afterwards."""
    with temporary_database(prefix) as url:
        yield url


@contextmanager
def ledger_store(database_url: str) -> Iterator[Ledger]:
    """The ledger application on `database_url`, read from the test process.

    Opening it creates the tables, so open it before starting processes on a fresh
    database, or after they are up.
    """
    from adapters.clock import SystemClock
    from adapters.eventstore.environments import open_applications, postgres_env

    registry, ledger = open_applications(postgres_env(database_url), SystemClock())
    try:
        yield ledger
    finally:
        ledger.close()
        registry.close()


def wait_audited(database_url: str, key_file: Path, action: str, count: int, timeout_s: float = 10) -> None:
    """Waits until the audit trail on `database_url` holds `count` entries of `action`, then
    checks that it verifies with the deployment's key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from adapters.clock import SystemClock
    from adapters.eventstore.environments import postgres_env
    from domain.services.audit_trail import AuditTrail
    from infra.audit_keys import published_public_key

    trail = AuditTrail(SystemClock(), env=postgres_env(database_url))
    deadline = time.monotonic() + timeout_s
    try:
        while sum(r.entry.action == action for r in trail.records()) < count:
            assert time.monotonic() < deadline, f"fewer than {count} {action} in the audit trail"
            time.sleep(0.1)
        # only a scheduler signs (and publishes its public key): without one the trail has no
        # checkpoint, and the chain alone is verified
        key = published_public_key(key_file) or Ed25519PrivateKey.generate().public_key()
        assert trail.verify(key).ok
    finally:
        trail.close()


def stored_facts(ledger: Ledger) -> list[dict[str, Any]]:
    """The data of every RequestMetered fact in the ledger, in recording order."""
    return [fact.to_data() for fact in ledger.metered_facts()]


# ----- configuration ---------------------------------------------------------------------

def write_config(path: Path, upstream_url: str, max_output_tokens: int = 64) -> Path:
    """One chat model 'sim' at $1 / $2 per million input / output tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""[[models]]
name = "sim"
upstream_url = "{upstream_url}"
upstream_model = "sim-model"
input_price_per_million = "1"
output_price_per_million = "2"
max_output_tokens = {max_output_tokens}
""")
    return path


def meterline_env(bootstrap: str, database_url: str, config: Path, **extra: str) -> dict[str, str]:
    """The environment of a distributed deployment: Kafka bus, PostgreSQL event store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update(METERLINE_BUS="kafka", METERLINE_KAFKA_BOOTSTRAP=bootstrap,
               METERLINE_DATABASE_URL=database_url, METERLINE_ADMIN_TOKEN=ADMIN_TOKEN,
               METERLINE_KEY_SECRET=KEY_SECRET, METERLINE_CONFIG=str(config),
               # one audit signing key for the deployment, as for the other secrets
               METERLINE_AUDIT_KEY_FILE=str(Path(config).parent / "audit-signing-key.pem"),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


# ----- a bus client on its own event loop --------------------------------------------------

class BusThread:
    """A KafkaBus run on an event loop in a thread, for synchronous tests."""

    def __init__(self, bootstrap: str, partitions: dict[str, int] | None = None) -> None:
        from adapters.bus.kafka import KafkaBus
        self.bus = KafkaBus(bootstrap, partitions=partitions, client_id="test-publisher")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bus", daemon=True)

    def run(self, coroutine: Any, timeout_s: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout_s)

    def publish(self, topic: str, messages: Sequence[BusMessage], chunk: int = 500) -> None:
        for start in range(0, len(messages), chunk):
            self.run(self.bus.publish(topic, messages[start:start + chunk]))

    def read_all(self, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
        """Every delivery on `topic` from the beginning, once `expected` have arrived."""
        return self.run(self._read_all(topic, expected, timeout_s), timeout_s + 10)

    async def _read_all(self, topic: str, expected: int, timeout_s: float) -> list[Any]:
        consumer = self.bus.consumer(topic, f"test-reader-{uuid.uuid4().hex[:8]}")
        await consumer.start()
        try:
            for partition in await consumer.partitions():
                consumer.seek(partition, 0)
            deliveries: list[Any] = []
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                fetched = await consumer.fetch(10_000, 300)
                deliveries += fetched
                if len(deliveries) >= expected and not fetched:
                    break  # all that was expected, and then a quiet fetch: no surplus pending
            return deliveries
        finally:
            await consumer.stop()

    def __enter__(self) -> BusThread:
        self._thread.start()
        self.run(self.bus.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.bus.stop(), 15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
