"""The anomalies API (admins only): incidents the anomaly scan recorded, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from domain.money import usd_text
from domain.services.anomalies import Anomalies, IncidentView
from gateway import errors
from gateway.api.analytics_params import refuse_unknown
from gateway.api.anomaly_params import anomaly_query, encode_cursor
from gateway.api.deps import Admin, Ctx

router = APIRouter(prefix="/api/admin", tags=["anomalies"])
Text = Annotated[str | None, Query()]


def anomalies_of(ctx: Ctx) -> Anomalies:
    if ctx.anomalies is None:
        raise errors.GatewayError(503, "this gateway was started without the anomalies store",
                                  "api_error", "anomalies_unavailable")
    return ctx.anomalies


@router.get("/anomalies", summary="Anomaly incidents (spike, night, error_rate), newest first")
async def list_anomalies(ctx: Ctx, _: Admin, request: Request, state: Text = None, kind: Text = None,
                         user_id: Text = None,
                         from_: Annotated[str | None, Query(alias="from")] = None, to: Text = None,
                         cursor: Text = None, limit: Text = None) -> dict[str, Any]:
    """`state` open, resolved or all (default); `kind` spike, night or error_rate; `user_id` the
    user an incident concerns (its own or its key's); `from` (included) and `to` (excluded) bound
    when it was detected. Pass `next_cursor` as `cursor` for older incidents. Each incident carries
    the figures that triggered it: the window (hour or day), the metric, its value, the baseline's
    median and MAD over the trailing weeks, and the factor; spend in nano-units, also as USD text."""
    refuse_unknown(request)  # a misspelt filter (`user=`) would otherwise list everyone's incidents
    query = anomaly_query(state, kind, user_id, from_, to, cursor, limit)
    page, before = await ctx.query(anomalies_of(ctx).page, query.where, query.before, query.limit)
    return {"anomalies": [incident_record(view) for view in page], "next_cursor": encode_cursor(before)}


def incident_record(view: IncidentView) -> dict[str, Any]:
    return {"incident_id": view.incident_id, "kind": view.kind, "scope": view.scope,
            "scope_id": view.scope_id, "user_id": view.user_id,
            "state": "open" if view.is_open else "resolved",
            "detected_at": view.detected_at.isoformat(),
            "resolved_at": view.resolved_at.isoformat() if view.resolved_at else None,
            "figures": _with_usd(view.figures), "resolved_figures": view.resolved_figures}


def _with_usd(figures: dict[str, Any]) -> dict[str, Any]:
    """Spend figures also as exact USD text, as every other money figure of the API is shown."""
    if figures.get("metric") != "cost":
        return figures
    shown = dict(figures)
    for name in ("value", "baseline_median", "baseline_mad"):
        if isinstance(figures.get(name), int | float):
            shown[f"{name}_usd"] = usd_text(round(figures[name]))
    return shown
