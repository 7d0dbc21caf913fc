"""The command line: the only module that prints or exits.

    allobrain-import validate MANIFEST
    allobrain-import run MANIFEST [--dry-run] [--sandbox] ...
    allobrain-import sandbox [--port 8000] ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from . import __version__, runinfo
from .config import Config, load_config
from .errors import ImportToolError, UsageError
from .ledger import Ledger, default_state_dir
from .results import default_results_path
from .safety import canonical_api, check_base_url, redact

# pandas, requests, werkzeug and tqdm load only in the commands that need them: --help, --version and a
# usage error answer at once.
if TYPE_CHECKING:
    from .manifest import Problem, ValidatedManifest
    from .runner import RunSummary, StopSignal

MAX_PROBLEMS_SHOWN_BY_RUN = 30


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="allobrain-import",
        description="Bulk-import call recordings into AlloBrain QM from a CSV or XLSX manifest.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--traceback", action="store_true", help="show a Python traceback on unexpected errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check a manifest without sending anything")
    v.add_argument("manifest", type=Path)
    v.add_argument("--config", type=Path, help="config file (default: ./config.yaml when it exists)")
    v.add_argument("--campaign-id", help="campaign for rows without a campaign_id cell")

    r = sub.add_parser("run", help="validate, invite agents, upload calls, write a results CSV")
    r.add_argument("manifest", type=Path)
    r.add_argument("--config", type=Path, help="config file (default: ./config.yaml when it exists)")
    r.add_argument("--results", type=Path, help="results CSV path (default: results/<manifest>-<time>.csv)")
    r.add_argument("--api-url", help="API base URL (default: api.base_url from config)")
    r.add_argument("--campaign-id", help="campaign for rows without a campaign_id cell")
    r.add_argument("--workers", type=int, help="concurrent uploads (upload.workers)")
    r.add_argument("--max-per-second", type=float, help="request rate limit, 0 = none (upload.max_per_second)")
    r.add_argument("--dry-run", action="store_true", help="validate and print the plan; send nothing")
    r.add_argument("--retry-unknown", action="store_true", default=None,
                   help="also resend rows whose earlier outcome was unknown (the server may have them)")
    r.add_argument("--sandbox", action="store_true", help="import into a built-in sandbox API on loopback")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("-v", "--verbose", action="store_true", help="log each request and its outcome to stderr")
    r.add_argument("--log-file", type=Path, help="write the request log to this file")
    r.add_argument("--summary-json", type=Path, help="write the final summary as JSON")

    s = sub.add_parser("sandbox", help="serve a stand-in AlloBrain QM API on loopback")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", help="the key clients must send (default: a fixed sandbox key, printed at start)")
    s.add_argument("--campaign", action="append", default=[], help="accept only these campaign ids (repeatable)")
    s.add_argument("--latency-ms", type=int, default=0, help="added to every request")
    s.add_argument("--rate-limit", type=float, default=0, help="requests/s before answering 429 with Retry-After")
    s.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500 or 503")
    s.add_argument("--drop-rate", type=float, default=0.0, help="share of uploads stored, then the connection dropped")
    s.add_argument("--max-upload-mb", type=float, default=2048, help="larger uploads get 413")
    s.add_argument("--data-dir", type=Path, help="where received files are kept (default: a temporary folder)")
    s.add_argument("--seed", type=int, help="seed for the random faults")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "run":
            return cmd_run(args)
        return cmd_sandbox(args)
    except ImportToolError as exc:
        _err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:  # an unexpected bug: one clean line, the traceback only on request
        if args.traceback:
            traceback.print_exc()
        else:
            _err(f"unexpected error: {type(exc).__name__}: {exc} (rerun with --traceback for details)")
        return 70


def _out(line: str = "") -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- validate -----------------------------------------------------------------------------------------


def _load(args: argparse.Namespace, cfg: Config, *, api: str | None = None,
          check_trust: bool = False) -> ValidatedManifest:
    """Load and validate. A results CSV fed back in is checked against its run-info: refused when its run
    never finished writing it; its `uploaded` rows are not trusted when they went to another API."""
    from .manifest import load_manifest, validate_manifest

    loaded = load_manifest(args.manifest, cfg)
    if loaded.is_results:
        info = runinfo.read(loaded.path)
        runinfo.check_complete(loaded.path, info)
        if info is not None:
            loaded = replace(loaded, base_dir=info.base_dir)
        if check_trust and not runinfo.trusted_for(info, api):
            assert info is not None
            where = "the built-in sandbox" if info.sandbox else info.api
            _err(f"note: {loaded.path.name} was written by a run against {where}: its uploaded rows are not "
                 "counted as uploaded here (the ledger decides what this API already has)")
            loaded = replace(loaded, import_columns=None)
    # Durations (the plan's audio hours, the short-audio warning) cost a second read of each file's header:
    # worth it when people read the report (validate, --dry-run), not on the way to sending.
    with_durations = args.command == "validate" or getattr(args, "dry_run", False)
    return validate_manifest(loaded, cfg, with_durations=with_durations)


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    overrides = {"campaign_id": getattr(args, "campaign_id", None)}
    if args.command == "run":
        overrides |= {
            "upload.workers": args.workers,
            "upload.max_per_second": args.max_per_second,
            "upload.retry_unknown": args.retry_unknown,
            "api.base_url": args.api_url,
        }
    return cfg.with_overrides(**overrides)


def cmd_validate(args: argparse.Namespace) -> int:
    from .report import validation_summary

    cfg = _config(args)
    check_base_url(cfg.api.base_url)  # a config `run` would refuse is not called valid
    vm = _load(args, cfg)
    for problem in vm.problems:
        _out(_problem_line(problem))
    _out(validation_summary(vm))
    return 1 if vm.invalid else 0


# --- run ----------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .report import validation_summary

    if args.sandbox and args.api_url:
        raise UsageError("--sandbox and --api-url cannot be used together")
    cfg = _config(args)
    api_url = None if args.sandbox else check_base_url(cfg.api.base_url, "--api-url" if args.api_url else "api.base_url")
    if args.results and args.results.resolve() == args.manifest.resolve():
        raise UsageError("--results must not be the manifest itself (it would be overwritten); choose another path")
    vm = _load(args, cfg, api=api_url, check_trust=True)
    _print_problems(vm)
    _out(validation_summary(vm))
    if args.dry_run:
        return _dry_run(vm, cfg, api_url, args)
    if args.sandbox:
        return _run_in_sandbox(vm, cfg, args)
    assert api_url is not None
    api_key = _api_key(cfg)
    state_dir = _state_dir(cfg)
    return _run(vm, cfg, args, api_url=api_url, api_key=api_key, state_dir=state_dir)


def _state_dir(cfg: Config) -> Path:
    return Path(cfg.state_dir).expanduser() if cfg.state_dir else default_state_dir()


def _problem_line(problem: Problem) -> str:
    return ("warning: " if problem.severity == "warning" else "") + str(problem)


def _api_key(cfg: Config) -> str:
    name = cfg.api.api_key_env
    key = os.environ.get(name, "").strip()
    if key and not (key.isascii() and key.isprintable()):
        raise UsageError(f"{name} contains characters that cannot be sent in an HTTP header; check the key")
    if not key:
        raise UsageError(
            f"no API key: set the environment variable {name} (for example: export {name}=...); "
            "or try the built-in sandbox with --sandbox"
        )
    return key


def _print_problems(vm: ValidatedManifest) -> None:
    shown = vm.problems[:MAX_PROBLEMS_SHOWN_BY_RUN]
    for problem in shown:
        _err(_problem_line(problem))
    if len(vm.problems) > len(shown):
        _err(f"... and {len(vm.problems) - len(shown)} more (allobrain-import validate lists them all)")


def _dry_run(vm: ValidatedManifest, cfg: Config, api_url: str | None, args: argparse.Namespace) -> int:
    from .plan import make_plan
    from .report import plan_lines

    state_dir = _state_dir(cfg)
    ledger = None
    if api_url and (state_dir / Ledger.FILE_NAME).exists():
        ledger = Ledger(state_dir, canonical_api(api_url), lock=False, read_only=True)
    try:
        plan = make_plan(vm, ledger, retry_unknown=cfg.upload.retry_unknown)
        invited = ledger.invited() if ledger else set()
    finally:
        if ledger:
            ledger.close()
    to_invite = [e for e in plan.agents if e not in invited]
    for line in plan_lines(plan, to_invite, api_url):
        _out(line)
    return 1 if vm.invalid else 0


def _run_in_sandbox(vm: ValidatedManifest, cfg: Config, args: argparse.Namespace) -> int:
    from .sandbox import Sandbox

    with tempfile.TemporaryDirectory(prefix="allobrain-sandbox-") as tmp, \
            Sandbox(data_dir=Path(tmp) / "data") as sb:
        _out(f"sandbox API at {sb.url} (temporary; its ledger lives only for this run)")
        code = _run(vm, cfg, args, api_url=sb.url, api_key=sb.api_key, state_dir=Path(tmp) / "state")
        _out(f"sandbox received {len(sb.calls())} calls from {len(sb.agents())} agents")
        return code


def _run(vm: ValidatedManifest, cfg: Config, args: argparse.Namespace, *, api_url: str, api_key: str,
         state_dir: Path) -> int:
    from .progress import TqdmProgress
    from .runner import StopSignal, run_import

    _setup_logging(args, api_key)
    if args.summary_json:
        _check_writable(args.summary_json, "--summary-json")
    results_path = (args.results or default_results_path(vm.loaded.path, vm.loaded.is_results)).absolute()
    stop = StopSignal()
    restore = _install_sigint(stop)
    progress = TqdmProgress(disable=args.quiet)
    try:
        summary = run_import(vm, cfg, api_url=api_url, api_key=api_key, state_dir=state_dir,
                             results_path=results_path, retry_unknown=cfg.upload.retry_unknown, stop=stop,
                             on_writer=lambda w: _out(f"results: {w.path}"), sandbox=args.sandbox,
                             progress=progress)
    finally:
        progress.close()
        restore()
    _print_summary(summary, args)
    if args.summary_json:
        _write_summary_json(summary, args.summary_json)
    return summary.exit_code


def _install_sigint(stop: StopSignal):  # noqa: ANN202 - returns the restorer
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            # Second Ctrl-C: leave now. Results rows already written are flushed; rows in flight stay
            # `sending` in the ledger and become `unknown` on the next run.
            os._exit(130)
        stop.request()
        # os.write, not print: the main thread may be inside a write to stderr (a reentrant print raises).
        os.write(2, b"\nstopping: in-flight uploads finish, nothing new starts (Ctrl-C again to quit at once)\n")

    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


class _RedactKey(logging.Filter):
    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.key)
        record.args = ()
        if record.exc_info:  # tracebacks too: render it here, redacted, so no handler renders it raw
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.key)
            record.exc_info = None
        return True


def _setup_logging(args: argparse.Namespace, api_key: str) -> None:
    logger = logging.getLogger("importer")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s")
    handlers: list[logging.Handler] = []
    if args.verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    if args.log_file:
        try:
            args.log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot write the log file {args.log_file}: {exc.strerror or exc}") from None
    if not handlers:
        handlers.append(logging.NullHandler())
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(_RedactKey(api_key))
        logger.addHandler(h)


def _print_summary(s: RunSummary, args: argparse.Namespace) -> None:
    from .report import summary_lines

    # The rerun must reach the same API with the same settings: repeat every flag that changed them.
    extra = "".join(
        f" {flag} {shlex.quote(str(value))}"
        for flag, value in (("--config", args.config), ("--api-url", args.api_url), ("--campaign-id", args.campaign_id))
        if value
    )
    extra += " --sandbox" if args.sandbox else ""
    for line in summary_lines(s, f"allobrain-import run {shlex.quote(str(s.results_path))}{extra}"):
        _out(line)


def _check_writable(path: Path, flag: str) -> None:
    """Refuse a path we could not write to, before anything is sent rather than after."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write {path}: {exc.strerror or exc}") from None


def _write_summary_json(s: RunSummary, path: Path) -> None:
    from .report import summary_dict

    try:
        path.write_text(json.dumps(summary_dict(s), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--summary-json: cannot write {path}: {exc.strerror or exc}") from None


# --- sandbox ------------------------------------------------------------------------------------------


def cmd_sandbox(args: argparse.Namespace) -> int:
    from .sandbox import SANDBOX_API_KEY, Sandbox

    try:
        sb = Sandbox(host=args.host, port=args.port, api_key=args.api_key or SANDBOX_API_KEY, campaigns=args.campaign or None,
                     latency_ms=args.latency_ms, rate_limit=args.rate_limit, fail_rate=args.fail_rate,
                     drop_rate=args.drop_rate, max_upload_mb=args.max_upload_mb, data_dir=args.data_dir,
                     seed=args.seed)
        sb.start()
    except (ValueError, OSError) as exc:  # a bad setting, or the port is taken
        raise UsageError(f"sandbox: {exc}") from None
    _out(f"sandbox API serving at {sb.url}")
    _out(f"API key: {sb.api_key}   (export ALLOBRAIN_API_KEY={sb.api_key})")
    _out(f"inspect: {sb.url}/_sandbox/agents  {sb.url}/_sandbox/calls   (Ctrl-C to stop)")
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # `kill` stops it as cleanly as Ctrl-C
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    _out("sandbox stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
