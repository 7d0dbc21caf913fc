"""The values that cross the manifest wing's border: a problem of a row, the loaded table, a valid call and
the validated manifest. Plain frozen dataclasses, so every other module can use them without the loaders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of one row. `column` is the header as it appears in the manifest (trimmed)."""

    row: int
    column: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.message}"


@dataclass(frozen=True)
class LoadedManifest:
    path: Path
    # Original (non-import_) columns in file order, under their original headers verbatim; every cell str.
    frame: pd.DataFrame
    headers: tuple[str, ...]  # the frame's headers verbatim (the results CSV repeats them)
    line_numbers: np.ndarray  # int64: the spreadsheet row number of each frame row
    import_columns: pd.DataFrame | None  # import_* columns (names trimmed and lowercased), same index
    delimiter: str  # detected or forced; "," for XLSX
    encoding: str  # "utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16", "utf-32", or "xlsx"
    is_results: bool  # an `import_status` column is present: this is a results CSV fed back in
    warnings: tuple[Problem, ...]
    header_row: int = 1  # the header's spreadsheet row (below 1 only when blank lines precede it)
    # Errors the loader pins on a row (index into frame, column, message): a results CSV's torn last line.
    row_errors: tuple[tuple[int, str, str], ...] = ()
    # For a results CSV whose run recorded it (runinfo): the folder its relative file paths resolve against,
    # and the identity of the ledger that run used (its `uploaded` claims are checked against that ledger).
    base_dir: str | None = None
    results_ledger: str | None = None
    notes: tuple[str, ...] = ()  # what reading did that people should know (title rows skipped above the header)

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def find_column(self, header: str) -> str | None:
        """The frame's label for `header`, matched case-insensitively after trimming; None if absent."""
        return header_lookup(self.headers).get(header_key(header))

    def row_numbers(self) -> list[int]:
        """import_row of each row: its row in the first manifest, kept through reruns of results files."""
        numbers = [int(n) for n in self.line_numbers]
        if self.import_columns is not None and "import_row" in self.import_columns.columns:
            cells = self.import_columns["import_row"].fillna("").astype(str).str.strip().tolist()
            for i, cell in enumerate(cells):
                if cell.isdigit() and cell.isascii():
                    numbers[i] = int(cell)
        return numbers


def header_key(header: str) -> str:
    """How headers are compared: trimmed, case-insensitive."""
    return header.strip().casefold()


def header_lookup(headers: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {header_key(h): h for h in headers}



@dataclass(frozen=True, slots=True)
class CallRow:
    """A valid row, ready to send."""

    index: int  # 0-based position in loaded.frame
    row: int  # spreadsheet row number
    file_path: Path | str  # resolved: a local Path, or the URL (shared by the rows that use the same file)
    file_name: str  # base name, as curl sends it
    file_size: int
    file_mtime_ns: int
    agent_email: str  # trimmed, lowercased
    agent_name: str  # the agent's invite name (the first one given for that email wins)
    timestamp: int  # Unix seconds
    campaign_id: str
    metadata: tuple[tuple[str, str], ...]  # (key, value), empty cells left out
    prior_status: str | None  # import_status when rerunning a results CSV ("failed", "unknown", ...)
    duration: float | None  # seconds, when durations were read and readable
    prior_call_id: str | None = None  # import_call_id when rerunning a results CSV
    file_version: str = ""  # what pins a remote object (S3 ETag, https ETag); "" when size and mtime do


def total_bytes(calls: Iterable[CallRow]) -> int:
    return sum(c.file_size for c in calls)


def total_duration(calls: Iterable[CallRow]) -> float | None:
    """Seconds of audio among `calls` whose duration is known; None when none is (or none was read)."""
    known = [c.duration for c in calls if c.duration is not None]
    return float(sum(known)) if known else None


@dataclass(frozen=True)
class ValidatedManifest:
    loaded: LoadedManifest
    calls: list[CallRow]  # valid rows to send, in manifest order
    # index -> (prior status, prior call id): rows a results file calls uploaded that cannot be checked
    # against the ledger any more (their recording is gone or the row no longer validates): the file's word.
    carried: dict[int, tuple[str, str]]
    invalid: dict[int, str]  # index -> every error of the row, "<column>: <message>" joined with "; "
    problems: list[Problem]  # errors and warnings, sorted by row
    agents: dict[str, str]  # email -> invite name, for the agents of `calls`
    durations_read: bool = False

    @property
    def n_rows(self) -> int:
        return self.loaded.n_rows

    @property
    def n_valid(self) -> int:
        return len(self.calls)

    @property
    def n_invalid(self) -> int:
        return len(self.invalid)

    @property
    def n_carried(self) -> int:
        return len(self.carried)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def n_errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def n_warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")

    @property
    def total_bytes(self) -> int:
        return total_bytes(self.calls)

    @property
    def total_duration(self) -> float | None:
        return total_duration(self.calls)

    @property
    def n_duration_unknown(self) -> int:
        return sum(1 for c in self.calls if c.duration is None)
