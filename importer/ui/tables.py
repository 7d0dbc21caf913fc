"""What the pages show as tables, built from the library's values: the rows with problems (each problem cell
marked), a results file's rows and counts, the files offered under --folder and the past runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import runinfo
from ..results import STATUSES

if TYPE_CHECKING:
    from ..config import Config
    from ..manifest import LoadedManifest, ValidatedManifest

MANIFEST_SUFFIXES = frozenset({".csv", ".tsv", ".xlsx", ".xlsm"})
SKIPPED_DIRS = frozenset({"results", "node_modules", "__pycache__", "site-packages"})
MAX_DEPTH = 4
MAX_CELL = 80
LEFT = ("invalid", "agent_failed", "failed", "unknown", "not_attempted")


def _key(header: str) -> str:
    return header.strip().casefold()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


@dataclass
class ProblemTable:
    headers: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0  # rows with a problem, shown or not
    general: list[dict[str, str]] = field(default_factory=list)  # problems of the file, not of a row


def problem_table(vm: ValidatedManifest, limit: int = 200) -> ProblemTable:
    """Rows with a problem, in order, every cell as in the file; a cell a problem names is marked with the
    worst severity and the problem's words."""
    loaded = vm.loaded
    headers = list(loaded.headers)
    column_of = {_key(h): j for j, h in enumerate(headers)}
    index_of = {int(line): i for i, line in enumerate(loaded.line_numbers.tolist())}
    by_row: dict[int, list[Any]] = {}
    table = ProblemTable(headers)
    for p in vm.problems:
        if p.row in index_of:
            by_row.setdefault(p.row, []).append(p)
        else:
            table.general.append({"severity": p.severity, "text": str(p)})
    table.total = len(by_row)
    for row in sorted(by_row)[:limit]:
        values = loaded.frame.iloc[index_of[row]].tolist()
        cells = [{"value": _cell(v), "severity": None, "message": ""} for v in values]
        messages = []
        for p in by_row[row]:
            messages.append({"severity": p.severity, "text": f"{p.column}: {p.message}"})
            j = column_of.get(_key(p.column))
            if j is None:
                continue
            c = cells[j]
            c["message"] = f"{c['message']}; {p.message}" if c["message"] else p.message
            if c["severity"] != "error":
                c["severity"] = p.severity
        table.rows.append({"row": row, "cells": cells, "messages": messages})
    return table


@dataclass
class ResultsTable:
    counts: list[tuple[str, int]]
    total: int
    matching: int
    rows: list[dict[str, str]]

    @property
    def left(self) -> int:
        """Rows a rerun would look at again (everything not uploaded)."""
        return sum(n for s, n in self.counts if s in LEFT)


def results_table(loaded: LoadedManifest, cfg: Config, status: str | None, limit: int = 500) -> ResultsTable:
    imports = loaded.import_columns
    n = loaded.n_rows
    imports_get = {} if imports is None else {c: imports[c].tolist() for c in imports.columns}
    statuses = imports_get.get("import_status", [""] * n)
    counts = [(s, statuses.count(s)) for s in STATUSES]
    file_col = loaded.find_column(str(cfg.columns.file_path))
    agent_col = loaded.find_column(str(cfg.columns.agent_email))
    files = loaded.frame[file_col].tolist() if file_col else [""] * n
    agents = loaded.frame[agent_col].tolist() if agent_col else [""] * n

    def col(name: str) -> list[str]:
        return imports_get.get(name, [""] * n)

    rows_col, errors, https, call_ids = col("import_row"), col("import_error"), col("import_http_status"), col("import_call_id")
    rows: list[dict[str, str]] = []
    matching = 0
    for i in range(n):
        if status and statuses[i] != status:
            continue
        matching += 1
        if len(rows) < limit:
            rows.append({"row": rows_col[i] or str(int(loaded.line_numbers[i])), "status": statuses[i],
                         "file": _cell(files[i]), "agent": _cell(agents[i]), "error": errors[i],
                         "http": https[i], "call_id": call_ids[i]})
    return ResultsTable(counts, n, matching, rows)


def _walk(folder: Path) -> list[Path]:
    """Files under `folder`, a few levels down, hidden folders and tool folders left out."""
    found: list[Path] = []
    root_depth = len(folder.parts)
    for here, dirs, files in os.walk(folder):
        depth = len(Path(here).parts) - root_depth
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and depth < MAX_DEPTH)
        found += [Path(here) / f for f in sorted(files) if not f.startswith(".")]
        if len(found) > 20_000:
            break
    return found


def manifest_files(folder: Path, limit: int = 100) -> tuple[list[dict[str, str]], bool]:
    """Spreadsheets under `folder` (relative path, size, modified); True when more were left out."""
    files = [p for p in _walk(folder) if p.suffix.lower() in MANIFEST_SUFFIXES]
    shown = []
    for p in files[:limit]:
        st = p.stat()
        shown.append({"rel": p.relative_to(folder).as_posix(), "size": _size(st.st_size),
                      "modified": datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%d %H:%M")})
    return shown, len(files) > limit


def results_files(folders: list[Path]) -> list[Path]:
    """Results files (those with a run-info file beside them) in the `results` folders under each folder."""
    seen: set[Path] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for here, dirs, _files in os.walk(folder):
            depth = len(Path(here).parts) - len(folder.parts)
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS - {"results"}
                       and depth < MAX_DEPTH]
            if Path(here).name == "results" or Path(here) == folder:
                for info in Path(here).glob("*" + runinfo.SUFFIX):
                    results = info.with_name(info.name.removesuffix(runinfo.SUFFIX))
                    if results.is_file():
                        seen.add(results.resolve())
    return sorted(seen, key=lambda p: p.stat().st_mtime, reverse=True)


def past_run(path: Path) -> dict[str, Any]:
    info = runinfo.read(path)
    return {
        "name": path.name,
        "when": datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M"),
        "manifest": Path(info.manifest).name if info else "?",
        "rows": info.rows if info else "?",
        "sandbox": bool(info and info.sandbox),
        "api": info.api if info else "?",
        "complete": bool(info and info.complete),
    }


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
