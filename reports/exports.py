"""The report formats a user can ask for, and how each is made and served.

Chargeback formats write one row per group (`FORMATS`); FOCUS formats one row per group and day
(`FOCUS_FORMATS`). `render` makes either from the analytics store.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from domain.ports.analytics import AnalyticsStore
from reports.chargeback import Adjustments, Chargeback, Directory, chargeback
from reports.report_period import ReportPeriod

PARQUET = "application/vnd.apache.parquet"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Format:
    writer: str  # "module:function" of reports.writers, taking a Chargeback or a FOCUS frame
    media_type: str
    extension: str

    def write(self, report: Any) -> bytes:
        """Imports the writer when a file is first asked for: polars, pyarrow, xlsxwriter and
        fpdf2 cost the gateway ~100 MB of memory, and most gateways never write a report."""
        module, name = self.writer.split(":")
        return getattr(importlib.import_module(f"reports.writers.{module}"), name)(report)


FORMATS = {
    "json": Format("json_file:write_json", "application/json", "json"),
    "csv": Format("csv_file:write_csv", "text/csv; charset=utf-8", "csv"),
    "parquet": Format("parquet_file:write_parquet", PARQUET, "parquet"),
    "xlsx": Format("xlsx_file:write_xlsx", XLSX, "xlsx"),
    "pdf": Format("pdf_file:write_pdf", "application/pdf", "pdf"),
}
FOCUS_FORMATS = {
    "focus": Format("focus:write_focus_csv", "text/csv; charset=utf-8", "focus.csv"),
    "focus-parquet": Format("focus:write_focus_parquet", PARQUET, "focus.parquet"),
}
ALL_FORMATS = {**FORMATS, **FOCUS_FORMATS}


def render(store: AnalyticsStore, period: ReportPeriod, group_by: str, fmt: str,
           directory: Directory | None = None, late: Adjustments | None = None) -> bytes:
    if fmt in FOCUS_FORMATS:
        from reports.writers.focus import focus_frame  # polars: only when a FOCUS file is asked for
        return FOCUS_FORMATS[fmt].write(focus_frame(store, period, group_by, directory, late))
    return FORMATS[fmt].write(chargeback(store, period, group_by, directory, late))


def render_all(store: AnalyticsStore, period: ReportPeriod, group_by: str, report: Chargeback,
               directory: Directory | None = None, late: Adjustments | None = None) -> dict[str, bytes]:
    """Every format of one grouping: the chargeback ones from `report`, the FOCUS ones by day."""
    from reports.writers.focus import focus_frame

    files = {fmt: f.write(report) for fmt, f in FORMATS.items()}
    frame = focus_frame(store, period, group_by, directory, late)
    files |= {fmt: f.write(frame) for fmt, f in FOCUS_FORMATS.items()}
    return files


def file_name(period: ReportPeriod, group_by: str, fmt: str) -> str:
    """`chargeback-2026-03-by-team.csv`: a name a finance team can file as is."""
    return f"chargeback-{period.label.replace('..', '_to_')}-by-{group_by}.{ALL_FORMATS[fmt].extension}"
