"""What the commands share: printing, the config and manifest as every command loads them, the key."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import runinfo
from ..config import Config, load_config
from ..errors import UsageError
from ..ledger import default_state_dir

if TYPE_CHECKING:
    from ..manifest import Problem, ValidatedManifest


def out(line: str = "") -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_validated(args: argparse.Namespace, cfg: Config, *, api: str | None = None,
          check_trust: bool = False) -> ValidatedManifest:
    """Load and validate. A results CSV fed back in is checked against its run-info: refused when its run
    never finished writing it; its `uploaded` rows are not trusted when they went to another API."""
    from ..manifest import load_manifest, validate_manifest

    loaded = load_manifest(args.manifest, cfg)
    if loaded.is_results:
        info = runinfo.read(loaded.path)
        runinfo.check_complete(loaded.path, info)
        if info is not None:
            loaded = replace(loaded, base_dir=info.base_dir, results_ledger=info.ledger)
        if check_trust and not runinfo.trusted_for(info, api):
            assert info is not None
            where = "the built-in sandbox" if info.sandbox else info.api
            err(f"note: {loaded.path.name} was written by a run against {where}: its uploaded rows are not "
                 "counted as uploaded here (the ledger decides what this API already has)")
            loaded = replace(loaded, import_columns=None)
    # Durations (the plan's audio hours, the short-audio warning) cost a second read of each file's header:
    # worth it when people read the report (validate, --dry-run), not on the way to sending.
    with_durations = args.command == "validate" or getattr(args, "dry_run", False)
    return validate_manifest(loaded, cfg, with_durations=with_durations)


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
    info = runinfo.read(args.manifest) if args.config is None else None
    if info is not None and info.settings is not None:
        recorded = Path(info.config) if info.config and Path(info.config).is_file() else None
        base = load_config(recorded) if recorded else load_config(None, manifest=args.manifest)
        cfg = base.with_recorded(info.settings)
        origin = f"{recorded}, " if recorded else (f"{base.source}, " if base.source else "")
        origin += f"with the settings recorded by the run that wrote {args.manifest.name}"
        if info.config and recorded is None:
            origin += f" (its config {info.config} is gone)"
    else:
        cfg = load_config(args.config, manifest=args.manifest)
        origin = cfg.source or "none (built-in defaults)"
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


def state_dir_of(cfg: Config) -> Path:
    return Path(cfg.state_dir).expanduser() if cfg.state_dir else default_state_dir()


def problem_line(problem: Problem) -> str:
    return ("warning: " if problem.severity == "warning" else "") + str(problem)


def api_key_from_env(cfg: Config) -> str:
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


def check_writable(path: Path, flag: str) -> None:
    """Refuse a path we could not write to, before anything is sent rather than after."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write {path}: {exc.strerror or exc}") from None
