"""What every front end (the command line, the local web page) does before a run, in one place so both
keep the same guarantees: the ledger's folder, the key from the environment, the manifest loaded and
validated with its run-info checks, and the dry-run plan read from the ledger without locking it.

Nothing here prints: a note a person should read is returned as text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import runinfo
from .config import Config, load_config
from .errors import UsageError
from .ledger import LedgerBackend, ledger_exists, open_ledger, state_dir_of  # noqa: F401 - state_dir_of: for the page
from .safety import canonical_api

if TYPE_CHECKING:
    from .manifest import ValidatedManifest
    from .plan import Plan


def config_for(manifest: Path, config: Path | None = None) -> tuple[Config, str]:
    """The config and a line saying where it came from. `config` (--config) wins; a results file fed back in
    is read with the settings its run recorded (its config, time zone and columns: the rows' keys depend on
    them); else the config.yaml beside the manifest, else ./config.yaml, else the built-in defaults."""
    info = runinfo.read(manifest) if config is None else None
    if info is not None and info.settings is not None:
        recorded = Path(info.config) if info.config and Path(info.config).is_file() else None
        base = load_config(recorded) if recorded else load_config(None, manifest=manifest)
        cfg = base.with_recorded(info.settings)
        origin = f"{recorded}, " if recorded else (f"{base.source}, " if base.source else "")
        origin += f"with the settings recorded by the run that wrote {manifest.name}"
        if info.config and recorded is None:
            origin += f" (its config {info.config} is gone)"
        return cfg, origin
    cfg = load_config(config, manifest=manifest)
    return cfg, cfg.source or "none (built-in defaults)"


def check_api_key(key: str, name: str) -> str:
    """A key as it will travel in the x-api-key header; `name` says where it came from, for the message."""
    key = key.strip()
    if key and not (key.isascii() and key.isprintable()):
        raise UsageError(f"{name} contains characters that cannot be sent in an HTTP header; check the key")
    return key


def env_api_key(cfg: Config) -> str | None:
    """The key from the environment variable the config names, or None when it is unset or empty."""
    name = cfg.api.api_key_env
    return check_api_key(os.environ.get(name, ""), name) or None


@dataclass(frozen=True)
class Validated:
    vm: ValidatedManifest
    notes: tuple[str, ...] = ()  # what a person should know about how the file was read


def load_validated(manifest: Path, cfg: Config, *, api: str | None = None, check_trust: bool = False,
                   with_durations: bool = False) -> Validated:
    """Load and validate. A results file fed back in is checked against its run-info: refused when its run
    never finished writing it; its `uploaded` rows are not trusted when they went to another API."""
    from .manifest import load_manifest, validate_manifest

    loaded = load_manifest(manifest, cfg)
    notes: list[str] = []
    if loaded.is_results:
        info = runinfo.read(loaded.path)
        runinfo.check_complete(loaded.path, info)
        if info is not None:
            loaded = replace(loaded, base_dir=info.base_dir, results_ledger=info.ledger)
        if check_trust and not runinfo.trusted_for(info, api):
            assert info is not None
            where = "the built-in sandbox" if info.sandbox else info.api
            notes.append(f"note: {loaded.path.name} was written by a run against {where}: its uploaded rows are "
                         "not counted as uploaded here (the ledger decides what this API already has)")
            loaded = replace(loaded, import_columns=None)
    return Validated(validate_manifest(loaded, cfg, with_durations=with_durations), tuple(notes))


@dataclass(frozen=True)
class DryRun:
    plan: Plan
    to_invite: list[str]  # the plan's agents the ledger does not know yet
    pace: list[str]  # the finish estimate under the workers, rate, bandwidth, quota and hours in force


def dry_run_plan(vm: ValidatedManifest, cfg: Config, state_dir: Path, api_url: str | None, *,
                 allow_same_recording: bool = False) -> DryRun:
    """The plan `run` would carry out, from a read-only look at the ledger (none yet: everything is to do).
    The CLI's --dry-run and the page's plan step both read it."""
    from .plan import make_plan

    ledger = None
    if api_url and ledger_exists(cfg, state_dir):  # a shared ledger (ledger.url) is read just the same
        ledger = open_ledger(cfg, canonical_api(api_url), state_dir=state_dir, read_only=True)
    try:
        plan = make_plan(vm, ledger, retry_unknown=cfg.upload.retry_unknown, allow_same_recording=allow_same_recording)
        invited = ledger.invited() if ledger else set()
        pace = pace_lines(plan, cfg, ledger)
    finally:
        if ledger:
            ledger.close()
    return DryRun(plan, [e for e in plan.agents if e not in invited], pace)


def pace_lines(plan: Plan, cfg: Config, ledger: LedgerBackend | None) -> list[str]:
    """The plan's finish estimate under the workers, rate, bandwidth, quota and hours in force."""
    import time
    from zoneinfo import ZoneInfo

    from .pacing import DAY, Limits, estimate_lines, parse_hours

    u, zone = cfg.upload, cfg.manifest.timezone
    used = ledger.count_uploaded_since(time.time() - DAY) if ledger is not None and u.max_per_day else 0
    workers = u.workers if isinstance(u.workers, int) else u.max_workers  # auto: at most max_workers
    limits = Limits(workers=workers, max_per_second=u.max_per_second, max_mb_per_second=u.max_mb_per_second,
                    max_per_day=u.max_per_day, hours=parse_hours(u.hours, zone) if u.hours else None,
                    used_today=used)
    return estimate_lines(len(plan.to_send), plan.bytes_to_send, limits, now=time.time(), zone=ZoneInfo(zone))
