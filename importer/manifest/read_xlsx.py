"""XLSX manifests: the first visible sheet or the one `manifest.sheet` names, every cell as the text a user sees.

Numbers are converted carefully: Excel stores every number as a float, so an integer-valued float
(33612345678.0, a phone number typed without its "+") becomes "33612345678", never "3.3612E+10"; dates
become ISO 8601 text. Row numbers are the sheet's own; empty rows are skipped later, numbering kept.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ManifestError
from .read_csv import RawTable
from .xlsx_layout import SheetLayout, scan_sheet


def read_xlsx_table(path: Path, sheet: str | None) -> RawTable:
    """Read one sheet (`sheet`, matched exactly then ignoring case; None: the first visible one)."""
    try:
        import openpyxl

        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, XML errors... for a damaged workbook
        hint = ""
        with open(path, "rb") as fh:
            if not fh.read(4).startswith(b"PK"):  # every .xlsx is a zip archive
                hint = " (it is not an .xlsx file inside: if it is a CSV, rename it .csv)"
        raise ManifestError(f"cannot read {path.name} as an Excel workbook: {exc}{hint}") from None
    try:
        name = _choose_sheet(path, workbook, sheet)
        ws = workbook[name]
        try:
            rows = [list(_xlsx_text(v) for v in row) for row in ws.iter_rows(values_only=True)]
            layout = scan_sheet(workbook._archive, ws._worksheet_path)
        except ManifestError:
            raise
        except Exception as exc:
            raise ManifestError(f"cannot read sheet {name!r} of {path.name}: {exc}") from None
        others = [f"{n!r}" + ("" if workbook[n].sheet_state == "visible" else " (hidden)")
                  for n in workbook.sheetnames if n != name]
    finally:
        workbook.close()
    _fill_merged(rows, layout)
    header_index = next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)
    if header_index is None:
        raise ManifestError(f"{path.name}: sheet {name!r} is empty: it has no header line (and no rows)")
    width = max(len(r) for r in rows[header_index:])
    padded = [r + [""] * (width - len(r)) for r in rows[header_index:]]
    headers = list(padded[0])
    columns = list(zip(*padded[1:], strict=True)) if len(padded) > 1 else [() for _ in range(width)]
    data = pd.DataFrame({j: pd.Series(list(col), dtype=str) for j, col in enumerate(columns)})
    header_row = header_index + 1
    lines = np.arange(header_row + 1, header_row + 1 + len(data), dtype=np.int64)
    where = f"sheet {name!r}" + (f" (the workbook's other sheets: {', '.join(others)})" if others else "")
    return RawTable(headers, data, lines, header_row, ",", "xlsx", sheet=where, sheet_name=name, layout=layout)


def _choose_sheet(path: Path, workbook: Any, wanted: str | None) -> str:
    names = list(workbook.sheetnames)
    if not names:
        raise ManifestError(f"{path.name} has no sheet")
    if wanted is None:  # the first visible sheet in tab order, not the one that was active when saved
        visible = [n for n in names if workbook[n].sheet_state == "visible"]
        return visible[0] if visible else names[0]
    if wanted in names:
        return wanted
    folded = [n for n in names if n.strip().casefold() == wanted.strip().casefold()]
    if len(folded) != 1:
        raise ManifestError(
            f"{path.name} has no sheet named {wanted!r} (manifest.sheet); its sheets are: "
            + ", ".join(repr(n) for n in names)
        )
    return folded[0]


def _fill_merged(rows: list[list[str]], layout: SheetLayout) -> None:
    """Each cell of a merged range takes the value of the range's top-left cell, as Excel shows it."""
    for _ref, r1, c1, r2, c2 in layout.merged:
        if r1 - 1 >= len(rows) or c1 >= len(rows[r1 - 1]):
            continue
        value = rows[r1 - 1][c1]
        for r in range(r1 - 1, min(r2, len(rows))):
            row = rows[r]
            if len(row) <= c2:
                row.extend([""] * (c2 + 1 - len(row)))
            for c in range(c1, c2 + 1):
                if not row[c]:
                    row[c] = value


def _xlsx_text(value: object) -> str:
    """A cell value as the text a user sees (and would have typed)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Excel stores every number as a float: 33612345678.0 is the phone number 33612345678.
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)
