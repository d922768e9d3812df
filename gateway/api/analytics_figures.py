"""`Figures` as the admin analytics API shows them: money as exact decimal strings, counts as
integers, rates and changes as percentages.

Rounding happens once, at the end: a rate or a change is worked out from the exact counts and
nano-dollar amounts (fractions), then rounded half up to two decimals of a percent. Latency
figures are null where no request finished (an empty period did not answer in 0 ms).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from domain.usage_figures import Figures
from gateway.api.deps import usd

_CENT = Decimal("0.01")
METRICS = ("requests", "tokens", "cost", "errors", "latency")
SUMMARY = ("total_requests", "total_tokens", "prompt_tokens", "completion_tokens", "active_users",
           "cost_usd", "avg_latency_ms", "p95_latency_ms", "error_rate")


def percent(value: Fraction | int | None) -> float | None:
    """`value` x 100, rounded half up (away from zero) to two decimals; None stays None."""
    if value is None:
        return None
    with localcontext() as exact:
        exact.prec = 80  # nano-dollar sums up to 2**63 and their ratios, exact before the rounding
        fraction = Fraction(value)
        scaled = Decimal(fraction.numerator) * 100 / Decimal(fraction.denominator)
        return float(scaled.quantize(_CENT, rounding=ROUND_HALF_UP))


def share(part: int, whole: int) -> float | None:
    """`part` as a percentage of `whole`; None when the whole is zero."""
    return None if whole == 0 else percent(Fraction(part, whole))


def change(current: Fraction | int | None, previous: Fraction | int | None) -> float | None:
    """The change from `previous` to `current` in percent of |previous|; None when previous is 0 or
    unknown (no change can be expressed against nothing)."""
    if current is None or previous is None or previous == 0:
        return None
    return percent(Fraction(current - previous) / abs(Fraction(previous)))


def average_latency(f: Figures | None) -> Fraction | None:
    return None if f is None or f.finished == 0 else Fraction(f.latency_ms_sum, f.finished)


def error_rate(f: Figures | None) -> Fraction:
    return Fraction(0) if f is None or f.finished == 0 else Fraction(f.errors, f.finished)


def whole_ms(value: Fraction | None) -> int | None:
    """Milliseconds rounded half up to a whole number."""
    return None if value is None else math.floor(value + Fraction(1, 2))


def per_request_usd(cost: int, requests: int) -> str | None:
    """Cost per request in USD, rounded half up to the nano-dollar; None without requests."""
    if requests == 0:
        return None
    with localcontext() as exact:
        exact.prec = 80
        nanos = (Decimal(cost) / Decimal(requests)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return usd(int(nanos))


def exact(f: Figures) -> dict[str, Fraction | int | None]:
    """The summary's figures before rounding (what changes are worked out from)."""
    return {"total_requests": f.requests, "total_tokens": f.total_tokens, "prompt_tokens": f.prompt_tokens,
            "completion_tokens": f.completion_tokens, "active_users": f.users, "cost_usd": f.cost,
            "avg_latency_ms": average_latency(f), "p95_latency_ms": f.latency_quantile(0.95),
            "error_rate": error_rate(f)}


def summary(f: Figures) -> dict:
    """The summary figures of one period."""
    values = exact(f)
    return {**values, "cost_usd": usd(f.cost), "avg_latency_ms": whole_ms(values["avg_latency_ms"]),
            "error_rate": percent(values["error_rate"])}


def changes(current: Figures, previous: Figures) -> dict[str, float | None]:
    now, before = exact(current), exact(previous)
    return {name: change(now[name], before[name]) for name in SUMMARY}


def metric_value(f: Figures | None, metric: str) -> int | str | None:
    """One time-series point: zero for an empty bucket, but null latency (nothing finished)."""
    if metric == "latency":
        return whole_ms(average_latency(f))
    if f is None:
        return "0" if metric == "cost" else 0
    return {"requests": f.requests, "tokens": f.total_tokens, "cost": usd(f.cost), "errors": f.errors}[metric]


def ranking_value(f: Figures, by: str) -> int:
    """What "top" means for `by`: requests, total tokens, or cost in nano-dollars."""
    return {"requests": f.requests, "tokens": f.total_tokens, "cost": f.cost}[by]


def usage(f: Figures | None) -> dict:
    """Requests, tokens and cost of a group (zeros when it has no facts)."""
    if f is None:
        return {"requests": 0, "total_tokens": 0, "cost_usd": "0"}
    return {"requests": f.requests, "total_tokens": f.total_tokens, "cost_usd": usd(f.cost)}
