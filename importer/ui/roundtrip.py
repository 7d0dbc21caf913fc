"""The Excel round trip as the page uses it, behind one small door: the guessed column mapping (`init`), the
config.yaml the columns step saves, the annotated workbook, and XLSX results.

The real pieces are `importer.guess.guess_config` and `importer.results.write_problem_report` (the Excel
round-trip work). Where they are not there yet, this offers the honest minimum and says so:
- the mapping is the one the config already gives (each field whose configured header the file has);
- the saved config.yaml is the current config's keys with the chosen `columns`;
- there is no annotated workbook and no XLSX results (the page hides both links).
When both exist, the fallbacks below are dead code to delete (and `_REAL` with them).
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..config import ColumnsConfig

if TYPE_CHECKING:
    from ..config import Config
    from ..manifest import ValidatedManifest

try:  # the Excel round trip; see the module docstring
    from ..guess import guess_config  # type: ignore[import-not-found]
except ImportError:
    guess_config = None
try:
    from ..results import write_problem_report  # type: ignore[attr-defined]
except ImportError:
    write_problem_report = None

FIELDS = tuple(f.name for f in fields(ColumnsConfig))
HEADER = ("# allobrain-import configuration, saved by the web page (allobrain-import ui) from its columns step.\n"
          "# Every key is described in the config.yaml shipped with the tool; the API key is never written here.\n")


def _key(header: str) -> str:
    return header.strip().casefold()


def guessed_mapping(manifest: Path, cfg: Config, headers: tuple[str, ...]) -> tuple[dict[str, str | None], list[str]]:
    """field -> the header that holds it (None: not in this file), and what the guess wants said aloud."""
    by_key = {_key(h): h for h in headers}
    mapping: dict[str, str | None] = {
        f: by_key.get(_key(str(getattr(cfg.columns, f)))) for f in FIELDS
    }
    notes: list[str] = []
    if guess_config is not None:
        guess = guess_config(manifest)
        for f, header in guess.mapping.items():
            if f in mapping and mapping[f] is None and _key(header) in by_key:
                mapping[f] = by_key[_key(header)]
        notes = list(guess.lines())
    return mapping, notes


def config_text(manifest: Path, columns: dict[str, str], base: dict[str, Any] | None) -> str:
    """The config.yaml to save beside the manifest: `base` (the config in use, as YAML data) with these
    columns; without one, the guessed config (when the guess exists) or just the columns."""
    if base is None and guess_config is not None:
        guess = guess_config(manifest)
        return replace(guess, mapping=dict(columns)).yaml_text()
    data = dict(base or {})
    data["columns"] = dict(columns)
    return HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def guess_available() -> bool:
    return guess_config is not None


def workbook_available() -> bool:
    return write_problem_report is not None


def write_workbook(vm: ValidatedManifest, out: Path) -> Path:
    if write_problem_report is None:
        raise RuntimeError("the annotated workbook needs the Excel round trip")
    return write_problem_report(vm, out)


def xlsx_results_available() -> bool:
    """The run writes XLSX results when its results path ends in .xlsx (same work as the workbook)."""
    return write_problem_report is not None
