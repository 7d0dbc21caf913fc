"""The results wing: one line per manifest row with its outcome, as CSV or XLSX, and the annotated problem
report of `validate --report`.

In: each row's outcome as it finishes (any order). Out: a results file in manifest order that is itself a
valid manifest for a rerun; `writer_for` picks the format from the extension.
"""

from __future__ import annotations

from .choose import ResultsFile, default_suffix, results_format, writer_for
from .report import check_report_path, write_problem_report
from .writer import (
    IMPORT_COLUMNS,
    STATUSES,
    Outcome,
    ResultsWriter,
    check_results_path,
    default_results_path,
    finished_now,
)
from .xlsx import JOURNAL_SUFFIX, XlsxResultsWriter, journal_path, recover_journals

__all__ = [
    "IMPORT_COLUMNS",
    "JOURNAL_SUFFIX",
    "STATUSES",
    "Outcome",
    "ResultsFile",
    "ResultsWriter",
    "XlsxResultsWriter",
    "check_report_path",
    "check_results_path",
    "default_results_path",
    "default_suffix",
    "finished_now",
    "journal_path",
    "recover_journals",
    "results_format",
    "write_problem_report",
    "writer_for",
]
