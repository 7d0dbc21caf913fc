"""The gate every upload passes just before it starts: the daily quota, the sending hours and the API's own
quota (a 429 whose Retry-After is beyond `upload.max_retry_after_seconds`).

When one of them says "not now", either the run stops sending (`stopped` holds why and when the next slot
is; the rows left are `not_attempted`), or with `upload.wait` the workers wait for the next slot and go on.
Waiting goes through the clock's `wait`, which the run's stop signal interrupts: Ctrl-C and SIGTERM end a
wait of hours at once. Nothing here does I/O but the quota's count (a ledger query), so the whole of it runs
on a fake clock in the tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .hours import SendingHours
from .quota import DAY, CountSince, next_quota_slot

# A worker that waits re-checks at least this often (another run may have freed the quota; a clock may jump).
RECHECK_SECONDS = 30.0
# The ledger is counted again when the count is older than this, or when the quota is this close.
COUNT_MAX_AGE = 5.0
COUNT_MARGIN = 64

QUOTA, HOURS, SERVER = "quota", "hours", "server"


class SystemClock:
    """Wall-clock time (the ledger stamps uploads with it) and a wait that the run's stop event cuts short."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def now(self) -> float:
        return time.time()

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True when the run was told to stop."""
        return self._stop.wait(max(0.0, seconds))

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()


@dataclass(frozen=True)
class Pause:
    """Why sending stops or waits, and until when (epoch seconds)."""

    kind: str  # QUOTA, HOURS or SERVER
    until: float
    reason: str  # the words for import_error and the summary, with the time of the next slot
    zone: ZoneInfo

    @property
    def when(self) -> str:
        return local_time(self.until, self.zone)

    @property
    def iso(self) -> str:
        return datetime.fromtimestamp(math.ceil(self.until), self.zone).isoformat()


def local_time(epoch: float, zone: ZoneInfo) -> str:
    """'2026-12-02 07:31 CET', with the seconds when they are not 0; rounded up to the second, so that a rerun
    at that time is never early."""
    dt = datetime.fromtimestamp(math.ceil(epoch), zone)
    return dt.strftime("%Y-%m-%d %H:%M:%S %Z" if dt.second else "%Y-%m-%d %H:%M %Z")


class Pacer:
    def __init__(self, *, clock: SystemClock, zone: ZoneInfo, max_per_day: int = 0,
                 count_since: CountSince | None = None, hours: SendingHours | None = None, wait: bool = False,
                 on_wait: Callable[[Pause | None], None] | None = None,
                 elsewhere: CountSince | None = None) -> None:
        """`elsewhere(since)`: on a ledger shared by several runs, what the other runs uploaded since that
        time plus what they are sending now; asked at every check, so that the fleet's progress is never
        older than the request about to start (see `_used`)."""
        if max_per_day and count_since is None:
            raise ValueError("a daily quota needs the ledger's count")
        self.clock = clock
        self.zone = zone
        self.max_per_day = max_per_day
        self.hours = hours
        self.wait = wait
        self.stopped: Pause | None = None  # set when sending stopped for the rest of the run
        self._count_since = count_since
        self._elsewhere = elsewhere
        self._on_wait = on_wait or (lambda pause: None)
        self._server_until = 0.0
        self._server_reason = ""
        self._in_flight = 0
        self._counted: tuple[int, float] | None = None  # (ledger count, when)
        self._uploaded_since_count = 0
        self._announced: float | None = None
        self._cond = threading.Condition()

    # --- the gate ---------------------------------------------------------------------------------

    def before_start(self) -> str | None:
        """None: this upload may start now (it counts as in flight until `after`). Else why not: sending
        stopped (see `stopped`), or the run's stop signal was set while waiting."""
        return self._gate(admit=True, own=0)

    def after(self, uploaded: bool) -> None:
        """An upload let through by `before_start` has ended (whatever its outcome)."""
        with self._cond:
            self._in_flight -= 1
            if uploaded:
                self._uploaded_since_count += 1
            self._cond.notify_all()

    def ready(self) -> str | None:
        """The same check without starting anything: before the invites, so that a run outside its hours
        or past its quota sends nothing at all (or waits first, with `wait`)."""
        return self._gate(admit=False, own=0)

    def resend_after_quota(self, retry_after: float, message: str) -> bool:
        """The API answered 429 with a Retry-After beyond the cap: its own quota. Every worker holds from now
        on (at most one such answer per worker). True when the call should be sent again (`wait`: the time
        has come); False when sending stopped or the run was told to stop."""
        with self._cond:
            until = self.clock.now() + retry_after
            if until > self._server_until:
                self._server_until = until
                self._server_reason = (f"the API's quota is reached ({message}); it accepts calls again at "
                                       f"{local_time(until, self.zone)}")
            if not self.wait and self.stopped is None:
                self.stopped = Pause(SERVER, self._server_until, self._server_reason, self.zone)
        return self._gate(admit=False, own=1) is None  # this call is still in flight: it holds its place

    def _gate(self, *, admit: bool, own: int) -> str | None:
        """`own`: 1 when the caller's upload is already counted in flight (a resend), else 0."""
        while True:
            with self._cond:
                if self.stopped is not None:
                    return self.stopped.reason
                if self.clock.stopped:
                    return "the run stopped while waiting for a sending slot"
                now = self.clock.now()
                pause = self._pause(now, own)
                if pause is None:
                    if admit:
                        self._in_flight += 1
                    if self._announced is not None:
                        self._announced = None
                        self._on_wait(None)
                    return None
                if pause == "in_flight":  # the quota may free up if an upload in flight fails: wait for them
                    self._cond.wait(0.2)
                    continue
                assert isinstance(pause, Pause)
                if not self.wait:
                    self.stopped = pause
                    return pause.reason
                if self._announced != pause.until:
                    self._announced = pause.until
                    self._on_wait(pause)
            if self.clock.wait(min(pause.until - now, RECHECK_SECONDS)):
                return "the run stopped while waiting for a sending slot"

    def _pause(self, now: float, own: int) -> Pause | str | None:
        if now < self._server_until:
            return Pause(SERVER, self._server_until, self._server_reason, self.zone)
        if self.hours is not None and not self.hours.is_open(now):
            opens = self.hours.next_open(now)
            return Pause(HOURS, opens, f"outside sending hours; they open at {local_time(opens, self.zone)} "
                                       f"(upload.hours: {self.hours.text})", self.zone)
        if not self.max_per_day:
            return None
        # used + (1 - own): the uploads in the window once this one is counted too
        if self._used(now, fresh=False) + 1 - own <= self.max_per_day:
            return None
        if self._in_flight > own:
            return "in_flight"
        used = self._used(now, fresh=True)  # never stop on a stale count
        if used + 1 - own <= self.max_per_day:
            return None
        assert self._counted is not None
        if self._elsewhere is not None and self._counted[0] + 1 <= self.max_per_day:
            return "in_flight"  # only other runs' uploads in flight fill it: wait for them, as for this run's
        assert self._count_since is not None
        slot = next_quota_slot(self._count_since, self.max_per_day, now)
        return Pause(QUOTA, slot, f"daily quota reached: {used:,} uploads in 24 h; next slot at "
                                  f"{local_time(slot, self.zone)} (upload.max_per_day: {self.max_per_day:,})",
                     self.zone)

    def _used(self, now: float, *, fresh: bool) -> int:
        """Uploads in the last 24 h: the ledger's count (refreshed when old or near the limit) plus this run's
        uploads since, plus those in flight (they will most likely count), plus, on a shared ledger, what the
        other runs uploaded since the count and are sending now.

        That last part is asked at every check. Without it each run saw the others only when it counted
        again (every COUNT_MAX_AGE, or near the limit by its own reckoning), and N fast runs could each send
        most of the quota first. With it, the fleet passes `max_per_day` by at most the uploads let through
        at the same moment by several runs: the workers in flight across the fleet (a run that starts an
        upload has not yet claimed its row, which is what the others can see), plus the difference between
        the machines' clocks and the database's times the fleet's rate."""
        counted = self._counted
        if not (fresh or counted is None or now - counted[1] > COUNT_MAX_AGE):
            used = self._add(counted)
            if used < self.max_per_day - COUNT_MARGIN:
                return used
        assert self._count_since is not None
        counted = self._counted = (self._count_since(now - DAY), now)
        self._uploaded_since_count = 0
        return self._add(counted)

    def _add(self, counted: tuple[int, float]) -> int:
        others = self._elsewhere(counted[1]) if self._elsewhere is not None else 0
        return counted[0] + others + self._uploaded_since_count + self._in_flight
