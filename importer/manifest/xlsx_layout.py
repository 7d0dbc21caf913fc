"""What a sheet's cell values alone do not tell, read from its XML in one streaming pass: hidden (or
filtered) rows, merged ranges, and formulas Excel never calculated (no saved value: openpyxl reads them as
empty, which would look like a missing cell)."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from xml.etree.ElementTree import iterparse

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REF = re.compile(r"^\$?([A-Z]+)\$?([0-9]+)$")


@dataclass
class SheetLayout:
    hidden_rows: list[int] = field(default_factory=list)  # spreadsheet row numbers
    merged: list[tuple[str, int, int, int, int]] = field(default_factory=list)  # (ref, row1, col1, row2, col2)
    uncalculated: list[tuple[int, int]] = field(default_factory=list)  # (row, 0-based column)


def column_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _cell(ref: str) -> tuple[int, int] | None:
    m = _REF.match(ref.upper())
    return (int(m.group(2)), column_index(m.group(1))) if m else None


def scan_sheet(archive: zipfile.ZipFile, member: str) -> SheetLayout:
    layout = SheetLayout()
    row_tag, cell_tag, formula_tag, value_tag = _NS + "row", _NS + "c", _NS + "f", _NS + "v"
    merge_tag, sheet_data = _NS + "mergeCell", _NS + "sheetData"
    with archive.open(member) as fh:
        for _event, el in iterparse(fh, events=("end",)):
            tag = el.tag
            if tag == cell_tag:
                if el.find(formula_tag) is not None:
                    v = el.find(value_tag)
                    if (v is None or v.text is None) and el.get("t") != "str":
                        where = _cell(el.get("r", ""))
                        if where:
                            layout.uncalculated.append(where)
                el.clear()
            elif tag == row_tag:
                if el.get("hidden") in ("1", "true"):
                    layout.hidden_rows.append(int(el.get("r", "0")))
                el.clear()
            elif tag == merge_tag:
                ref = el.get("ref", "")
                first, _, last = ref.partition(":")
                a, b = _cell(first), _cell(last or first)
                if a and b:
                    layout.merged.append((ref, a[0], a[1], b[0], b[1]))
            elif tag == sheet_data:
                el.clear()
    return layout
