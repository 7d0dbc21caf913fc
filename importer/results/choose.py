"""Which results writer a run gets: chosen by the results file's extension, `.csv` or `.xlsx`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, Protocol

from ..errors import UsageError
from ..manifest import Problem
from .writer import Outcome, ResultsWriter, check_results_path
from .xlsx import XlsxResultsWriter

Format = Literal["csv", "xlsx"]
_FORMATS: dict[str, Format] = {".csv": "csv", ".xlsx": "xlsx"}


class ResultsFile(Protocol):
    """What the run needs of a results writer, whichever the format."""

    path: Path

    @property
    def counts(self) -> dict[str, int]: ...
    @property
    def written(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def complete(self) -> bool: ...
    @property
    def error(self) -> str | None: ...
    def add(self, index: int, outcome: Outcome) -> None: ...
    def close(self, summary: Sequence[tuple[str, str]] = ()) -> None: ...


def results_format(path: Path, flag: str = "--results") -> Format:
    """`csv` or `xlsx` from the extension; anything else is refused, naming the flag."""
    found = _FORMATS.get(Path(path).suffix.lower())
    if found is None:
        check_results_path(Path(path), flag)  # says why, in the words `run` uses
        raise UsageError(f"{flag} {path}: results are written as .csv or .xlsx files")
    return found


def default_suffix(manifest: Path) -> str:
    """An XLSX manifest gets XLSX results, a CSV one CSV results."""
    return ".xlsx" if Path(manifest).suffix.lower() in (".xlsx", ".xlsm") else ".csv"


def writer_for(path: Path, headers: tuple[str, ...], delimiter: str, rows: Iterator[list[str]],
               line_numbers: list[int], problems: Sequence[Problem] = ()) -> ResultsFile:
    """The writer for `path`'s extension. `problems` (the validation's) mark their cells in a workbook."""
    if results_format(path) == "xlsx":
        return XlsxResultsWriter(path, headers, rows, line_numbers, problems)
    return ResultsWriter(path, headers, delimiter, rows, line_numbers)
