"""Rows another run holds (a shared ledger): never sent by this run; their lines say what the ledger knows.

When this run's claim finds a row taken, the row waits here. It is settled as soon as the other run's outcome
is final (uploaded, failed, unknown), polled every half second from the run's main loop, and at the end of
the run with whatever the ledger says then ("being sent by run R on host H" when it is still in flight).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .ledger import FAILED, SENDING, UNKNOWN, UPLOADED, CallKey, Holder, LedgerBackend, LedgerUnavailable
from .plan import UNKNOWN_HINT
from .results import Outcome

POLL_SECONDS = 0.5


def outcome_of(holder: Holder | None, *, final: bool) -> Outcome | None:
    """This run's line for a row another run holds; None while it is in flight and this run goes on."""
    if holder is None:
        return Outcome("not_attempted", error="another run claimed it, and the ledger no longer knows it")
    e, who = holder.entry, holder.who
    if e.status == UPLOADED:
        when = f" at {holder.updated_at}" if holder.updated_at else ""
        return Outcome("already_uploaded", http_status=e.http_status, call_id=e.call_id,
                       error=f"uploaded by {who}{when}")
    if e.status == SENDING:
        return Outcome("not_attempted", error=f"being sent by {who} when this run ended; rerun to see its outcome") \
            if final else None
    if e.status == UNKNOWN:
        return Outcome("unknown", http_status=e.http_status, error=f"sent by {who}: {e.error or 'unknown'}; "
                       + UNKNOWN_HINT)
    status = "failed" if e.status == FAILED and e.http_status else "not_attempted"
    return Outcome(status, http_status=e.http_status,
                   error=f"{who} tried it: {e.error or e.status}; a rerun sends it again")


class HeldRows:
    def __init__(self, ledger: LedgerBackend, finish: Callable[[int, Outcome], None],
                 advance: Callable[[], None]) -> None:
        self._ledger = ledger
        self._finish_row = finish
        self._advance = advance
        self._pending: dict[int, CallKey] = {}
        self._lock = threading.Lock()
        self._checked = time.monotonic()

    def __len__(self) -> int:
        return len(self._pending)

    def take(self, index: int, key: CallKey, *, retry_unknown: bool) -> bool:
        """Claim the row for this run: True when this run may send it. Else another run has it, and its line
        is written from here (now if its outcome is final, later if not). Raises LedgerUnavailable."""
        holder = self._ledger.claim(key, retry_unknown=retry_unknown)
        if holder is None:
            return True
        outcome = outcome_of(holder, final=False)
        if outcome is not None:
            self._finish(index, outcome)
        else:
            with self._lock:
                self._pending[index] = key
        return False

    def _finish(self, index: int, outcome: Outcome) -> None:
        self._finish_row(index, outcome)
        self._advance()

    def poll(self) -> None:
        """Called often by the main loop; asks the ledger at most every POLL_SECONDS."""
        if self._pending and time.monotonic() - self._checked >= POLL_SECONDS:
            self._settle(final=False)

    def settle_all(self, grace: float, stop: threading.Event) -> None:
        """At the end: wait up to `grace` seconds for rows still in flight elsewhere, then settle them all."""
        deadline = time.monotonic() + grace
        while self._pending and time.monotonic() < deadline and not stop.is_set():
            self._settle(final=False)
            if self._pending:
                stop.wait(POLL_SECONDS)
        self._settle(final=True)

    def _settle(self, *, final: bool) -> None:
        self._checked = time.monotonic()
        with self._lock:
            pending = sorted(self._pending.items())
        for index, key in pending:
            try:
                outcome = outcome_of(self._ledger.holder(key), final=final)
            except LedgerUnavailable as exc:
                if not final:
                    return
                outcome = Outcome("not_attempted", error=f"held by another run; {exc}")
            if outcome is not None:
                with self._lock:
                    del self._pending[index]
                self._finish(index, outcome)
