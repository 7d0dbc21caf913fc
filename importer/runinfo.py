"""A small JSON file beside each results CSV (`<results>.run.json`) saying how it was made.

The results CSV's columns are fixed by the contract, yet a rerun needs three facts the CSV cannot hold:
- whether the run finished writing it (a hard stop leaves a prefix of the rows; rerunning that prefix would
  report success while the rest of the manifest was never sent);
- which API its `uploaded` rows went to (rows uploaded to the sandbox or a staging URL are not uploaded to
  the real API);
- the folder its relative file paths are relative to (the original manifest's folder, wherever the results
  file is kept).
A results CSV without this file (copied alone, or emailed) is still accepted, as the contract says.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ManifestError, UsageError
from .safety import canonical_api

SUFFIX = ".run.json"


@dataclass(frozen=True)
class RunInfo:
    api: str  # canonical base URL the rows were sent to
    manifest: str  # absolute path of the manifest that was run
    base_dir: str  # the folder relative file paths resolve against
    rows: int  # rows the results file must hold when complete
    complete: bool  # the run wrote every row
    sandbox: bool = False
    config: str | None = None  # the config file the run used (absolute), None for the built-in defaults
    settings: dict[str, Any] | None = None  # Config.recorded(): how its rows were read (time zone, columns)
    ledger: str | None = None  # the identity of the ledger the run used (its `uploaded` rows are checked there)


def info_path(results: Path) -> Path:
    return results.with_name(results.name + SUFFIX)


def write(results: Path, info: RunInfo) -> None:
    """Atomic replace, so the file is never half-written."""
    path = info_path(results)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def read(results: Path) -> RunInfo | None:
    try:
        data = json.loads(info_path(results).read_text(encoding="utf-8"))
        return RunInfo(**{k: data[k] for k in RunInfo.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def check_complete(results: Path, info: RunInfo | None) -> None:
    """A results file whose run stopped before writing every row must not be rerun as if it were whole."""
    if info is None or info.complete:
        return
    raise ManifestError(
        f"{results.name} is incomplete: the run that wrote it stopped before the end (it should hold {info.rows} "
        f"rows). Rerun the original manifest instead, which sends only what is left: {rerun_command(info)}"
    )


def rerun_command(info: RunInfo) -> str:
    """The command that runs the original manifest again with what decided its rows' keys and its API."""
    parts = ["allobrain-import", "run", shlex.quote(info.manifest)]
    if info.config:
        parts += ["--config", shlex.quote(info.config)]
    if info.sandbox:
        parts.append("--sandbox")
    else:
        parts += ["--api-url", shlex.quote(info.api)]
    campaign = (info.settings or {}).get("campaign_id")
    if campaign:
        parts += ["--campaign-id", shlex.quote(str(campaign))]
    return " ".join(parts)


def trusted_for(info: RunInfo | None, api: str | None) -> bool:
    """Whether a results file's `uploaded` rows count as uploaded for this run's API."""
    if info is None:
        return True
    if info.sandbox or api is None:
        return False
    return canonical_api(info.api) == canonical_api(api)
