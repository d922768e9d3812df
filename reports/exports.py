"""The report formats a user can ask for, and how each is made and served.

Chargeback formats write one row per group (`FORMATS`); FOCUS formats one row per group and day
(`FOCUS_FORMATS`). `render` makes either from the analytics store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain.ports.analytics import AnalyticsStore
from reports.chargeback import Adjustments, Chargeback, Directory, chargeback
from reports.report_period import ReportPeriod
from reports.writers.csv_file import write_csv
from reports.writers.focus import focus_frame, write_focus_csv, write_focus_parquet
from reports.writers.json_file import write_json
from reports.writers.parquet_file import write_parquet
from reports.writers.pdf_file import write_pdf
from reports.writers.xlsx_file import write_xlsx

PARQUET = "application/vnd.apache.parquet"


@dataclass(frozen=True)
class Format:
    write: Callable[[Any], bytes]  # a Chargeback, or a FOCUS frame
    media_type: str
    extension: str


FORMATS = {
    "json": Format(write_json, "application/json", "json"),
    "csv": Format(write_csv, "text/csv; charset=utf-8", "csv"),
    "parquet": Format(write_parquet, PARQUET, "parquet"),
    "xlsx": Format(write_xlsx, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "pdf": Format(write_pdf, "application/pdf", "pdf"),
}
FOCUS_FORMATS = {
    "focus": Format(write_focus_csv, "text/csv; charset=utf-8", "focus.csv"),
    "focus-parquet": Format(write_focus_parquet, PARQUET, "focus.parquet"),
}
ALL_FORMATS = {**FORMATS, **FOCUS_FORMATS}


def render(store: AnalyticsStore, period: ReportPeriod, group_by: str, fmt: str,
           directory: Directory | None = None, late: Adjustments | None = None) -> bytes:
    if fmt in FOCUS_FORMATS:
        return FOCUS_FORMATS[fmt].write(focus_frame(store, period, group_by, directory, late))
    return FORMATS[fmt].write(chargeback(store, period, group_by, directory, late))


def render_all(store: AnalyticsStore, period: ReportPeriod, group_by: str, report: Chargeback,
               directory: Directory | None = None, late: Adjustments | None = None) -> dict[str, bytes]:
    """Every format of one grouping: the chargeback ones from `report`, the FOCUS ones by day."""
    files = {fmt: f.write(report) for fmt, f in FORMATS.items()}
    frame = focus_frame(store, period, group_by, directory, late)
    files |= {fmt: f.write(frame) for fmt, f in FOCUS_FORMATS.items()}
    return files


def file_name(period: ReportPeriod, group_by: str, fmt: str) -> str:
    """`chargeback-2026-03-by-team.csv`: a name a finance team can file as is."""
    return f"chargeback-{period.label.replace('..', '_to_')}-by-{group_by}.{ALL_FORMATS[fmt].extension}"
