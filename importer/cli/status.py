"""`allobrain-import status [MANIFEST]`: the live runs on the ledger and, for a manifest, its rows per status."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..ledger import RunRecord
from .common import load_validated, out
from .ledger_common import add_ledger_args, config_for, ledger_api, ledger_label, read_ledger

ORDER = ("uploaded", "already_uploaded", "sending", "unknown", "failed", "not_attempted", "not sent yet", "invalid")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="live runs on the ledger; for a manifest, its rows per status")
    p.add_argument("manifest", type=Path, nargs="?")
    add_ledger_args(p)
    p.set_defaults(func=cmd_status)


def run_line(r: RunRecord) -> str:
    started = r.started_at.replace("+00:00", "Z")
    return (f"  run {r.run_id}  host {r.host}  pid {r.pid}  user {r.user}  started {started}  "
            f"rows done {r.rows_done:,}  {r.rate:.1f} rows/s  {r.api}")


def cmd_status(args: argparse.Namespace) -> int:
    from ..from_ledger import row_counts

    cfg, origin = config_for(args)
    out(f"config: {origin}")
    api = ledger_api(args, cfg)
    vm = load_validated(args, cfg) if args.manifest else None
    with read_ledger(cfg, api) as ledger:
        out(ledger_label(cfg))
        runs = ledger.runs()
        out(f"live runs: {len(runs)}" if runs else "live runs: none")
        for r in runs:
            out(run_line(r))
        if vm is None:
            return 0
        statuses, senders = row_counts(vm, ledger)
    out(f"{vm.loaded.path.name}: {vm.loaded.n_rows:,} rows, against {api}")
    for status in ORDER:
        if statuses.get(status):
            out(f"  {status:<17} {statuses[status]:,}")
    for who, n in senders.most_common():
        out(f"    {n:,} being sent by {who}")
    return 0
