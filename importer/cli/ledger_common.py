"""What `status` and `results` share: the API the ledger is read for, and opening it to read."""

from __future__ import annotations

import argparse

from ..config import Config, load_config
from ..errors import UsageError
from ..ledger import LedgerBackend, display_url, ledger_exists, open_ledger, state_dir_of
from ..safety import canonical_api, check_base_url
from .common import add_config_flag


def add_ledger_args(p: argparse.ArgumentParser) -> None:
    add_config_flag(p)
    p.add_argument("--api-url", help="the API whose calls to look at (default: api.base_url from config)")


def config_for(args: argparse.Namespace) -> tuple[Config, str]:
    """As every command: with a manifest, the config beside it (or the one its run recorded); without one,
    --config or ./config.yaml."""
    from .common import config_from

    if args.manifest is not None:
        return config_from(args)
    cfg = load_config(args.config)
    return cfg, cfg.source or "none (built-in defaults)"


def ledger_api(args: argparse.Namespace, cfg: Config) -> str:
    url = args.api_url or cfg.api.base_url
    return canonical_api(check_base_url(url, "--api-url" if args.api_url else "api.base_url"))


def read_ledger(cfg: Config, api: str) -> LedgerBackend:
    if not ledger_exists(cfg):
        raise UsageError(f"no ledger yet in {state_dir_of(cfg)}: no run has used it (set state_dir or "
                         "ledger.url to the one your runs use)")
    return open_ledger(cfg, api, read_only=True)


def ledger_label(cfg: Config) -> str:
    if cfg.ledger.url:
        return f"ledger: {display_url(cfg.ledger.url)} (shared PostgreSQL)"
    return f"ledger: {state_dir_of(cfg)} (SQLite, this machine)"
