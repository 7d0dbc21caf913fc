"""An API that answers nothing at all (refused, timed out, reset) for a while: an outage, ridden out.

Rows that meet it keep retrying, with backoff capped at `backoff_cap`, past `upload.max_attempts`, for up to
`upload.ride_out_seconds` from the first unanswered request; any answer ends the outage. An API that stays
down longer fails its rows as before, and the run's unreachable-API guard (guards.py) stops the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Outage:
    backoff_cap = 10.0  # seconds between retries while riding out: back within 10 s of the API's return

    def __init__(self, ride_out: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ride_out = ride_out
        self._clock = clock
        self._since: float | None = None
        self._lock = threading.Lock()

    def no_answer(self) -> None:
        with self._lock:
            if self._since is None:
                self._since = self._clock()

    def answered(self) -> None:
        with self._lock:
            self._since = None

    def lasting(self) -> float | None:
        """Seconds since the first unanswered request of the current outage, or None."""
        with self._lock:
            return None if self._since is None else self._clock() - self._since

    def riding(self) -> bool:
        lasting = self.lasting()
        return lasting is not None and lasting < self.ride_out

    def note(self) -> str | None:
        """For the progress line, once the outage is longer than a blip."""
        lasting = self.lasting()
        if lasting is None or lasting < 3 or self.ride_out <= 0:
            return None
        if lasting < self.ride_out:
            return f"API not answering for {lasting:.0f}s; retrying for up to {self.ride_out:.0f}s"
        return f"API not answering for {lasting:.0f}s; giving up on rows"
