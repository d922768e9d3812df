"""Chargeback as an Excel workbook (polars' write_excel on xlsxwriter): a formatted table with the
period in the title row, money in a currency format with its exact value kept as a number to 9
decimals, the totals row last. The workbook's dates are fixed to the period's end so the same
report gives the same bytes."""

from __future__ import annotations

import io

import xlsxwriter

from reports.chargeback import Chargeback
from reports.writers.table import frame

MONEY_FORMAT = "$#,##0.00########"


def write_xlsx(report: Chargeback) -> bytes:
    out = io.BytesIO()
    period = report.period
    # ids are data: a user id "=HYPERLINK(...)" must stay text, never become a formula or a link
    workbook = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False,
                                         "strings_to_urls": False, "strings_to_numbers": False})
    # the core properties' dates and the zip entries' times come from `created`: fixed, not now
    workbook.set_properties({"title": f"Chargeback {period.label}", "author": "Meterline",
                             "created": period.end.replace(tzinfo=None)})
    sheet = workbook.add_worksheet("chargeback")
    sheet.write(0, 0, f"Chargeback by {report.group_by.replace('_', ' ')}, {period.label} "
                      f"({period.first_day} to {period.last_day}, {period.timezone}), USD",
                workbook.add_format({"bold": True, "font_size": 13}))
    frame(report).write_excel(
        workbook, sheet, position="A3", table_style="Table Style Light 9", autofit=True,
        column_formats={"cost_usd": MONEY_FORMAT, "share_percent": "0.00"},
        dtype_formats={}, float_precision=9)
    workbook.close()
    return out.getvalue()
