"""Workbook pieces shared by the XLSX results and the problem report: colours, text cells, comments.

Both are written with openpyxl's write-only mode: rows stream to disk as they are appended (inline strings,
no shared-string table), so a million-row sheet costs about as much memory as a few rows. The price is that
cells are styled one by one as they are written (a write-only sheet cannot be styled afterwards).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

# Excel's own "Good", "Neutral" and "Bad" cell styles, so the colours read as people expect.
GREEN = PatternFill("solid", fgColor="C6EFCE")
AMBER = PatternFill("solid", fgColor="FFEB9C")
RED = PatternFill("solid", fgColor="FFC7CE")
YELLOW = PatternFill("solid", fgColor="FFFF99")
GREY = PatternFill("solid", fgColor="D9D9D9")
HEADER = PatternFill("solid", fgColor="DDEBF7")
STATUS_FILLS = {
    "uploaded": GREEN,
    "already_uploaded": GREEN,
    "unknown": AMBER,
    "invalid": RED,
    "agent_failed": RED,
    "failed": RED,
    "not_attempted": GREY,
}
SEVERITY_FILLS = {"error": RED, "warning": YELLOW}
BOLD = Font(name="Calibri", bold=True)  # named: without a name LibreOffice falls back to a serif
LINK = Font(name="Calibri", color="0563C1", underline="single")
WRAP = Alignment(wrap_text=True)
AUTHOR = "allobrain-import"
MAX_CELL_CHARS = 32_767  # Excel refuses to open a workbook with a longer cell
# Characters XML 1.0 cannot hold (openpyxl refuses them); shown as U+FFFD so the rest of the cell survives.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def text(ws: WriteOnlyWorksheet, value: str, fill: PatternFill | None = None, font: Font | None = None,
         wrap: bool = False) -> WriteOnlyCell:
    """A cell holding `value` as text, always: a value starting with `=` stays the text the user typed,
    never a live formula (openpyxl would otherwise store it as one)."""
    value = _ILLEGAL.sub("\ufffd", value)[:MAX_CELL_CHARS]
    cell = WriteOnlyCell(ws, value=value)
    cell.data_type = "s"
    if fill is not None:
        cell.fill = fill
    if font is not None:
        cell.font = font
    if wrap:  # long explanations: wrapped in their column rather than running off the page
        cell.alignment = WRAP
    return cell


def number_or_text(ws: WriteOnlyWorksheet, value: str) -> WriteOnlyCell:
    """Small counters (row numbers, HTTP statuses, attempts) as numbers, so Excel does not flag them as
    numbers stored as text; anything else as text."""
    if value.isdigit() and len(value) < 10:
        return WriteOnlyCell(ws, value=int(value))
    return text(ws, value)


def comment(lines: Iterable[str]) -> Comment:
    """A comment sized to its text (openpyxl's default box cuts off anything past three short lines)."""
    body = "\n".join(lines)
    wrapped = sum(1 + len(line) // 48 for line in body.splitlines()) or 1
    return Comment(body, AUTHOR, height=min(600, 20 + 15 * wrapped), width=320)


def grow(ws: WriteOnlyWorksheet, row: int, wrapped: Iterable[tuple[str, float]]) -> None:
    """Give row `row` the height its wrapped cells need ((text, column width) pairs): neither Excel nor
    LibreOffice sizes a written row by itself, and a wrapped line would run under the next row. Call just
    before appending that row."""
    lines = max((sum(1 + int(len(part) / max(width * 0.85 - 2, 1)) for part in text.split("\n"))
                 for text, width in wrapped if text), default=1)
    if lines > 1:
        ws.row_dimensions[row].height = min(409, 15 * lines)


def mark(cell: WriteOnlyCell, problems: list[tuple[str, str]] | None) -> WriteOnlyCell:
    """Red for an error, yellow for a warning only, and every (severity, message) as the cell's comment."""
    if problems:
        worst = "error" if any(severity == "error" for severity, _ in problems) else "warning"
        cell.fill = SEVERITY_FILLS[worst]
        cell.comment = comment(("warning: " if sev == "warning" else "") + msg for sev, msg in problems)
    return cell


def header_row(ws: WriteOnlyWorksheet, headers: Iterable[str]) -> list[WriteOnlyCell]:
    return [text(ws, h, HEADER, BOLD) for h in headers]


def set_widths(ws: WriteOnlyWorksheet, widths: Iterable[float]) -> None:
    """Column widths must be set before the first row of a write-only sheet."""
    for j, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(j)].width = max(8.0, min(60.0, width))


def width_of(header: str, sample: Iterable[str] = ()) -> float:
    return 2 + max([len(header), *(len(s) for s in sample)])


def freeze_below(ws: WriteOnlyWorksheet, header: int) -> None:
    """Keep the header (row `header`) in view. A write-only sheet writes its view first: call before any row."""
    ws.freeze_panes = f"A{header + 1}"
    fit_page(ws)


def fit_page(ws: WriteOnlyWorksheet) -> None:
    """Printed (or exported to PDF) landscape, as wide as the page, rather than cut into column strips."""
    ws.page_setup.orientation = "landscape"
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0


def add_filter(ws: WriteOnlyWorksheet, first_row: int, last_row: int, columns: int) -> None:
    """An autofilter over the table whose header is at `first_row` (written last: call after the rows)."""
    if columns:
        ws.auto_filter.ref = f"A{first_row}:{get_column_letter(columns)}{max(last_row, first_row)}"


def add_pairs(wb: Workbook, title: str, pairs: Iterable[tuple[str, str]]) -> None:
    """A two-column sheet of labels and values (the Summary)."""
    ws = wb.create_sheet(title)
    set_widths(ws, (16, 100))
    fit_page(ws)
    for n, (label, value) in enumerate(pairs, start=1):
        grow(ws, n, [(value, 100)])
        ws.append([text(ws, label, font=BOLD), text(ws, value, wrap=True)])


def save_atomically(wb: Workbook, out: Path) -> None:
    """Save beside `out`, then rename over it: a stop while saving never leaves half a workbook."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        wb.save(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
