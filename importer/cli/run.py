"""`allobrain-import run MANIFEST`: validate, invite the agents, upload the calls, write the results."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DEFAULT_BASE_URL
from ..errors import UsageError
from ..results import check_results_path, default_results_path, default_suffix, recover_journals
from ..safety import check_base_url
from .common import (
    add_config_flag,
    api_key_from_env,
    check_writable,
    config_from,
    err,
    load_validated,
    out,
    problem_line,
    reading_lines,
    state_dir_of,
)
from .ledger_common import ledger_label
from .logs import setup_logging
from .signals import install_sigint

if TYPE_CHECKING:
    from ..config import Config
    from ..manifest import ValidatedManifest
    from ..runner import RunSummary

MAX_PROBLEMS_SHOWN_BY_RUN = 30


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="validate, invite agents, upload calls, write a results CSV")
    r.add_argument("manifest", type=Path, help="the CSV or XLSX manifest, or a results file to rerun")
    add_config_flag(r)
    r.add_argument("--results", type=Path, metavar="PATH",
                   help="results file, .csv or .xlsx (default: results/<manifest>-<time>.csv beside the manifest; .xlsx for an XLSX manifest)")
    r.add_argument("--api-url", metavar="URL", help=f"API base URL (api.base_url; default {DEFAULT_BASE_URL})")
    r.add_argument("--campaign-id", metavar="ID",
                   help="campaign for rows without a campaign_id cell (campaign_id; default none)")
    r.add_argument("--workers", type=_workers, metavar="N|auto",
                   help="uploads at once: auto finds it, a number is exactly that many (upload.workers; default auto)")
    r.add_argument("--max-per-second", type=float, metavar="R",
                   help="requests per second at most, 0 = no limit (upload.max_per_second; default 0)")
    r.add_argument("--dry-run", action="store_true", help="validate and print the plan; send nothing")
    r.add_argument("--retry-unknown", action="store_true", default=None,
                   help="also resend rows whose earlier outcome was unknown: the server may have them "
                        "(upload.retry_unknown; default false)")
    r.add_argument("--allow-same-recording", action="store_true",
                   help="send a recording even when the same recording is already uploaded to the campaign "
                        "under another timestamp, name or agent")
    r.add_argument("--sandbox", action="store_true",
                   help="import into a built-in sandbox API on loopback (no key needed; nothing leaves the machine)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("-v", "--verbose", action="store_true", help="log each request and its outcome to stderr")
    r.add_argument("--log-file", type=Path, metavar="PATH", help="write the request log to this file")
    r.add_argument("--summary-json", type=Path, metavar="PATH",
                   help="write the final summary as JSON (for scripts and schedulers)")
    r.add_argument("--wait", action="store_true", default=None,
                   help="when the daily quota or the sending hours stop sending, wait for the next slot and go on "
                        "(upload.wait)")
    r.set_defaults(func=cmd_run)


def _workers(text: str) -> int | str:
    from ..concurrency import parse_workers
    from ..errors import ConfigError

    try:
        return parse_workers(text, "the value")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from ..report import validation_summary

    if args.sandbox and args.api_url:
        raise UsageError("--sandbox and --api-url cannot be used together")
    cfg, origin = config_from(args)
    api_url = None if args.sandbox else check_base_url(cfg.api.base_url, "--api-url" if args.api_url else "api.base_url")
    if args.results and args.results.resolve() == args.manifest.resolve():
        raise UsageError("--results must not be the manifest itself (it would be overwritten); choose another path")
    if args.results:
        check_results_path(args.results)
    vm = load_validated(args, cfg, api=api_url, check_trust=True)
    for line in reading_lines(cfg, origin, vm):
        out(line)
    _print_problems(vm)
    out(validation_summary(vm))
    if args.dry_run:
        return _dry_run(vm, cfg, api_url, args)
    if args.sandbox:
        return _run_in_sandbox(vm, cfg, args)
    assert api_url is not None
    api_key = api_key_from_env(cfg)
    state_dir = state_dir_of(cfg)
    return _run(vm, cfg, args, api_url=api_url, api_key=api_key, state_dir=state_dir)


def _print_problems(vm: ValidatedManifest) -> None:
    shown = vm.problems[:MAX_PROBLEMS_SHOWN_BY_RUN]
    for problem in shown:
        err(problem_line(problem))
    if len(vm.problems) > len(shown):
        err(f"... and {len(vm.problems) - len(shown)} more (allobrain-import validate lists them all)")


def _dry_run(vm: ValidatedManifest, cfg: Config, api_url: str | None, args: argparse.Namespace) -> int:
    from ..prepare import dry_run_plan
    from ..report import plan_lines

    dry = dry_run_plan(vm, cfg, state_dir_of(cfg), api_url, allow_same_recording=args.allow_same_recording)
    for line in plan_lines(dry.plan, dry.to_invite, api_url) + dry.pace:
        out(line)
    return 1 if vm.invalid else 0


def _run_in_sandbox(vm: ValidatedManifest, cfg: Config, args: argparse.Namespace) -> int:
    from ..sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="allobrain-sandbox-") as tmp, \
            Sandbox(data_dir=Path(tmp) / "data") as sb:
        out(f"sandbox API at {sb.url} (temporary; its ledger lives only for this run)")
        cfg = replace(cfg, ledger=replace(cfg.ledger, url=None))  # never the team's shared ledger
        # The sandbox is on this machine's loopback, where a company proxy (HTTP_PROXY) can never reach it.
        no_proxy = os.environ.get("no_proxy")
        os.environ["no_proxy"] = ",".join(filter(None, (no_proxy or os.environ.get("NO_PROXY"), sb.host)))
        try:
            code = _run(vm, cfg, args, api_url=sb.url, api_key=sb.api_key, state_dir=Path(tmp) / "state")
        finally:
            if no_proxy is None:
                os.environ.pop("no_proxy", None)
            else:
                os.environ["no_proxy"] = no_proxy
        out(f"sandbox received {len(sb.calls())} calls from {len(sb.agents())} agents")
        return code


def _run(vm: ValidatedManifest, cfg: Config, args: argparse.Namespace, *, api_url: str, api_key: str,
         state_dir: Path) -> int:
    from ..progress import TqdmProgress
    from ..report import summary_sheet
    from ..runner import StopSignal, run_import

    setup_logging(args, api_key)
    if args.summary_json:
        check_writable(args.summary_json, "--summary-json")
    results_path = (args.results or default_results_path(vm.loaded.path, vm.loaded.is_results,
                                                         suffix=default_suffix(vm.loaded.path))).absolute()
    for recovered, rows in recover_journals(results_path.parent):
        err(f"note: recovered {recovered} ({rows} rows) from the journal of a run that stopped abruptly")
    if cfg.ledger.url:  # several runs may share it: say which
        out(ledger_label(cfg))
    stop = StopSignal()
    restore = install_sigint(stop, rerun_of(vm.loaded.path.absolute(), cfg, args))
    progress = TqdmProgress(disable=args.quiet)
    try:
        with progress.logging_redirect():
            summary = run_import(vm, cfg, api_url=api_url, api_key=api_key, state_dir=state_dir,
                                 results_path=results_path, retry_unknown=cfg.upload.retry_unknown, stop=stop,
                                 on_writer=lambda w: out(f"results: {w.path}"), sandbox=args.sandbox,
                                 progress=progress, allow_same_recording=args.allow_same_recording,
                                 summary_sheet=lambda s: summary_sheet(s, rerun_of(s.results_path, cfg, args),
                                                                       api_url, cfg.source))
    finally:
        progress.close()
        restore()
    _print_summary(summary, cfg, args)
    if args.summary_json:
        _write_summary_json(summary, args.summary_json)
    return summary.exit_code


def rerun_of(path: Path, cfg: Config, args: argparse.Namespace) -> str:
    """The command that reruns `path` against the same API with the same settings: every flag that decided
    them is repeated (the config actually used, found beside the manifest or not, the API, the campaign)."""
    parts = ["allobrain-import", "run", shlex.quote(str(path))]
    if cfg.source:
        parts += ["--config", shlex.quote(str(Path(cfg.source).absolute()))]
    if args.sandbox:
        parts.append("--sandbox")
    elif args.api_url:
        parts += ["--api-url", shlex.quote(args.api_url)]
    if args.campaign_id:
        parts += ["--campaign-id", shlex.quote(args.campaign_id)]
    return " ".join(parts)


def _print_summary(s: RunSummary, cfg: Config, args: argparse.Namespace) -> None:
    from ..report import summary_lines

    for line in summary_lines(s, rerun_of(s.results_path, cfg, args)):
        out(line)


def _write_summary_json(s: RunSummary, path: Path) -> None:
    from ..report import summary_dict

    try:
        path.write_text(json.dumps(summary_dict(s), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--summary-json: cannot write {path}: {exc.strerror or exc}") from None
