"""Chargeback as CSV: one header line, a row per group, the totals row last; money exact."""

from __future__ import annotations

from reports.chargeback import Chargeback
from reports.writers.csv_text import csv_bytes
from reports.writers.table import columns, money_text, rows


def write_csv(report: Chargeback) -> bytes:
    body = ([*row[:-2], money_text(row[-2]), str(row[-1])] for row in rows(report))
    return csv_bytes(columns(report), body)
