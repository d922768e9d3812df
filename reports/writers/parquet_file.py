"""Chargeback as Parquet: typed columns (money Decimal(38, 9)), the totals row last."""

from __future__ import annotations

import io

from reports.chargeback import Chargeback
from reports.writers.table import frame


def write_parquet(report: Chargeback) -> bytes:
    out = io.BytesIO()
    frame(report).write_parquet(out, compression="zstd", statistics=False)
    return out.getvalue()
