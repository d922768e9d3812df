"""Chargeback as JSON: the period, the rows and the totals; money as exact decimal strings."""

from __future__ import annotations

import json

from reports.chargeback import Chargeback
from reports.writers.table import columns, money_text, rows


def as_dict(report: Chargeback) -> dict:
    names = columns(report)

    def record(values: list) -> dict:
        row = dict(zip(names, values, strict=True))
        return {**row, "cost_usd": money_text(row["cost_usd"]), "share_percent": str(row["share_percent"])}

    *body, totals = rows(report)
    period = report.period
    return {"period": period.label, "from": period.start.isoformat(), "to": period.end.isoformat(),
            "timezone": period.timezone, "group_by": report.group_by, "currency": "USD",
            "rows": [record(values) for values in body],
            "totals": {k: v for k, v in record(totals).items()
                       if k not in (names[0], "name", "usage_period")}}


def write_json(report: Chargeback) -> bytes:
    return json.dumps(as_dict(report), ensure_ascii=False, indent=1).encode() + b"\n"
