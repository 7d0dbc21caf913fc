"""Finding the header row: exports often put a title above it ("Export des appels - novembre 2025", merged
across the columns) and blank rows around it. `manifest.header_row: auto` takes the first of the first 20
non-empty rows that holds the required headers; a number forces that spreadsheet row."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..config import Config
from ..errors import ManifestError
from .model import header_key
from .read_csv import RawTable

SCAN_ROWS = 20


def required_headers(cfg: Config, fields: tuple[str, ...]) -> set[str]:
    return {header_key(str(getattr(cfg.columns, f))) for f in fields}


def find_header(table: RawTable, cfg: Config, fields: tuple[str, ...], name: str) -> tuple[RawTable, str | None]:
    """The table re-split at its header row, and a note naming the rows skipped above it (None if none)."""
    setting = cfg.manifest.header_row
    if setting == "auto":
        wanted = required_headers(cfg, fields)
        if wanted <= {header_key(h) for h in table.headers}:
            return table, None
        for k in range(min(SCAN_ROWS, len(table.data))):
            cells = [str(v) for v in table.data.iloc[k].tolist()]
            if wanted <= {header_key(c) for c in cells}:
                return _split(table, k), _note(table, k)
        return table, None
    row = int(setting)
    if row == table.header_row:
        return table, None
    positions = np.flatnonzero(table.lines == row)
    if not len(positions):
        raise ManifestError(
            f"{name}: manifest.header_row is {row}, but row {row} is not among the rows read (the first "
            f"non-empty row is {table.header_row}); set manifest.header_row: auto or the row of the headers"
        )
    k = int(positions[0])
    return _split(table, k), _note(table, k)


def _split(table: RawTable, k: int) -> RawTable:
    width = table.data.shape[1]
    headers = [str(v) for v in table.data.iloc[k].tolist()] + [""] * max(0, len(table.headers) - width)
    data = table.data.iloc[k + 1:].reset_index(drop=True)
    return replace(table, headers=headers, data=data, lines=table.lines[k + 1:], header_row=int(table.lines[k]))


def _note(table: RawTable, k: int) -> str:
    above = [table.headers, *(table.data.iloc[i].tolist() for i in range(k))]
    title = next((str(c).strip() for row in above for c in row if str(c).strip()), "")
    first, last = table.header_row, int(table.lines[k - 1]) if k else table.header_row
    rows = f"row {first}" if first == last else f"rows {first} to {last}"
    shown = f" ({title[:60]!r})" if title else ""
    return f"the headers are on row {int(table.lines[k])}: {rows} above them skipped{shown}"
