"""The admin analytics API's tests: an app over an analytics store, generated traffic, and the
reference figures worked out with polars straight from the raw facts (never `fold_figures`).

Traffic runs from late February to mid-April 2024 with clusters on both DST changes of spring
(America/New_York 2024-03-10, Europe/Paris 2024-03-31) and one on Paris's autumn change
(2024-10-27, when 02:00-03:00 happens twice). Requests come whole or as a stream metered in parts
(the first part counts the request, the last its outcome); a few streams lost their last part.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from starlette.testclient import TestClient

from adapters.bus.inproc import InProcessBus
from adapters.clock import FixedClock
from domain.ports.analytics import AnalyticsStore
from domain.usage import RequestMetered, UsageSource
from domain.usage_figures import latency_bucket
from infra.config.env_settings import Settings
from infra.container import build
from infra.runner import gateway_app
from tests.support.gateway import ADMIN_TOKEN, KEY_SECRET, sim_config

NOW = datetime(2024, 3, 20, 10, tzinfo=UTC)  # the fixed clock: the default period is March 1-20 (Paris)
BILLING_TZ = "Europe/Paris"
USERS = {"ana": "red", "ben": "red", "cleo": "blue", "dev": None}  # registered, with keys
GHOST = "ghost"  # in usage, never registered
MODELS = ("m-small", "m-large", "m-embed")
APPS = ("canopy", "research", None)


@dataclass
class App:
    admin: TestClient
    user_tokens: dict[str, str]
    keys: dict[str, list[dict]]  # user -> [{"id", "name"}]
    facts: list[RequestMetered] = field(repr=False)
    frame: pl.DataFrame = field(repr=False)

    def get(self, path: str, token: str = ADMIN_TOKEN, **params: Any) -> Any:
        response = self.admin.get("/api/admin/analytics" + path, params=params,
                                  headers={"authorization": f"Bearer {token}"})
        return response


@contextmanager
def analytics_app(data_dir: Path, store: AnalyticsStore) -> Iterator[App]:
    """An in-process gateway over `store`, with users, keys and generated traffic in the store."""
    settings = Settings(data_dir=data_dir, dev=True, admin_token=ADMIN_TOKEN, key_secret=KEY_SECRET,
                        gateway_id="gw-analytics", billing_timezone=BILLING_TZ)
    system = build(settings, sim_config("http://127.0.0.1:9/v1"), clock=FixedClock(NOW), analytics=store,
                   bus=InProcessBus(partitions=1))
    try:
        with TestClient(gateway_app(system, frozenset({"gateway"}))) as client:
            client.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
            tokens, keys = _register(client)
            facts = traffic(keys)
            store.insert_usage(facts, batch_id="analytics-traffic")
            yield App(client, tokens, keys, facts, frame(facts))
    finally:
        system.close()


def _register(client: TestClient) -> tuple[dict[str, str], dict[str, list[dict]]]:
    tokens, keys = {}, {}
    for team in ("red", "blue"):
        client.post("/api/admin/teams", json={"team_id": team, "name": team}).raise_for_status()
    for user, team in USERS.items():
        client.post("/api/admin/users", json={"user_id": user, "team_id": team}).raise_for_status()
        tokens[user] = client.post(f"/api/admin/users/{user}/tokens").json()["token"]
        keys[user] = []
        for name in (["laptop", "ci"] if user == "ana" else ["main"]):
            body = client.post("/api/keys", json={"name": name, "models": ["sim"], "user_id": user}).json()
            keys[user].append({"id": body["id"], "name": name})
    return tokens, keys


def _moments(rng: random.Random) -> Iterator[datetime]:
    start = datetime(2024, 2, 25, tzinfo=UTC)
    for _ in range(900):  # spread over seven weeks
        yield start + timedelta(seconds=rng.randrange(49 * 86_400))
    for centre in (datetime(2024, 3, 10, 7, tzinfo=UTC), datetime(2024, 3, 31, 1, tzinfo=UTC),
                   datetime(2024, 10, 27, 1, tzinfo=UTC)):
        for _ in range(150):  # within 4 hours either side of each change
            yield centre + timedelta(seconds=rng.randrange(-4 * 3600, 4 * 3600))
    yield datetime(2024, 3, 1, tzinfo=UTC) - timedelta(hours=1)  # Paris's March 1st, at its first instant


def traffic(keys: dict[str, list[dict]], seed: int = 11) -> list[RequestMetered]:
    """Deterministic facts over users, teams, keys, models, app tags and outcomes."""
    rng = random.Random(seed)
    owners = [(user, USERS[user], key["id"]) for user, ks in keys.items() for key in ks]
    owners.append((GHOST, None, str(uuid.UUID(int=rng.getrandbits(128)))))
    facts = []
    for at in _moments(rng):
        user, team, key = rng.choice(owners)
        app = rng.choice(APPS)
        common = dict(key_id=key, user_id=user, team_id=team, model=rng.choice(MODELS),
                      endpoint="/v1/chat/completions", cached_tokens=0,
                      usage_source=UsageSource.UPSTREAM, price_version=1,
                      labels={"app": app} if app else {})
        parts = rng.choice([1, 1, 1, 2, 3])
        request_id = str(uuid.UUID(int=rng.getrandbits(128))) if parts > 1 else ""
        lost = parts > 1 and rng.random() < 0.2  # the stream's last part never arrived
        for i in range(parts - lost):
            prompt, completion = rng.randrange(0, 4000), rng.randrange(0, 900)
            status = rng.choices([200, 429, 500, 400], [90, 5, 3, 2])[0]
            latency = rng.choice([rng.randrange(0, 20), rng.randrange(20, 900), rng.randrange(900, 60_000)])
            facts.append(RequestMetered(
                event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                occurred_at=at + timedelta(seconds=7 * i), prompt_tokens=prompt,
                completion_tokens=completion, latency_ms=latency, status=status,
                cost=prompt * 1_000 + completion * 3_000 + rng.randrange(0, 10),
                request_id=request_id, requests=int(i == 0), final=i == parts - 1, **common))
    return facts


def frame(facts: list[RequestMetered]) -> pl.DataFrame:
    return pl.DataFrame({
        "at": [f.occurred_at for f in facts], "user_id": [f.user_id for f in facts],
        "key_id": [f.key_id for f in facts], "team_id": [f.team_id or "" for f in facts],
        "model": [f.model for f in facts], "application": [f.labels.get("app", "") for f in facts],
        "requests": [f.requests for f in facts], "prompt": [f.prompt_tokens for f in facts],
        "completion": [f.completion_tokens for f in facts], "cost": [f.cost for f in facts],
        "final": [f.final for f in facts], "status": [f.status for f in facts],
        "latency": [f.latency_ms for f in facts]},
        schema_overrides={"at": pl.Datetime("us", "UTC")})


LABELS = {
    "hour": lambda local: local.dt.strftime("%Y-%m-%dT%H:00:00%:z"),
    "day": lambda local: local.dt.strftime("%Y-%m-%d"),
    "week": lambda local: local.dt.truncate("1w").dt.strftime("%Y-%m-%d"),
    "month": lambda local: local.dt.strftime("%Y-%m-01"),
    "hour_of_day": lambda local: local.dt.strftime("%H"),
}


def expected(df: pl.DataFrame, start: datetime, end: datetime, tz: str = BILLING_TZ,
             by: tuple[str, ...] = (), **filters: str) -> dict[tuple, dict]:
    """Reference figures per group: the polars answer over the raw facts."""
    rows = df.filter((pl.col("at") >= start.astimezone(UTC)) & (pl.col("at") < end.astimezone(UTC)))
    for name, value in filters.items():
        rows = rows.filter(pl.col(name) == value)
    local = pl.col("at").dt.convert_time_zone(tz)
    groups = [LABELS[b](local).alias(b) if b in LABELS else pl.col(b) for b in by]
    rows = rows.with_columns(groups) if groups else rows.with_columns(pl.lit("").alias("_all"))
    finished = pl.col("final")
    agg = rows.group_by(list(by) or ["_all"]).agg(
        requests=pl.col("requests").sum(), prompt=pl.col("prompt").sum(),
        completion=pl.col("completion").sum(), cost=pl.col("cost").sum(), users=pl.col("user_id").n_unique(),
        finished=finished.sum(), errors=(finished & (pl.col("status") >= 400)).sum(),
        latencies=pl.col("latency").filter(finished))
    answer = {}
    for row in agg.iter_rows(named=True):
        key = tuple(row[b] for b in by)
        answer[key] = {**row, "tokens": row["prompt"] + row["completion"]}
    if not by and () not in answer:
        answer[()] = {"requests": 0, "prompt": 0, "completion": 0, "cost": 0, "users": 0, "finished": 0,
                      "errors": 0, "latencies": [], "tokens": 0}
    return answer


def p95(latencies: list[int]) -> int | None:
    """The bucket floor of the nearest-rank 95th percentile (the buckets are `LATENCY_BUCKETS_MS`)."""
    if not latencies:
        return None
    return latency_bucket(sorted(latencies)[math.ceil(0.95 * len(latencies)) - 1])


def pct(numerator: Fraction | int, denominator: Fraction | int) -> float | None:
    """numerator / denominator in percent, two decimals rounded half up; None over zero."""
    if denominator == 0:
        return None
    value = Fraction(numerator) / Fraction(denominator) * 100
    return float((Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP))


def usd(nanos: int) -> Decimal:
    return Decimal(nanos) / 1_000_000_000


def avg_ms(figures: dict) -> int | None:
    if not figures["finished"]:
        return None
    return int(Decimal(sum(figures["latencies"])) / figures["finished"] + Decimal("0.5"))


def local_midnight(day: str, tz: str) -> datetime:
    """In UTC: arithmetic on a datetime in a ZoneInfo zone is wall-clock time, blind to DST."""
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def march(tz: str = BILLING_TZ) -> tuple[datetime, datetime]:
    return local_midnight("2024-03-01", tz), local_midnight("2024-04-01", tz)


def summary_of(figures: dict) -> dict:
    return {"total_requests": figures["requests"], "total_tokens": figures["tokens"],
            "prompt_tokens": figures["prompt"], "completion_tokens": figures["completion"],
            "active_users": figures["users"], "cost_usd": usd(figures["cost"]),
            "avg_latency_ms": avg_ms(figures), "p95_latency_ms": p95(figures["latencies"]),
            "error_rate": pct(figures["errors"], figures["finished"]) or 0.0}


def as_read(body: dict) -> dict:
    return {name: Decimal(body[name]) if name == "cost_usd" else body[name] for name in
            ("total_requests", "total_tokens", "prompt_tokens", "completion_tokens", "active_users",
             "cost_usd", "avg_latency_ms", "p95_latency_ms", "error_rate")}


def hour_labels(start: datetime, end: datetime, tz: str) -> list[str]:
    """Whole-hour zones only: every UTC hour is one local hour."""
    labels, at = [], start.astimezone(UTC)
    while at < end:
        labels.append(at.astimezone(ZoneInfo(tz)).isoformat())
        at += timedelta(hours=1)
    return labels


def value_of(figures: dict | None, metric: str):
    if metric == "latency":
        return None if figures is None else avg_ms(figures)
    if figures is None:
        return "0" if metric == "cost" else 0
    if metric == "cost":
        return str(usd(figures["cost"]).normalize()) if figures["cost"] else "0"
    return figures[metric]
