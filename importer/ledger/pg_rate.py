"""`upload.max_per_second` shared by every run of one ledger and API: send slots leased from PostgreSQL.

One row per API holds the time of the next free slot. A run leases a small batch of consecutive slots in one
statement (`next_at = GREATEST(next_at, now()) + batch * interval`), so however many runs share the API their
requests are spaced as if one client sent them all, and the database is asked once per batch, not once per
request. Slot times are the database's clock, turned into this machine's monotonic clock on arrival.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..slots import wait_for_slot
from .base import LedgerUnavailable

log = logging.getLogger("importer.ledger")

# A slot this far in the past was not used in time (no worker was free): sending on it now could bunch
# requests together, so it is dropped.
STALE_SECONDS = 0.5


class SharedRateLimiter:
    """The `RateLimiter` interface of client.py (`acquire`, `pause_until`), its slots leased from the ledger.

    `lease(span)` reserves `span` seconds of the shared schedule and returns when it starts, in seconds
    from now (0 when the schedule was idle)."""

    def __init__(self, rate: float, lease: Callable[[float], float], clock: Callable[[], float] = time.monotonic,
                 batch: int | None = None) -> None:
        self.interval = 1.0 / rate
        self.batch = batch or max(1, min(8, round(rate * 0.2)))  # about 200 ms of schedule per lease
        self._lease = lease
        self._clock = clock
        self._slots: deque[float] = deque()
        self._paused_until = 0.0
        self._local_next = 0.0  # used only while the ledger cannot be asked
        self._last = float("-inf")  # after a pause, slots stay an interval apart instead of bunching up
        self._lock = threading.Lock()

    def pause_until(self, when: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, when)

    def _next_slot(self) -> float:
        now = self._clock()
        while self._slots and self._slots[0] < now - STALE_SECONDS:
            self._slots.popleft()
        if not self._slots:
            try:
                start = now + max(0.0, self._lease(self.batch * self.interval))
            except LedgerUnavailable as exc:
                # Pace this run alone; the claims will stop the run soon enough if the ledger stays away.
                log.warning("%s; pacing this run on its own", exc)
                slot = max(now, self._local_next)
                self._local_next = slot + self.interval
                return slot
            self._slots.extend(start + i * self.interval for i in range(self.batch))
        return self._slots.popleft()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a slot; False if `stop` was set while waiting."""
        with self._lock:
            slot = max(self._next_slot(), self._paused_until, self._last + self.interval)
            self._last = slot
        return wait_for_slot(slot, self._after_pause, stop, self._clock)

    def _after_pause(self) -> float | None:
        """A 429 that came meanwhile holds every run's thread here longer: a new slot, an interval apart."""
        with self._lock:
            if self._paused_until <= self._clock():
                return None
            slot = max(self._paused_until, self._last + self.interval)
            self._last = slot
            return slot
