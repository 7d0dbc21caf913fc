"""Which ledger a run uses, from config alone: `ledger.url` null = SQLite in state_dir, else PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..errors import UsageError
from .base import LedgerBackend, default_state_dir
from .sqlite import Ledger


class _LedgerSettings(Protocol):
    url: str | None
    lease_seconds: float


class Config(Protocol):
    """What the factory reads of config.Config (named here so that config may import this wing)."""

    state_dir: str | None
    ledger: _LedgerSettings


def state_dir_of(cfg: Config) -> Path:
    return Path(cfg.state_dir).expanduser() if cfg.state_dir else default_state_dir()


def open_ledger(cfg: Config, api: str, *, state_dir: Path | None = None, manifest: str = "",
                register: bool = True, read_only: bool = False) -> LedgerBackend:
    """The ledger for `api`. A run registers (`register`), which for SQLite also takes the one-run lock;
    `read_only` looks without writing (dry runs, `status`, `results`)."""
    url = cfg.ledger.url
    if url:
        try:
            from .postgres import PostgresLedger
        except ImportError:
            raise UsageError(
                "ledger.url names a PostgreSQL ledger, but PostgreSQL support is not installed: "
                "pip install 'allobrain-import[postgres]'"
            ) from None
        return PostgresLedger(url, api, lease_seconds=cfg.ledger.lease_seconds,
                              register=register and not read_only, manifest=manifest)
    folder = state_dir if state_dir is not None else state_dir_of(cfg)
    if read_only:
        return Ledger(folder, api, lock=False, read_only=True)
    return Ledger(folder, api, register=register, manifest=manifest, lease_seconds=cfg.ledger.lease_seconds)


def ledger_exists(cfg: Config, state_dir: Path | None = None) -> bool:
    """Whether there is anything to read: a shared ledger always is; a SQLite one once its file exists."""
    if cfg.ledger.url:
        return True
    folder = state_dir if state_dir is not None else state_dir_of(cfg)
    return (folder / Ledger.FILE_NAME).exists()
