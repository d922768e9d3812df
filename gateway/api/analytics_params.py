"""The admin analytics API's common parameters: the period, its time zone and the filters.

Read once per request into a `Window`, so every route asks the store the same question the same
way; every refusal is a 400 naming the parameter.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Query, Request

from domain.periods import is_time_zone
from domain.usage_figures import AnalyticsQuery
from gateway import errors
from gateway.api.deps import Ctx
from gateway.api.schemas import EARLIEST, LATEST, utc_instant

PERIOD_RULE = ("an ISO date such as '2024-03-31' (that day's midnight in `timezone`) or an ISO date and "
               f"time with an offset such as '2024-03-31T12:00:00+02:00', from {EARLIEST.date()} to "
               f"before {LATEST.date()}")
FROM_DOC = f"start of the period, included: {PERIOD_RULE}; default: the 1st of this month in `timezone`"
TO_DOC = f"end of the period, excluded: {PERIOD_RULE}; default: the end of today in `timezone`"
TZ_DOC = ("IANA time zone whose calendar the day, week, month and hour buckets follow, and in which a "
          "bare date is read; default: the billing time zone")
FILTER_DOC = "only facts with this {0}"
EMPTY_DOC = "; empty selects facts without one"
MAX_TEXT = 200  # ids are at most this long everywhere in Meterline
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Window:
    """The period [start, end) in `timezone`, and the filters every figure of a request uses."""

    start: datetime
    end: datetime
    timezone: str
    user_id: str | None = None
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    application: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def query(self, *group_by: str, latency: bool = True) -> AnalyticsQuery:
        """The figures question over this window; `latency=False` where no latency is shown."""
        return AnalyticsQuery(start=self.start, end=self.end, user_id=self.user_id, key_id=self.key_id,
                              team_id=self.team_id, model=self.model, application=self.application,
                              group_by=group_by, timezone=self.timezone, latency=latency)

    def previous(self) -> Window:
        """The period of equal length (the same number of seconds) just before this one."""
        return replace(self, start=self.start - (self.end - self.start), end=self.start)

    def for_user(self, user_id: str) -> Window:
        return replace(self, user_id=user_id)

    def describe(self) -> dict:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "timezone": self.timezone,
                "filters": {name: getattr(self, name) for name in
                            ("user_id", "key_id", "team_id", "model", "application")
                            if getattr(self, name) is not None}}


def zone_name(value: str | None, default: str) -> str:
    """An IANA zone name that loads; 400 naming `timezone` otherwise."""
    name = default if value is None else value
    if len(name) <= 64 and name.isprintable() and is_time_zone(name):
        return name
    raise errors.bad_request(f"'timezone' must be an IANA time zone name such as 'UTC' or 'Europe/Paris'; "
                             f"got {name[:80]!r}", "timezone", code="invalid_timezone")


def moment(value: str, field: str, zone: ZoneInfo) -> datetime:
    """A date (local midnight in `zone`) or a date and time with an offset, as UTC."""
    try:
        if len(value) > 64:
            raise ValueError("too long")
        if _DATE.fullmatch(value):
            parsed = datetime.combine(date.fromisoformat(value), time(), tzinfo=zone)
        else:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise errors.bad_request(
                    f"'{field}' {value!r} has no offset: add one (such as 'Z' or '+02:00') or give a "
                    "bare date, which is read in `timezone`", field, code="invalid_date")
        return utc_instant(parsed)
    except (ValueError, OverflowError):
        raise errors.bad_request(f"'{field}' must be {PERIOD_RULE}; got {value[:80]!r}", field,
                                 code="invalid_date") from None


def _default_period(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    today = now.astimezone(zone).date()
    first = datetime.combine(today.replace(day=1), time(), tzinfo=zone)
    tomorrow = datetime.combine(today + timedelta(days=1), time(), tzinfo=zone)
    return utc_instant(first), utc_instant(tomorrow)


def text(value: str | None, field: str, *, empty_ok: bool = False) -> str | None:
    """A filter value: at most 200 printable characters (empty only where it means 'none')."""
    if value is None:
        return None
    if not value and not empty_ok:
        raise errors.bad_request(f"'{field}' must not be empty; leave it out to select every {field}",
                                 field, code="invalid_filter")
    if len(value) > MAX_TEXT or any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise errors.bad_request(f"'{field}' must be at most {MAX_TEXT} characters without control "
                                 f"characters; got {value[:80]!r}", field, code="invalid_filter")
    return value


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def refuse_unknown(request: Request) -> None:
    """400 for a query parameter the route does not take: a misspelt filter (`user=` for
    `user_id=`) would otherwise be ignored, and the figures of everyone read as one user's."""
    route = request.scope.get("route")
    if route is None:
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        name = unknown[0][:40]
        raise errors.bad_request(f"unknown parameter {name!r}; this endpoint takes "
                                 f"{', '.join(sorted(known))}", name, code="unknown_parameter")


def period_of(ctx: Ctx, request: Request,
              from_: Annotated[str | None, Query(alias="from", description=FROM_DOC)] = None,
              to: Annotated[str | None, Query(description=TO_DOC)] = None,
              timezone: Annotated[str | None, Query(description=TZ_DOC)] = None,
              model: Annotated[str | None, Query(description=FILTER_DOC.format("model"))] = None,
              key_id: Annotated[str | None, Query(description=FILTER_DOC.format("API key id"))] = None,
              team_id: Annotated[str | None, Query(description=FILTER_DOC.format("team") + EMPTY_DOC)] = None,
              application: Annotated[str | None, Query(
                  description=FILTER_DOC.format("application tag (`app` label)") + EMPTY_DOC)] = None,
              ) -> Window:
    """The request's period and filters but the user (a FastAPI dependency; a route about one
    user takes the user from its path)."""
    refuse_unknown(request)
    tz = zone_name(timezone, ctx.options.billing_timezone)
    zone = ZoneInfo(tz)
    default_start, default_end = _default_period(ctx.clock.now(), zone)
    start = default_start if from_ is None else moment(from_, "from", zone)
    end = default_end if to is None else moment(to, "to", zone)
    if end < start:
        raise errors.bad_request(f"'to' ({end.isoformat()}) is before 'from' ({start.isoformat()}); "
                                 "the period is [from, to)", "to", code="invalid_period")
    return Window(start, end, tz, key_id=text(key_id, "key_id"),
                  team_id=text(team_id, "team_id", empty_ok=True), model=text(model, "model"),
                  application=text(application, "application", empty_ok=True))


def window(period: Annotated[Window, Depends(period_of)],
           user_id: Annotated[str | None, Query(description=FILTER_DOC.format("user"))] = None) -> Window:
    """The request's period and every filter (a FastAPI dependency)."""
    return period.for_user(text(user_id, "user_id")) if user_id is not None else period


Period = Annotated[Window, Depends(window)]
UserPeriod = Annotated[Window, Depends(period_of)]
