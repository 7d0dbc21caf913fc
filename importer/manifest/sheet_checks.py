"""Problems a sheet's layout causes: merged cells (each row takes the top-left value: said, so nothing is
filled in silently), hidden or filtered rows (imported, and counted), formulas never calculated (no value to
read: an error, not a "missing" cell)."""

from __future__ import annotations

import numpy as np

from .model import Problem
from .xlsx_layout import SheetLayout

MAX_ROWS_NAMED = 10
UNCALCULATED = ("a formula Excel never calculated (the file holds no value for it): open the file in Excel "
                "and save it again, or paste the column as values")


def sheet_problems(layout: SheetLayout, sheet: str, lines: np.ndarray, header_row: int, headers: list[str],
                   kept: set[int]) -> tuple[list[Problem], tuple[tuple[int, str, str], ...]]:
    """Warnings (merged ranges, hidden rows) and row errors (index into the rows read, column, message)."""
    index_of = {int(r): i for i, r in enumerate(lines.tolist())}
    warnings: list[Problem] = []

    def header(col: int) -> str:
        return headers[col].strip() if col < len(headers) else ""

    for ref, r1, c1, r2, c2 in layout.merged:
        if r2 <= header_row or c1 not in kept:
            continue
        span = f"rows {max(r1, header_row + 1)} to {r2}" if r2 > r1 else f"row {r1}"
        cols = "" if c1 == c2 else f", columns {header(c1)} to {header(c2) or '?'}"
        warnings.append(Problem(max(r1, header_row + 1), header(c1),
                                f"merged cells {ref}: {span}{cols} each take the value of its first cell",
                                "warning"))
    hidden = [r for r in layout.hidden_rows if r > header_row and r in index_of]
    if hidden:
        named = ", ".join(str(r) for r in hidden[:MAX_ROWS_NAMED]) + (", ..." if len(hidden) > MAX_ROWS_NAMED else "")
        warnings.append(Problem(hidden[0], f"sheet {sheet!r}",
                                f"{len(hidden)} hidden or filtered rows are imported (rows {named}); unhide them "
                                "in Excel to check them, or delete the rows you do not want sent", "warning"))
    errors = tuple(
        (index_of[r], header(c), UNCALCULATED)
        for r, c in layout.uncalculated
        if r > header_row and r in index_of and c in kept and header(c)
    )
    return warnings, errors
