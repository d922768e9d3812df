"""The report formats a user can ask for, and how each is served: bytes, media type, extension."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reports.chargeback import Chargeback
from reports.report_period import ReportPeriod
from reports.writers.csv_file import write_csv
from reports.writers.json_file import write_json
from reports.writers.parquet_file import write_parquet
from reports.writers.pdf_file import write_pdf
from reports.writers.xlsx_file import write_xlsx


@dataclass(frozen=True)
class Format:
    write: Callable[[Chargeback], bytes]
    media_type: str
    extension: str


FORMATS = {
    "json": Format(write_json, "application/json", "json"),
    "csv": Format(write_csv, "text/csv; charset=utf-8", "csv"),
    "parquet": Format(write_parquet, "application/vnd.apache.parquet", "parquet"),
    "xlsx": Format(write_xlsx, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "pdf": Format(write_pdf, "application/pdf", "pdf"),
}


def file_name(period: ReportPeriod, group_by: str, fmt: str) -> str:
    """`chargeback-2026-03-by-team.csv`: a name a finance team can file as is."""
    return f"chargeback-{period.label.replace('..', '_to_')}-by-{group_by}.{FORMATS[fmt].extension}"
