"""`validate --report`: the manifest handed back as a workbook, its problems marked where they are.

The first sheet is the manifest's own rows, at their own spreadsheet row numbers (so "row 7" in a message is
row 7 here too), each cell with an error red and each with a warning yellow, the problem as the cell's
comment, and an `import_problems` column that sums the row up. A `Problems` sheet lists every problem
(row, column, severity, message) with a link to its cell. Fixed in place, the first sheet is a manifest again:
`import_*` columns are never metadata.
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.hyperlink import Hyperlink

from ..errors import UsageError
from ..manifest import Problem, ValidatedManifest, header_key
from . import sheet
from .xlsx import index_problems

PROBLEMS_COLUMN = "import_problems"
DEFAULT_SHEET = "Manifest"
_SAMPLE_ROWS = 200  # rows looked at to size the columns
PROBLEMS_WIDTH = 60
MESSAGE_WIDTH = 90


def write_problem_report(vm: ValidatedManifest, out: Path, sheet_name: str | None = None) -> Path:
    """Write the annotated copy of `vm`'s manifest to `out` (.xlsx) and return `out`. `sheet_name` keeps a
    configured `manifest.sheet`, so the same config reads the fixed copy."""
    out = Path(out)
    check_report_path(out, vm.loaded.path)
    loaded = vm.loaded
    title = _sheet_title(sheet_name or DEFAULT_SHEET)
    headers = list(loaded.headers)
    extra = list(loaded.import_columns.columns) if loaded.import_columns is not None else []
    extra = [h for h in extra if h != PROBLEMS_COLUMN]  # a report fed back in: its old summary is replaced
    columns = [*headers, *extra, PROBLEMS_COLUMN]
    index = index_problems(vm.problems, [*headers, *extra])
    by_row: dict[int, list[Problem]] = {}
    for p in vm.problems:
        by_row.setdefault(p.row, []).append(p)

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title)
    frame = loaded.frame
    imports = loaded.import_columns[extra] if extra else None
    sample = frame.head(_SAMPLE_ROWS)
    sheet.set_widths(ws, [*(sheet.width_of(h, sample[h].tolist()) for h in headers),
                          *(sheet.width_of(h) for h in extra), PROBLEMS_WIDTH])
    sheet.freeze_below(ws, loaded.header_row)
    for _ in range(loaded.header_row - 1):  # title rows above the header: kept as empty rows
        ws.append([])
    head = sheet.header_row(ws, columns)
    for j, cell in enumerate(head[:-1]):
        sheet.mark(cell, index.get(loaded.header_row, {}).get(j))
    ws.append(head)
    at = loaded.header_row
    rows = frame.itertuples(index=False, name=None)
    extras = imports.itertuples(index=False, name=None) if imports is not None else iter(lambda: (), None)
    for line, values, more in zip(loaded.line_numbers.tolist(), rows, extras, strict=False):
        while at < line - 1:  # blank rows the loader skipped: the numbering stays the spreadsheet's
            ws.append([])
            at += 1
        marks = index.get(line, {})
        cells = [sheet.mark(sheet.text(ws, str(v)), marks.get(j)) for j, v in enumerate((*values, *more))]
        summary = "; ".join(_line(p) for p in by_row.get(line, ()))
        cells.append(sheet.text(ws, summary, _worst_fill(by_row.get(line, ())), wrap=True))
        sheet.grow(ws, line, [(summary, PROBLEMS_WIDTH)])
        ws.append(cells)
        at = line
    sheet.add_filter(ws, loaded.header_row, at, len(columns))
    _problems_sheet(wb, title, vm.problems, {header_key(h): j for j, h in enumerate([*headers, *extra])},
                    len(columns))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        sheet.save_atomically(wb, out)
    except OSError as exc:
        raise UsageError(f"--report: cannot write {out}: {exc.strerror or exc}") from None
    return out


def check_report_path(out: Path, manifest: Path) -> None:
    """Refuse a report path before the manifest is read: not .xlsx, or the manifest itself."""
    if Path(out).suffix.lower() != ".xlsx":
        raise UsageError(f"--report: {Path(out).name} must end in .xlsx (the report is an Excel workbook)")
    if Path(out).resolve() == Path(manifest).resolve():
        raise UsageError("--report must not be the manifest itself (it would be overwritten); choose another path")


def _problems_sheet(wb: Workbook, title: str, problems: list[Problem], position: dict[str, int],
                    n_columns: int) -> None:
    ws = wb.create_sheet("Problems")
    sheet.set_widths(ws, (7, 24, 9, MESSAGE_WIDTH, 12))
    sheet.freeze_below(ws, 1)
    ws.append(sheet.header_row(ws, ("row", "column", "severity", "message", "cell")))
    quoted = "'" + title.replace("'", "''") + "'"
    for n, p in enumerate(problems, start=2):
        j = position.get(header_key(p.column))
        # A problem naming no column of the sheet (a config entry) links to the row's import_problems cell.
        ref = f"{get_column_letter((j if j is not None else n_columns - 1) + 1)}{p.row}"
        link = sheet.text(ws, ref, font=sheet.LINK)
        link._hyperlink = Hyperlink(ref=f"E{n}", location=f"{quoted}!{ref}", display=ref)
        sheet.grow(ws, n, [(p.message, MESSAGE_WIDTH)])
        ws.append([
            sheet.number_or_text(ws, str(p.row)),
            sheet.text(ws, p.column),
            sheet.text(ws, p.severity, sheet.SEVERITY_FILLS[p.severity]),
            sheet.text(ws, p.message, wrap=True),
            link,
        ])
    sheet.add_filter(ws, 1, len(problems) + 1, 5)


def _line(p: Problem) -> str:
    return ("warning: " if p.severity == "warning" else "") + f"{p.column}: {p.message}"


def _worst_fill(problems: list[Problem] | tuple[()]):  # noqa: ANN202
    if not problems:
        return None
    return sheet.SEVERITY_FILLS["error" if any(p.severity == "error" for p in problems) else "warning"]


def _sheet_title(name: str) -> str:
    """Excel's rules for a sheet name: at most 31 characters, none of : \\ / ? * [ ]."""
    cleaned = "".join("_" if c in ':\\/?*[]' else c for c in name).strip("'")[:31]
    return cleaned or DEFAULT_SHEET
