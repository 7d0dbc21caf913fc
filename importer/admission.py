"""The gate every upload passes before it starts: at most `limit` in flight, the limit set by `concurrency`.

The runner asks `acquire()` before handing a row to the pool and `release()` when the row is finished; the
client reports body bytes (`sent`) and refusals, timeouts and resets (`congestion`) as they happen. Other
gates (the request-rate limiter, Retry-After pauses, pacing) act inside a row's slot, so time spent waiting
on them lowers the goodput per request and the limit stops growing: they bound it, it does not fight them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .concurrency import AdaptiveLimit, Change, FixedLimit, PathSample, Usage, usage

log = logging.getLogger("importer.concurrency")

# (limit, note) -> None: the progress line's status; note is e.g. "the API is not answering for 20s ..."
StatusFn = Callable[[int, str | None], None]


class Admission:
    def __init__(self, limiter: AdaptiveLimit | FixedLimit, *, clock: Callable[[], float] = time.monotonic,
                 status: StatusFn | None = None, note: Callable[[], str | None] | None = None) -> None:
        self.limiter = limiter
        self._clock = clock
        self._status = status
        self._note = note or (lambda: None)
        self._shown: tuple[int, str | None] | None = None
        self._cond = threading.Condition()
        self.in_flight = 0
        self.changes: list[Change] = []
        self._show()

    @classmethod
    def for_workers(cls, workers: int | str, max_workers: int, **kwargs: object) -> Admission:
        """`upload.workers`: a number is exactly that many; "auto" adapts up to `max_workers`."""
        now = time.monotonic()
        if workers == "auto":
            limiter: AdaptiveLimit | FixedLimit = AdaptiveLimit(ceiling=max_workers, now=now)
        else:
            limiter = FixedLimit(int(workers), clock_start=now)
        return cls(limiter, **kwargs)  # type: ignore[arg-type]

    @property
    def ceiling(self) -> int:
        """The most that can ever be in flight (the size of the pool)."""
        return self.limiter.ceiling if isinstance(self.limiter, AdaptiveLimit) else self.limiter.limit

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a free slot; False when `stop` was set first."""
        with self._cond:
            while self.in_flight >= self.limiter.limit:
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
                self._apply(self.limiter.poll(self._clock()))
            if stop.is_set():
                return False
            self.in_flight += 1
            self._apply(self.limiter.in_flight(self.in_flight, self._clock()))
        return True

    def release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._apply(self.limiter.in_flight(self.in_flight, self._clock()))
            self._cond.notify()

    # --- what the client reports ------------------------------------------------------------------

    def sent(self, nbytes: int, path: PathSample | None = None) -> None:
        if self.limiter.adaptive:  # a fixed number learns nothing: no lock taken per block of a body
            with self._cond:
                self._apply(self.limiter.sent(nbytes, self._clock(), path))

    def waited(self, seconds: float) -> None:
        if self.limiter.adaptive and seconds > 0:
            with self._cond:
                self._apply(self.limiter.waited(seconds, self._clock()))

    def congestion(self, reason: str) -> None:
        if self.limiter.adaptive:
            with self._cond:
                self._apply(self.limiter.congestion(reason, self._clock()))

    def usage(self) -> Usage:
        with self._cond:
            return usage(self.limiter.history, self._clock(), adaptive=self.limiter.adaptive)

    # --- inside the lock ----------------------------------------------------------------------------

    def _apply(self, change: Change | None) -> None:
        if change is not None:
            self.changes.append(change)
            log.info("concurrency %d -> %d: %s", change.old, change.new, change.reason)
            if change.new > change.old:
                self._cond.notify_all()
        self._show()

    def _show(self) -> None:
        if self._status is None:
            return
        shown = (self.limiter.limit, self._note())
        if shown != self._shown:
            self._shown = shown
            self._status(*shown)
