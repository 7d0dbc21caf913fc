"""XLSX results: the same rows and columns as the results CSV, in a workbook people can read at a glance.

While the run goes, rows are journaled to `<results>.journal.csv` beside the workbook (through the CSV
writer, so in manifest order, flushed as they finish): a hard stop (kill -9, a power cut) loses nothing.
The workbook itself is written when the run ends, a first Ctrl-C or SIGTERM included, then the journal is
removed. A journal left by a hard stop is turned into its workbook by the next run (`recover_journals`); that
workbook says on its Summary sheet that it is incomplete, and its run-info says so too, so it is refused as a
manifest exactly like a results CSV cut short.

While a run writes its journal it holds a lock on it (POSIX), so a run writing to the same folder never
takes another live run's journal for an abandoned one.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from openpyxl import Workbook

from ..errors import UsageError
from ..manifest import Problem, header_key
from . import sheet
from .writer import IMPORT_COLUMNS, STATUSES, Outcome, ResultsWriter

try:  # POSIX; elsewhere journals are not locked (and not recovered automatically)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

JOURNAL_SUFFIX = ".journal.csv"
SHEET = "Results"
ERROR_WIDTH = 60
WIDTH_SAMPLE = 200  # rows looked at to size the columns
# Problems per row: row number -> column position -> [(severity, message)].
ProblemIndex = dict[int, dict[int, list[tuple[str, str]]]]


def journal_path(results: Path) -> Path:
    return results.with_name(results.name + JOURNAL_SUFFIX)


def index_problems(problems: Sequence[Problem], headers: Sequence[str]) -> ProblemIndex:
    """Where each problem goes: the cell of its row under the column it names. A problem naming no column
    of the sheet (a config entry, a column letter) is left to import_error and the terminal."""
    position = {header_key(h): j for j, h in enumerate(headers)}
    index: ProblemIndex = {}
    for p in problems:
        j = position.get(header_key(p.column))
        if j is not None:
            index.setdefault(p.row, {}).setdefault(j, []).append((p.severity, p.message))
    return index


class XlsxResultsWriter:
    """The results writer for `.xlsx`: the same interface as the CSV `ResultsWriter` (add, close, counts,
    written, error, complete, total), which it uses for its journal."""

    def __init__(self, path: Path, headers: tuple[str, ...], rows: Iterator[list[str]], line_numbers: list[int],
                 problems: Sequence[Problem] = ()) -> None:
        self.path = path
        if path.is_dir():  # found only when the workbook is saved, after every upload: refuse it now
            raise UsageError(f"cannot write the results file {path}: it is a folder; choose another path with "
                             "--results")
        self.journal = journal_path(path)
        self._journal = ResultsWriter(self.journal, headers, ",", rows, line_numbers)
        self._lock = _lock(self.journal)
        if self._lock is None and fcntl is not None:
            self._journal.close()
            raise UsageError(f"another run is writing {path} right now; choose another path with --results")
        self._problems = index_problems(problems, headers)
        self._started = time.monotonic()
        self._error: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return self._journal.counts

    @property
    def written(self) -> int:
        return self._journal.written

    @property
    def total(self) -> int:
        return self._journal.total

    @property
    def complete(self) -> bool:
        return self._journal.complete

    @property
    def error(self) -> str | None:
        return self._error or self._journal.error

    def add(self, index: int, outcome: Outcome) -> None:
        self._journal.add(index, outcome)

    def close(self, summary: Sequence[tuple[str, str]] = ()) -> None:
        """Close the journal, write the workbook from it, then remove the journal (kept if anything failed,
        so the next run can still recover it)."""
        self._journal.close()
        try:
            if self._journal.error is None:
                pairs = [*count_pairs(self.counts, self.total, self.written),
                         ("elapsed", f"{time.monotonic() - self._started:.1f} s"), *summary]
                try:
                    build_workbook(self.journal, self.path, self._problems, pairs)
                except OSError as exc:
                    self._error = exc.strerror or str(exc)
                else:
                    self.journal.unlink(missing_ok=True)
        finally:
            if self._lock is not None:
                self._lock.close()


def count_pairs(counts: dict[str, int], total: int, written: int) -> list[tuple[str, str]]:
    pairs = [("rows", f"{written} of {total}" if written != total else str(total))]
    return pairs + [(status, str(counts.get(status, 0))) for status in STATUSES if counts.get(status)]


def build_workbook(journal: Path, out: Path, problems: ProblemIndex, summary: Sequence[tuple[str, str]]) -> int:
    """The workbook from a journal (a results CSV we wrote): rows on the first sheet, then `Summary`.
    Returns the number of rows. A journal line cut off by a hard stop (no line end) is left out."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(SHEET)
    with open(journal, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        headers = next(reader, None)
        if headers is None:
            raise OSError(f"the journal {journal.name} is empty")
        n_original = len(headers) - len(IMPORT_COLUMNS)
        row_at, status_at, error_at = n_original, n_original + 1, n_original + 3
        sample = _first_records(journal, WIDTH_SAMPLE)
        sheet.set_widths(ws, [ERROR_WIDTH if j == error_at else
                              sheet.width_of(h, (r[j] for r in sample if j < len(r))) + (2 if j == status_at else 0)
                              for j, h in enumerate(headers)])
        sheet.freeze_below(ws, 1)
        ws.append(sheet.header_row(ws, headers))
        n = 0
        for record in _whole_records(reader, journal):
            if len(record) > error_at:
                sheet.grow(ws, n + 2, [(record[error_at], ERROR_WIDTH)])
            cells = []
            row_problems = problems.get(int(record[row_at]), {}) if record[row_at].isdigit() else {}
            for j, value in enumerate(record):
                if j == status_at:
                    cells.append(sheet.text(ws, value, sheet.STATUS_FILLS.get(value)))
                elif j == error_at:
                    cells.append(sheet.text(ws, value, wrap=True))
                elif j >= n_original:
                    cells.append(sheet.number_or_text(ws, value))
                else:
                    cells.append(sheet.mark(sheet.text(ws, value), row_problems.get(j)))
            ws.append(cells)
            n += 1
    sheet.add_filter(ws, 1, n + 1, len(headers))
    sheet.add_pairs(wb, "Summary", summary)
    sheet.save_atomically(wb, out)
    return n


def _first_records(journal: Path, n: int) -> list[list[str]]:
    """The first `n` rows (header excluded), to size the columns before the first row is written."""
    with open(journal, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        return [record for _, record in zip(range(n), reader, strict=False)]


def _whole_records(reader: Iterator[list[str]], journal: Path) -> Iterator[list[str]]:
    """Every record of the journal but a last one cut off while being written (it has no line end)."""
    with open(journal, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 1))
        ends_whole = fh.read(1) == b"\n"
    previous: list[str] | None = None
    for record in reader:
        if previous is not None:
            yield previous
        previous = record
    if previous is not None and ends_whole:
        yield previous


def recover_journals(folder: Path) -> list[tuple[Path, int]]:
    """Turn the journals that hard-stopped runs left in `folder` into their workbooks; returns each
    workbook and its row count. A journal another live run holds is left alone."""
    recovered: list[tuple[Path, int]] = []
    if not folder.is_dir():
        return recovered
    for journal in sorted(folder.glob(f"*.xlsx{JOURNAL_SUFFIX}")):
        if fcntl is None:
            break
        lock = _lock(journal)
        if lock is None:
            continue  # a live run is writing it
        try:
            out = journal.with_name(journal.name[: -len(JOURNAL_SUFFIX)])
            note = ("this run stopped abruptly (a hard stop): the rows below are those it had finished. The "
                    "ledger knows every call it sent: rerun the original manifest, which sends only what is left.")
            try:
                n = build_workbook(journal, out, {}, [("incomplete", note)])
            except (OSError, ValueError, csv.Error) as exc:
                raise UsageError(f"cannot recover {journal}: {exc}; delete it once you have what you need") from None
            journal.unlink()
            recovered.append((out, n))
        finally:
            if lock is not None:
                lock.close()
    return recovered


def _lock(journal: Path):  # noqa: ANN202 - an open file, or None when another holds it (or no fcntl)
    """An exclusive lock on the journal, held by the run writing it."""
    if fcntl is None:
        return None
    fh = open(journal, "a+b")  # noqa: SIM115 - held for the run's life
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh
