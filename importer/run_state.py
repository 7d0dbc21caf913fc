"""What a run shares with whoever started it: the progress it reports, the stop it obeys, the summary it
returns. Plain values, so the CLI and the web page can hold them without the run's machinery."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .concurrency import Usage
    from .pacing import Pause
    from .tls import ConnectProblem


class Progress(Protocol):
    """May also have `status(concurrency: int, note: str | None)`: uploads at once now, and a word on an
    outage being ridden out; the run calls it when either changes."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, phase: str, n: int = 1, nbytes: int = 0) -> None: ...
    def finish(self, phase: str) -> None: ...


class NoProgress:
    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, n: int = 1, nbytes: int = 0) -> None:
        pass

    def finish(self, phase: str) -> None:
        pass


@dataclass
class RunSummary:
    results_path: Path
    counts: dict[str, int]
    total_rows: int
    elapsed: float = 0.0
    upload_seconds: float = 0.0
    uploaded_bytes: int = 0
    agents_needed: int = 0
    agents_invited: int = 0
    agents_known: int = 0
    agents_failed: dict[str, str] = field(default_factory=dict)
    agents_reinvited: int = 0  # invited again because the API had forgotten them (counted apart)
    concurrency: Usage | None = None  # uploads at once: the range used and where it settled
    recovered_unknown: int = 0
    same_recording: int = 0  # already uploaded to their campaign under another key (not sent again)
    file_word: int = 0  # skipped because the results file said uploaded, unknown to this ledger
    campaigns_stopped: dict[str, str] = field(default_factory=dict)  # campaign -> "not found" reason
    api_url: str = ""
    auth_error: str | None = None
    halted: str | None = None  # the run stopped itself (the API unreachable)
    setup_problem: ConnectProblem | None = None  # ... because of a TLS or proxy failure (halted says it too)
    interrupted: bool = False
    signum: int | None = None  # the signal that interrupted it (SIGINT 2, SIGHUP 1, SIGTERM 15)
    pause: Pause | None = None  # quota or sending hours stopped sending; when the next slot is

    @property
    def exit_code(self) -> int:
        if self.auth_error:
            return 3
        if self.setup_problem:  # a TLS or proxy failure is a setting to change, as when the preflight finds it
            return 2
        if self.interrupted:
            return 128 + (self.signum or 2)
        done = self.counts.get("uploaded", 0) + self.counts.get("already_uploaded", 0)
        return 0 if done == self.total_rows else 1


class StopSignal:
    """Set by the CLI on Ctrl-C, SIGTERM or SIGHUP (`signum`), or by the run itself: nothing new starts,
    in-flight requests finish."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None  # the signal that asked first, if one did

    def request(self, signum: int | None = None) -> None:
        if not self.event.is_set() and signum is not None:
            self.signum = signum
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()
