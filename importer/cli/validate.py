"""`allobrain-import validate MANIFEST`: every problem of every row, no network."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..safety import check_base_url
from .common import add_config_flag, config_from, load_validated, out, problem_line, reading_lines


def register(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("validate", help="check a manifest without sending anything")
    v.add_argument("manifest", type=Path, help="the CSV or XLSX manifest (or a results file)")
    add_config_flag(v)
    v.add_argument("--campaign-id", metavar="ID",
                   help="campaign for rows without a campaign_id cell (campaign_id; default none)")
    v.add_argument("--report", type=Path, metavar="PATH.xlsx",
                   help="also write the manifest as a workbook with each problem cell marked and explained")
    v.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from ..report import validation_summary
    from ..results import check_report_path, write_problem_report

    cfg, origin = config_from(args)
    check_base_url(cfg.api.base_url)  # a config `run` would refuse is not called valid
    if args.report:
        check_report_path(args.report, args.manifest)
    vm = load_validated(args, cfg)
    for line in reading_lines(cfg, origin, vm):
        out(line)
    for problem in vm.problems:
        out(problem_line(problem))
    out(validation_summary(vm))
    if args.report:
        report = write_problem_report(vm, args.report, cfg.manifest.sheet)
        out(f"report: {report.absolute()} ({vm.n_errors} errors in red, {vm.n_warnings} warnings in yellow; "
            "the Problems sheet links to each cell)")
    return 1 if vm.invalid else 0
