"""`meterline report chargeback` and `meterline period close|list` on a real data directory.

The CLI opens the directory's SQLite stores and embedded chDB as `meterline` does when nothing
else runs; its file must be the API's, byte for byte, and a closed month's the sealed one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from adapters.bus.inproc import InProcessBus
from adapters.clock import FixedClock
from infra.cli import app as meterline
from infra.config.env_settings import Settings
from infra.container import build
from infra.runner import gateway_app
from tests.support.admin_analytics import BILLING_TZ, _register, traffic
from tests.support.gateway import ADMIN_TOKEN, KEY_SECRET, sim_config

CONFIG = """
[[models]]
name = "sim"
upstream_url = "http://127.0.0.1:9/v1"
input_price_per_million = "1.00"
output_price_per_million = "2.00"
"""


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> tuple[Path, Path, bytes]:
    """A data directory with users, keys and traffic; the API's March chargeback by user as CSV."""
    data, config = tmp_path / "data", tmp_path / "meterline.toml"
    config.write_text(CONFIG)
    for name, value in {"ADMIN_TOKEN": ADMIN_TOKEN, "KEY_SECRET": KEY_SECRET, "BILLING_TIMEZONE": BILLING_TZ,
                        "DEV": "1"}.items():
        monkeypatch.setenv(f"METERLINE_{name}", value)
    settings = Settings(data_dir=data, dev=True, admin_token=ADMIN_TOKEN, key_secret=KEY_SECRET,
                        billing_timezone=BILLING_TZ)
    clock = FixedClock(datetime(2024, 4, 2, tzinfo=UTC))
    system = build(settings, sim_config("http://127.0.0.1:9/v1"), clock=clock, bus=InProcessBus(partitions=1))
    try:
        with TestClient(gateway_app(system, frozenset({"gateway"}))) as client:
            client.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
            _, keys = _register(client)
            system.analytics.insert_usage(traffic(keys), batch_id="traffic")
            api = client.get("/api/admin/reports/chargeback", params={"period": "2024-03", "format": "csv"})
            assert api.status_code == 200
    finally:
        system.close()
    return data, config, api.content


def run(*args: str):
    return CliRunner().invoke(meterline, list(args), catch_exceptions=False)


def test_the_cli_writes_the_apis_file_then_the_sealed_one_once_the_month_is_closed(data_dir, tmp_path):
    data, config, from_api = data_dir
    where = ["--data-dir", str(data), "--config", str(config)]
    out = tmp_path / "march.csv"
    written = run("report", "chargeback", "--period", "2024-03", "--format", "csv", "-o", str(out), *where)
    assert written.exit_code == 0, written.output
    assert out.read_bytes() == from_api
    closed = run("period", "close", "2024-03", *where)
    assert closed.exit_code == 0, closed.output
    assert "closed 2024-03" in closed.output and "chargeback-by-user.csv" in closed.output
    again = run("period", "close", "2024-03", *where)
    assert again.exit_code == 1 and "already closed" in again.output
    sealed = tmp_path / "sealed.csv"
    result = run("report", "chargeback", "--period", "2024-03", "--format", "csv", "-o", str(sealed), *where)
    assert result.exit_code == 0 and "sealed" in result.output
    assert sealed.read_bytes() == from_api
    listing = run("period", "list", *where)
    assert listing.exit_code == 0 and listing.output.startswith("2024-03  closed")


@pytest.mark.parametrize("args, message", [
    (["report", "chargeback", "--period", "March"], "not understood"),
    (["report", "chargeback", "--period", "2024-03", "--format", "docx"], "--format one of"),
    (["period", "close", "2024-13"], "not 01 to 12"),
    (["period", "close", "2999-01"], "has not ended"),
])
def test_bad_input_is_refused_with_what_to_send_instead(data_dir, args, message):
    data, config, _ = data_dir
    result = run(*args, "--data-dir", str(data), "--config", str(config))
    assert result.exit_code in (1, 2) and message in result.output
