"""What every ledger backend offers, and the values that cross the wing's border.

A call's key is (API base URL, campaign, agent email, timestamp, file name, file size). A row is claimed
(`sending`) just before its request and marked after it. The claim is atomic: two runs that race for one row
see one winner; the other is told who holds it (a `Holder`) and never sends it.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ..errors import UsageError

SENDING = "sending"
UPLOADED = "uploaded"
UNKNOWN = "unknown"
FAILED = "failed"  # the server did not keep it (refused, gave up, interrupted): safe to send again


class LedgerUnavailable(UsageError):  # noqa: N818 - named for what it means to the run
    """The ledger cannot record anything now (the database is down or unreachable). A claim that cannot be
    recorded means the row is not sent."""


@dataclass(frozen=True, slots=True)
class CallKey:
    campaign_id: str
    agent_email: str
    timestamp: int
    file_name: str
    file_size: int


@dataclass(frozen=True, slots=True)
class Entry:
    status: str
    call_id: str | None
    http_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload the ledger holds, for the same-recording rule."""

    agent_email: str
    timestamp: int
    file_name: str
    call_id: str | None
    fingerprint: str | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class Holder:
    """A row another run holds (or has settled), as the ledger knows it now."""

    entry: Entry
    run_id: str | None
    host: str | None
    updated_at: str | None = None

    @property
    def who(self) -> str:
        return f"run {self.run_id or '?'} on host {self.host or '?'}"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as the ledger lists it (`allobrain-import status`)."""

    run_id: str
    api: str
    host: str
    pid: int
    user: str
    started_at: str
    heartbeat_at: str
    rows_done: int
    manifest: str
    live: bool

    @property
    def rate(self) -> float:
        """Rows per second since it started, from the ledger's own clock."""
        seconds = (_parse(self.heartbeat_at) - _parse(self.started_at)).total_seconds()
        return self.rows_done / seconds if seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is running: written when a run registers, shown by `status` and in other runs' results."""

    run_id: str
    host: str
    pid: int
    user: str

    @classmethod
    def here(cls) -> Identity:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a container user with no passwd entry
            user = str(os.getuid()) if hasattr(os, "getuid") else "?"
        return cls(uuid.uuid4().hex[:12], socket.gethostname(), os.getpid(), user)


class LedgerBackend(Protocol):
    """The one interface the plan, the runner and the commands use; they never know which backend it is."""

    api: str
    identity: Identity
    where: str  # for messages: the file or the database (never a password)

    def recover(self) -> int: ...
    def get(self, key: CallKey) -> Entry | None: ...
    def get_many(self, keys: list[CallKey]) -> dict[CallKey, Entry]: ...
    def holder(self, key: CallKey) -> Holder | None: ...
    def claim(self, key: CallKey, *, retry_unknown: bool = False) -> Holder | None: ...
    def mark_sending(self, key: CallKey) -> None: ...
    def mark(self, key: CallKey, status: str, *, call_id: str | None = None, http_status: int | None = None,
             error: str | None = None, fingerprint: str | None = None) -> None: ...
    def uploaded_sizes(self) -> set[tuple[str, int]]: ...
    def uploads_of_size(self, campaign_id: str, file_size: int) -> list[Upload]: ...
    @property
    def ledger_id(self) -> str | None: ...
    def counts(self) -> dict[str, int]: ...
    def count_uploaded_since(self, epoch_seconds: float) -> int: ...
    def uploads_elsewhere_since(self, epoch_seconds: float) -> int: ...
    def invited(self) -> set[str]: ...
    def mark_invited(self, email: str) -> None: ...
    def runs(self, *, live_only: bool = True) -> list[RunRecord]: ...
    def shared_limiter(self, rate: float) -> object | None: ...
    def close(self) -> None: ...
    def __enter__(self) -> LedgerBackend: ...
    def __exit__(self, *exc: object) -> None: ...


def default_state_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("allobrain-import", appauthor=False))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Heartbeat:
    """A daemon thread calling `beat()` every `interval` seconds until stopped. A failing beat is logged by
    the backend and tried again at the next interval: a run that cannot beat for a whole lease is presumed
    dead by the others, which is exactly the crash rule."""

    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ledger-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
