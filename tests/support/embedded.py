"""The embedded default's processes under traffic, for tests that kill them: their environment,
clients that count what was answered, and what the journal and the ledger hold on disk."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

ADMIN = "up-admin-token-0123456789"
CLIENTS = 6
BODY = {"model": "sim", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def up_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    return {**env, "METERLINE_ADMIN_TOKEN": ADMIN, "METERLINE_KEY_SECRET": "k" * 40,
            "METERLINE_CONFIG": str(config), "PYTHONUNBUFFERED": "1",
            "METERLINE_LEDGER_MAX_BATCH": "20"}  # many small transactions: kills land inside them


def journal_ids(data_dir: Path) -> list[str]:
    topic = data_dir / "bus" / "topics" / "meterline.usage"
    return [orjson.loads(line)["id"] for path in sorted(topic.glob("*.jsonl"))
            for line in path.read_bytes().splitlines()]


def recorded(data_dir: Path) -> int:
    with sqlite3.connect(f"file:{data_dir / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM fact_ids").fetchone()[0]


def client(url: str, keys: list[dict], ok: Counter, broken: Counter, stop: threading.Event, n: int) -> None:
    with httpx.Client(base_url=url, timeout=15) as http:
        i = n
        while not stop.is_set():
            key = keys[i % len(keys)]
            i += 1
            try:
                response = http.post("/v1/chat/completions", json=BODY,
                                     headers={"authorization": f"Bearer {key['key']}"})
            except httpx.TransportError:  # the gateway died: maybe metered, never answered
                broken[key["id"]] += 1
                time.sleep(0.02)
                continue
            (ok if response.status_code == 200 else broken)[key["id"]] += 1
