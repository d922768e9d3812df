"""The admin analytics API's bucket list against a minute-by-minute walk of the local clock, in
zones whose changes are awkward: half-hour DST (Lord Howe), +12:45 (Chatham), +05:30 (Kolkata), a
midnight that does not exist (Santiago), a day that does not exist (Apia), a repeated hour (Paris)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.api.analytics_buckets import MAX_POINTS, bucket_labels
from gateway.errors import GatewayError

CASES = [("Australia/Lord_Howe", datetime(2024, 4, 6, 12, 7, tzinfo=UTC)),
         ("Australia/Lord_Howe", datetime(2024, 10, 5, 13, tzinfo=UTC)),
         ("Pacific/Chatham", datetime(2024, 4, 6, 12, tzinfo=UTC)),
         ("Asia/Kolkata", datetime(2024, 3, 1, 0, 1, tzinfo=UTC)),
         ("America/Santiago", datetime(2024, 9, 7, 20, tzinfo=UTC)),
         ("Pacific/Apia", datetime(2011, 12, 30, tzinfo=UTC)),
         ("Europe/Paris", datetime(2024, 10, 26, 22, 59, tzinfo=UTC))]


def walked(start: datetime, end: datetime, bucket: str, zone: ZoneInfo) -> list[str]:
    labels, moment = [], start
    while moment < end:
        local = moment.astimezone(zone)
        day = local.date()
        label = {"hour": local.replace(minute=0, second=0, microsecond=0).isoformat(), "day": str(day),
                 "week": str(day - timedelta(days=day.weekday())), "month": str(day.replace(day=1))}[bucket]
        if not labels or labels[-1] != label:
            labels.append(label)
        moment += timedelta(minutes=1)
    return labels


@pytest.mark.parametrize("bucket", ["hour", "day", "week", "month"])
@pytest.mark.parametrize("tz, start", CASES, ids=[f"{tz}-{start:%Y-%m-%d}" for tz, start in CASES])
def test_the_buckets_are_exactly_those_the_local_clock_passes_through(tz, start, bucket) -> None:
    end = start + timedelta(hours=30, minutes=13)
    assert bucket_labels(start, end, bucket, ZoneInfo(tz)) == walked(start, end, bucket, ZoneInfo(tz))


def test_an_empty_period_has_no_buckets_and_too_many_points_are_refused_naming_the_parameter() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert bucket_labels(start, start, "hour", ZoneInfo("UTC")) == []
    most = start + timedelta(hours=MAX_POINTS)
    assert len(bucket_labels(start, most, "hour", ZoneInfo("UTC"))) == MAX_POINTS
    with pytest.raises(GatewayError) as refused:
        bucket_labels(start, start + timedelta(days=400), "hour", ZoneInfo("UTC"), param="from")
    assert (refused.value.status, refused.value.param) == (400, "from")
