"""The month close on METERLINE_CLOSE_DAY: the previous month, once, on or after the day."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from adapters.analytics.memory import InMemoryAnalytics
from adapters.bus.inproc import InProcessBus
from adapters.clock import FixedClock
from infra.config.env_settings import Settings
from infra.container import build
from infra.runner import gateway_app
from infra.workers.month_close_job import close_due_month, previous_month, start_month_close
from tests.support.admin_analytics import BILLING_TZ, _register, traffic
from tests.support.gateway import ADMIN_TOKEN, KEY_SECRET, sim_config


@pytest.fixture
def system(tmp_path):
    clock = FixedClock(datetime(2024, 4, 2, 12, tzinfo=UTC))
    settings = Settings(data_dir=tmp_path, dev=True, admin_token=ADMIN_TOKEN, key_secret=KEY_SECRET,
                        billing_timezone=BILLING_TZ, close_day=3)
    running = build(settings, sim_config("http://127.0.0.1:9/v1"), clock=clock, analytics=InMemoryAnalytics(),
                    bus=InProcessBus(partitions=1))
    with TestClient(gateway_app(running, frozenset({"gateway"}))) as client:
        client.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
        _, keys = _register(client)
        running.analytics.insert_usage(traffic(keys), batch_id="traffic")
    yield running
    running.close()


def test_the_previous_month_is_the_one_before_the_local_date():
    assert previous_month(datetime(2024, 1, 1, 0, 30, tzinfo=UTC), "Europe/Paris") == "2023-12"
    assert previous_month(datetime(2023, 12, 31, 23, 30, tzinfo=UTC), "Europe/Paris") == "2023-12"


def test_the_close_waits_for_its_day_then_closes_the_previous_month_once(system):
    assert close_due_month(system, BILLING_TZ, 3) is None  # April 2nd: not yet
    system.clock.set(datetime(2024, 4, 3, 0, 30, tzinfo=UTC))  # 02:30 in Paris on the 3rd
    assert close_due_month(system, BILLING_TZ, 3) == "2024-03"
    assert system.billing.closed("2024-03").closed_by == "scheduler"
    assert close_due_month(system, BILLING_TZ, 3) is None
    system.clock.set(datetime(2024, 5, 20, tzinfo=UTC))  # a process down on May 3rd closes April at start
    assert close_due_month(system, BILLING_TZ, 3) == "2024-04"


async def test_a_process_started_after_the_close_day_closes_the_month_it_missed(system):
    system.clock.set(datetime(2024, 4, 10, tzinfo=UTC))
    scheduler = start_month_close(system, BILLING_TZ)
    try:
        for _ in range(100):
            if system.billing.closed("2024-03") is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)
    assert system.billing.closed("2024-03") is not None
