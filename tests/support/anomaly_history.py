"""Synthetic usage histories for the anomaly tests: users with a working-day profile in the billing
zone, five weeks of it, and what each test adds (a spike, a night burst, errors, growth)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.usage import RequestMetered, UsageSource

ZONE = "Europe/Paris"
NOW = datetime(2026, 2, 9, 15, 10, tzinfo=UTC)  # a Monday, 16:10 in Paris: last complete hour 14:00 UTC
LAST_HOUR = datetime(2026, 2, 9, 14, tzinfo=UTC)
NIGHT_NOW = datetime(2026, 2, 9, 2, 10, tzinfo=UTC)  # 03:10 in Paris: the last complete hour is 02:00 local
NIGHT_HOUR = datetime(2026, 2, 9, 1, tzinfo=UTC)
COST = 20_000_000  # $0.02 a request: a working hour of 25 requests is $0.50, a day $4.50


def requests_in(user: str, hour: datetime, count: int, *, cost: int = COST, errors: int = 0,
                key: str | None = None) -> list[RequestMetered]:
    """`count` requests spread over the hour starting at `hour`; the first `errors` failed (HTTP 500)."""
    return [RequestMetered(
        event_id=str(uuid.uuid4()), occurred_at=hour + timedelta(seconds=i * 3599 // max(count, 1)),
        key_id=key or f"{user}-key", user_id=user, team_id="research", model="gemma-3",
        endpoint="/v1/chat/completions", prompt_tokens=800, completion_tokens=200, cached_tokens=0,
        latency_ms=300, status=500 if i < errors else 200, usage_source=UsageSource.UPSTREAM,
        price_version=1, cost=cost) for i in range(count)]


def working_days(user: str, *, until: datetime = LAST_HOUR + timedelta(hours=1), weeks: int = 5,
                 per_hour: int = 25, growth: float = 1.0, error_every: int = 0,
                 hours: Iterable[int] = range(9, 18)) -> list[RequestMetered]:
    """Every day of the `weeks` weeks (and a day) before `until`, `per_hour` requests in each local
    hour of `hours`; with `growth`, a week earlier is `growth` times smaller (20 %/week: 1.2)."""
    zone, facts = ZoneInfo(ZONE), []
    first = (until - timedelta(weeks=weeks, days=1)).astimezone(zone).date()
    for day in range((until.astimezone(zone).date() - first).days + 1):
        for local_hour in hours:
            midnight = datetime.combine(first + timedelta(days=day), datetime.min.time(), zone)
            local = midnight.replace(hour=local_hour)
            start = local.astimezone(UTC)
            if start + timedelta(hours=1) > until:
                continue
            weeks_ago = (until - start) / timedelta(weeks=1)
            count = round(per_hour / growth ** weeks_ago)
            facts += requests_in(user, start, count, errors=count // error_every if error_every else 0)
    return facts
