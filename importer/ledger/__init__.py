"""The ledger: what was sent to which API, so that no run and no rerun sends a call twice.

Two backends behind one interface (`LedgerBackend`): SQLite in `state_dir` (one machine, one run at a time)
and PostgreSQL (`ledger.url`: any number of runs on any machines at once). Callers open one with
`open_ledger(cfg, api)` and never know which it is.
"""

from .base import (
    FAILED,
    SENDING,
    UNKNOWN,
    UPLOADED,
    CallKey,
    Entry,
    Holder,
    LedgerBackend,
    LedgerUnavailable,
    RunRecord,
    Upload,
    default_state_dir,
)
from .factory import ledger_exists, open_ledger, state_dir_of
from .sqlite import Ledger
from .url import display_url, ledger_url_setting, url_problem

__all__ = [
    "FAILED",
    "SENDING",
    "UNKNOWN",
    "UPLOADED",
    "CallKey",
    "Entry",
    "Holder",
    "Ledger",
    "LedgerBackend",
    "LedgerUnavailable",
    "RunRecord",
    "Upload",
    "default_state_dir",
    "display_url",
    "ledger_exists",
    "ledger_url_setting",
    "open_ledger",
    "state_dir_of",
    "url_problem",
]
