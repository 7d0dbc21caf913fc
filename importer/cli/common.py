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
            loaded = replace(loaded, base_dir=info.base_dir)
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


def config_from(args: argparse.Namespace) -> Config:
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
