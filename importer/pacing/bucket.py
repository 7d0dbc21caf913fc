"""`upload.max_mb_per_second`: one byte budget shared by every worker of a run.

A token bucket in its "virtual schedule" form (GCRA): each slice of a request body (the client hands the
socket about 8 KiB at a time) books its bytes on one shared schedule and waits until the schedule allows
them. Waiting per slice, not per file, keeps the link usable for everyone else in the office: the upload
never sends a file at full speed and then pauses for seconds. A small tolerance (`burst_seconds`) absorbs
sleep jitter, so the long-run rate is the cap, not the cap minus the scheduler's lateness.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MB = 1_000_000  # as elsewhere in the tool (fmt_bytes): MB/s in decimal megabytes; 100 Mbit/s = 12.5 MB/s


class ByteBucket:
    def __init__(self, mb_per_second: float, *, burst_seconds: float = 0.05,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not mb_per_second > 0:
            raise ValueError(f"mb_per_second must be positive, got {mb_per_second!r}")
        self.rate = mb_per_second * MB  # bytes per second
        self.burst = burst_seconds
        self._clock = clock
        self._sleep = sleep
        self._due = clock()  # when the bytes booked so far will all have been sent at the cap
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> float:
        """Book `nbytes` and wait until they may be sent; returns the seconds waited."""
        if nbytes <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            # Idle time earns no credit beyond the tolerance: after a pause the link is not flooded.
            self._due = max(self._due, now) + nbytes / self.rate
            delay = self._due - self.burst - now
        if delay <= 0:
            return 0.0
        # Deliberately not interruptible: Ctrl-C lets in-flight uploads finish, so a body in progress keeps
        # its pace (a second Ctrl-C ends the process at once anyway).
        self._sleep(delay)
        return delay
