"""The results CSV: one line per manifest row, in manifest order, written as rows finish. (The XLSX writer
journals its rows through this one, so both formats share the ordering below.)

Rows can finish out of order (several workers); a small reorder buffer holds the ones that finished early
until every earlier row is known, so the file is always a complete, ordered prefix of the manifest and
memory stays bounded by the number of rows in flight.
"""

from __future__ import annotations

import contextlib
import csv
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from ..errors import UsageError
from ..safety import clean_text, neutralize_cell
from ..statuses import STATUSES

IMPORT_COLUMNS = (
    "import_row",
    "import_status",
    "import_http_status",
    "import_error",
    "import_attempts",
    "import_call_id",
    "import_finished_at",
)

_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    http_status: int | None = None
    error: str = ""
    attempts: int = 0
    call_id: str | None = None
    finished_at: str = ""

    def cells(self, row: int) -> list[str]:
        return [
            str(row),
            self.status,
            "" if self.http_status is None else str(self.http_status),
            neutralize_cell(clean_text(self.error, 500)),
            str(self.attempts),
            neutralize_cell(self.call_id or ""),
            self.finished_at,
        ]


def finished_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_results_path(manifest: Path, is_results: bool, now: datetime | None = None,
                         suffix: str = ".csv") -> Path:
    """results/<stem>-<YYYYmmdd-HHMMSS><suffix> beside the manifest; beside a results file that is rerun (its
    old time stamp replaced, so reruns do not grow the name)."""
    now = now or datetime.now()
    stem = _STAMP.sub("", manifest.stem) if is_results else manifest.stem
    folder = manifest.parent if is_results else manifest.parent / "results"
    stamp = now.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stem}-{stamp}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{stamp}-{n}{suffix}"
        n += 1
    return path


RESULTS_SUFFIXES = (".csv", ".xlsx")  # what this tool can write


def check_results_path(path: Path, flag: str = "--results") -> None:
    """Refuse a results path the tool cannot write, or one that would overwrite something that is not a
    results file of this tool (a recording, a config, someone's spreadsheet)."""
    if path.suffix.lower() not in RESULTS_SUFFIXES:
        raise UsageError(f"{flag} {path}: results are written as {' or '.join(RESULTS_SUFFIXES)} files; choose a "
                         f"name ending in {RESULTS_SUFFIXES[0]}")
    if not path.exists():
        return
    if not path.is_file():
        raise UsageError(f"{flag} {path} is not a file; choose another path")
    if not _is_results_file(path):
        raise UsageError(f"{flag} {path} exists and is not a results file written by this tool: it would be "
                         "overwritten; choose another path (or move the file)")


def _is_results_file(path: Path) -> bool:
    if path.suffix.lower() == ".xlsx":
        return all(column in _workbook_header(path) for column in IMPORT_COLUMNS)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return False
    first = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").lower()
    return all(column in first for column in IMPORT_COLUMNS)


def _workbook_header(path: Path) -> str:
    """The first sheet's first row, lowercased ("" when the file is not a readable workbook)."""
    try:
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True)
        try:
            row = next(wb.worksheets[0].iter_rows(max_row=1, values_only=True), ())
        finally:
            wb.close()
    except Exception:  # not a workbook, damaged: not ours either way
        return ""
    return ",".join(str(c).lower() for c in row if c is not None)


class ResultsWriter:
    """Thread-safe ordered writer. `rows` yields each manifest row's original cells in order."""

    def __init__(self, path: Path, headers: tuple[str, ...], delimiter: str, rows: Iterator[list[str]],
                 line_numbers: list[int]) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: TextIO = open(path, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115
            self._csv = csv.writer(self._fh, delimiter=delimiter, lineterminator="\r\n")
            try:
                self._csv.writerow([*headers, *IMPORT_COLUMNS])
                self._fh.flush()
            except OSError:
                with contextlib.suppress(OSError):
                    self._fh.close()
                raise
        except OSError as exc:  # a folder, no permission, a full disk: before anything is sent
            raise UsageError(
                f"cannot write the results file {path}: {exc.strerror or exc}; free some space or choose another "
                "path with --results"
            ) from None
        self._rows = rows
        self._line_numbers = line_numbers
        self._pending: dict[int, Outcome] = {}
        self._next = 0
        self._lock = threading.Lock()
        self.counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        self.written = 0
        self.error: str | None = None  # why the file could not be written to its end (disk full, ...)

    @property
    def total(self) -> int:
        return len(self._line_numbers)

    def add(self, index: int, outcome: Outcome) -> None:
        with self._lock:
            if index < self._next or index in self._pending:
                raise ValueError(f"row index {index} reported twice")  # a bug, never a user error
            self.counts[outcome.status] += 1
            if self.error is not None:
                return  # the file is given up on; the ledger still records every outcome
            self._pending[index] = outcome
            wrote = False
            try:
                while self._next in self._pending:
                    done = self._pending.pop(self._next)
                    self._csv.writerow([*next(self._rows), *done.cells(self._line_numbers[self._next])])
                    self._next += 1
                    wrote = True
                if wrote:
                    self._fh.flush()
            except OSError as exc:  # the caller stops the run: see `error`
                self.error = exc.strerror or str(exc)
            self.written = self._next

    def close(self, summary: Sequence[tuple[str, str]] = ()) -> None:
        """Flush and close. `summary` (label, value pairs) is for the XLSX writer's Summary sheet; a CSV has
        no room for it (the terminal and --summary-json carry it)."""
        with self._lock:
            try:
                self._fh.flush()
            except OSError as exc:
                self.error = self.error or exc.strerror or str(exc)
            with contextlib.suppress(OSError):
                self._fh.close()

    @property
    def complete(self) -> bool:
        return self._next == self.total
