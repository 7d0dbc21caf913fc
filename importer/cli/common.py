"""What the commands share: printing, the config and manifest as every command loads them, the key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import prepare
from ..config import Config
from ..errors import UsageError
from ..ledger import state_dir_of  # noqa: F401 - the commands take it from here

if TYPE_CHECKING:
    from ..manifest import Problem, ValidatedManifest


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """--config, as every command takes it (one lookup rule: prepare.config_for)."""
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="config file (default: the config.yaml beside the manifest, else ./config.yaml, else "
                             "built-in defaults; a results file reuses the settings its run recorded)")


def out(line: str = "") -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_validated(args: argparse.Namespace, cfg: Config, *, api: str | None = None,
          check_trust: bool = False) -> ValidatedManifest:
    """Load and validate (prepare.load_validated), printing its notes."""
    # Durations (the plan's audio hours, the short-audio warning) cost a second read of each file's header:
    # worth it when people read the report (validate, --dry-run), not on the way to sending.
    with_durations = args.command == "validate" or getattr(args, "dry_run", False)
    done = prepare.load_validated(args.manifest, cfg, api=api, check_trust=check_trust,
                                  with_durations=with_durations)
    for note in done.notes:
        err(note)
    return done.vm


RUN_FLAGS = {
    "campaign_id": "--campaign-id",
    "upload.workers": "--workers",
    "upload.max_per_second": "--max-per-second",
    "upload.retry_unknown": "--retry-unknown",
    "api.base_url": "--api-url",
}


def config_from(args: argparse.Namespace) -> tuple[Config, str]:
    """The config and a line saying where it came from. `--config` wins; a results file fed back in is read
    with the settings its run recorded (its config, time zone and columns: the rows' keys depend on them);
    else the config.yaml beside the manifest, else ./config.yaml, else the built-in defaults."""
    cfg, origin = prepare.config_for(args.manifest, args.config)
    overrides = {"campaign_id": getattr(args, "campaign_id", None)}
    if args.command == "run":
        overrides |= {
            "upload.workers": args.workers,
            "upload.max_per_second": args.max_per_second,
            "upload.retry_unknown": args.retry_unknown,
            "upload.wait": args.wait,
            "api.base_url": args.api_url,
        }
    return cfg.with_overrides(RUN_FLAGS, **overrides), origin


def reading_lines(cfg: Config, origin: str, vm: ValidatedManifest | None = None) -> list[str]:
    """Which config was used, and how times without an offset are read: printed before anything else, since
    a wrong time zone changes every row's key."""
    lines = [f"config: {origin}"]
    zone = cfg.manifest.timezone
    order = "day first" if cfg.manifest.dayfirst else "month first"
    span = ""
    if vm is not None and vm.calls:
        from ..report import time_span

        span = f"; calls from {time_span(vm.calls, zone)}"
    lines.append(f"times without an offset are read in {zone} ({order}){span}")
    if vm is not None:
        lines += [f"note: {note}" for note in vm.loaded.notes]
    return lines


def problem_line(problem: Problem) -> str:
    return ("warning: " if problem.severity == "warning" else "") + str(problem)


def api_key_from_env(cfg: Config) -> str:
    key = prepare.env_api_key(cfg)
    if not key:
        name = cfg.api.api_key_env
        raise UsageError(
            f"no API key: set the environment variable {name} (for example: export {name}=...); "
            "or try the built-in sandbox with --sandbox"
        )
    return key


def check_writable(path: Path, flag: str) -> None:
    """Refuse a path we could not write to, before anything is sent rather than after."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write {path}: {exc.strerror or exc}") from None
