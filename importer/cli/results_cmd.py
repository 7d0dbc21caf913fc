"""`allobrain-import results MANIFEST [--out PATH]`: the manifest's results file written from the ledger
(each row's latest outcome, whichever run had it). Sends nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import runinfo
from ..errors import UsageError
from ..results import STATUSES, default_results_path
from .common import load_validated, out
from .ledger_common import add_ledger_args, config_for, ledger_api, ledger_label, read_ledger


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="write a manifest's results CSV from the ledger (sends nothing)")
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, help="results CSV path (default: results/<manifest>-<time>.csv)")
    add_ledger_args(p)
    p.set_defaults(func=cmd_results)


def _check_out(path: Path, manifest: Path) -> None:
    if path.suffix.lower() != ".csv":
        raise UsageError(f"--out must be a .csv file (got {path.name})")
    if path.resolve() == manifest.resolve():
        raise UsageError("--out must not be the manifest itself (it would be overwritten); choose another path")
    if path.exists() and runinfo.read(path) is None:
        raise UsageError(f"--out: {path} exists and is not a results file written by allobrain-import; "
                         "choose another path")


def cmd_results(args: argparse.Namespace) -> int:
    from ..from_ledger import write_results

    cfg, origin = config_for(args)
    out(f"config: {origin}")
    api = ledger_api(args, cfg)
    vm = load_validated(args, cfg)
    path = (args.out or default_results_path(vm.loaded.path, vm.loaded.is_results)).absolute()
    _check_out(path, vm.loaded.path)
    with read_ledger(cfg, api) as ledger:
        out(ledger_label(cfg))
        counts = write_results(vm, ledger, path)
    for status in STATUSES:
        if counts.get(status):
            out(f"  {status:<17} {counts[status]:,}")
    out(f"results: {path}")
    done = counts.get("uploaded", 0) + counts.get("already_uploaded", 0)
    return 0 if done == vm.loaded.n_rows else 1
