"""Chargeback as PDF (fpdf2): a title, the period, a pie chart of the cost shares and the table.

Text is set in DejaVu Sans when the system has it (Debian's fonts-dejavu-core: Latin, Greek,
Cyrillic, Arabic, Hebrew and more, but no CJK or emoji); otherwise in the PDF core font Helvetica.
A character the font cannot show is replaced by "?". The document's dates are the period's end,
so the same report gives the same bytes.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from fpdf import FPDF

from domain.money import from_nanos
from reports.chargeback import Chargeback, Usage
from reports.writers.table import money_text

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
SLICES = 8  # the largest groups get a slice each; the rest share one
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34))
HEADER = ("group", "requests", "input tok.", "output tok.", "cost (USD)", "share %")
WIDTHS = (56, 22, 30, 30, 34, 18)
LINE = 6  # mm per table line


def write_pdf(report: Chargeback) -> bytes:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creation_date(report.period.end)
    pdf.set_title(f"Chargeback {report.period.label}")
    pdf.set_author("Meterline")
    font = _font(pdf)
    pdf.add_page()
    pdf.set_font(font, "B", 16)
    pdf.cell(0, 10, _text(pdf, f"Chargeback by {report.group_by.replace('_', ' ')}"), new_x="LMARGIN",
             new_y="NEXT")
    pdf.set_font(font, "", 10)
    period = report.period
    pdf.cell(0, 6, _text(pdf, f"Period {period.label}: {period.first_day} to {period.last_day} "
                               f"({period.timezone}); money in USD, exact to the nano-dollar"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 6, _text(pdf, f"Total {money_text(from_nanos(report.totals.cost))} USD over "
                               f"{report.totals.requests:,} requests"), new_x="LMARGIN", new_y="NEXT")
    _pie(pdf, font, report)
    _table(pdf, font, report)
    return bytes(pdf.output())


def _font(pdf: FPDF) -> str:
    regular, bold = DEJAVU / "DejaVuSans.ttf", DEJAVU / "DejaVuSans-Bold.ttf"
    if regular.exists() and bold.exists():
        pdf.add_font("DejaVu", "", str(regular))
        pdf.add_font("DejaVu", "B", str(bold))
        return "DejaVu"
    return "Helvetica"


def _text(pdf: FPDF, text: str) -> str:
    """The text as the current font can show it: a character it has no glyph for (CJK, emoji in
    DejaVu Sans; anything past Latin-1 in Helvetica) becomes "?", as a name of unknown glyphs would
    otherwise print as nothing, and a group with such a name as a blank line."""
    cmap = getattr(pdf.current_font, "cmap", None)
    if cmap is None:  # a core font: Latin-1
        return text.encode("latin-1", "replace").decode("latin-1")
    return "".join(ch if ord(ch) in cmap else "?" for ch in text)


def _slices(report: Chargeback) -> list[tuple[str, int, Decimal]]:
    """(name, cost, share) of the largest groups, the rest summed into one slice."""
    costly = [(row.name, row.usage.cost, row.share) for row in report.rows if row.usage.cost > 0]
    if len(costly) <= SLICES + 1:
        return costly
    rest = costly[SLICES:]
    return [*costly[:SLICES], (f"{len(rest)} others", sum(c for _, c, _ in rest), sum(s for _, _, s in rest))]


def _pie(pdf: FPDF, font: str, report: Chargeback) -> None:
    slices, total = _slices(report), report.totals.cost
    top = pdf.get_y() + 4
    if not slices or total <= 0:
        pdf.cell(0, 8, "No cost in this period.", new_x="LMARGIN", new_y="NEXT")
        return
    cx, cy, radius = 50.0, top + 30, 28.0
    angle = 0.0
    for i, (_, cost, _) in enumerate(slices):
        sweep = 360.0 * cost / total
        pdf.set_fill_color(*PALETTE[i % len(PALETTE)])
        if sweep >= 359.999:
            pdf.ellipse(cx - radius, cy - radius, 2 * radius, 2 * radius, style="F")
        elif sweep > 0.01:
            pdf.solid_arc(cx - radius, cy - radius, 2 * radius, angle, angle + sweep, style="F")
        angle += sweep
    pdf.set_font(font, "", 9)
    for i, (name, _, share) in enumerate(slices):
        y = top + 6 + 6 * i
        pdf.set_fill_color(*PALETTE[i % len(PALETTE)])
        pdf.rect(95, y, 4, 4, style="F")
        pdf.set_xy(101, y - 0.5)
        pdf.cell(90, 5, _text(pdf, f"{name[:40]}  {share} %"))
    pdf.set_y(top + 66)


def _table(pdf: FPDF, font: str, report: Chargeback) -> None:
    """Every group, one line each, drawn with `text` (half the cost of a `cell`: a month by key is
    thousands of lines), the header repeated on each page."""
    _header(pdf, font)
    pdf.set_font(font, "", 9)
    for row in report.rows:
        label = row.name if row.usage_period is None else f"{row.name} (late, {row.usage_period})"
        _line(pdf, font, label, row.usage, str(row.share))
    pdf.set_font(font, "B", 9)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + sum(WIDTHS), pdf.get_y())
    _line(pdf, font, "Total", report.totals, "100.00" if report.totals.cost > 0 else "0.00")


def _header(pdf: FPDF, font: str) -> None:
    pdf.set_font(font, "B", 9)
    for title, width in zip(HEADER, WIDTHS, strict=True):
        pdf.cell(width, 7, title, border="B", align="L" if title == "group" else "R")
    pdf.ln()


def _line(pdf: FPDF, font: str, label: str, usage: Usage, share: str) -> None:
    if pdf.get_y() + LINE > pdf.page_break_trigger:
        style = pdf.font_style
        pdf.add_page()
        _header(pdf, font)
        pdf.set_font(font, style, 9)
    cells = (label[:38], f"{usage.requests:,}", f"{usage.prompt_tokens:,}", f"{usage.completion_tokens:,}",
             money_text(from_nanos(usage.cost)), share)
    x, baseline = pdf.l_margin, pdf.get_y() + 4.2
    for cell, width, align in zip(cells, WIDTHS, "LRRRRR", strict=True):
        text = _text(pdf, cell)
        left = x + 1 if align == "L" else x + width - 1 - pdf.get_string_width(text)
        pdf.text(left, baseline, text)
        x += width
    pdf.set_y(pdf.get_y() + LINE)
