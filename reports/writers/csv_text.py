"""CSV that a spreadsheet reads as data: cells that would start a formula are quoted as text."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A cell shown as text: an id such as `=HYPERLINK(...)` gets a leading quote (OWASP's CSV
    injection advice); numbers, negative amounts included, stay as they are."""
    if value is None:
        return ""
    # past leading spaces too: a spreadsheet set to trim them reads " =1+1" as a formula
    if isinstance(value, str) and value.lstrip(" \u00a0").startswith(_FORMULA_STARTS):
        try:
            Decimal(value)
        except InvalidOperation:
            return "'" + value
    return value


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return out.getvalue().encode()
