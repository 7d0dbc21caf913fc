"""The Excel round trip as the page uses it, behind one small door: the guessed column mapping (`init`'s
guess), the config.yaml the columns step saves, and the annotated workbook of `validate --report`.
(XLSX results need nothing here: the run writes them when its results path ends in .xlsx.)
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..config import ColumnsConfig
from ..guess import guess_config
from ..results import write_problem_report

if TYPE_CHECKING:
    from ..config import Config
    from ..manifest import ValidatedManifest

FIELDS = tuple(f.name for f in fields(ColumnsConfig))
HEADER = ("# allobrain-import configuration, saved by the web page (allobrain-import ui) from its columns step.\n"
          "# Every key is described in the config.yaml shipped with the tool; the API key is never written here.\n")


def _key(header: str) -> str:
    return header.strip().casefold()


def guessed_mapping(manifest: Path, cfg: Config, headers: tuple[str, ...]) -> tuple[dict[str, str | None], list[str]]:
    """field -> the header that holds it (None: not in this file), and what the guess wants said aloud.
    A header the config in use names wins (the person chose it); the guess fills the fields it leaves."""
    by_key = {_key(h): h for h in headers}
    mapping: dict[str, str | None] = {
        f: by_key.get(_key(str(getattr(cfg.columns, f)))) for f in FIELDS
    }
    guess = guess_config(manifest)
    for f, header in guess.mapping.items():
        if f in mapping and mapping[f] is None and _key(header) in by_key:
            mapping[f] = by_key[_key(header)]
    return mapping, list(guess.lines())


def config_text(manifest: Path, columns: dict[str, str], base: dict[str, Any] | None) -> str:
    """The config.yaml to save beside the manifest: `base` (the config in use, as YAML data) with these
    columns; without one, the guessed config (as `init` writes it) with these columns."""
    if base is None:
        return replace(guess_config(manifest), mapping=dict(columns)).yaml_text()
    data = dict(base)
    data["columns"] = dict(columns)
    return HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_workbook(vm: ValidatedManifest, out: Path, sheet_name: str | None = None) -> Path:
    """The annotated copy of the manifest (`validate --report`'s): problem cells filled, with comments."""
    return write_problem_report(vm, out, sheet_name)
