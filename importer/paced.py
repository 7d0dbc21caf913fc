"""A run's pacing, as the runner sees it: the `pacing` wing set up from the config and the ledger, and its
answers turned into row outcomes.

The runner calls four hooks: `ready()` before the invites, `start()` / `end()` around each upload,
`resend_after_quota()` when the API answers with its own quota, and reads `held()` for the rows left once
sending stopped. The bandwidth cap is `bandwidth`, handed to the client, which pays it as bodies stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from .client import Attempted
from .config import Config
from .ledger import LedgerBackend
from .pacing import ByteBucket, Pacer, Pause, SystemClock, parse_hours
from .results import Outcome

log = logging.getLogger("importer.run")


class RunPacing:
    def __init__(self, cfg: Config, ledger: LedgerBackend, stop: threading.Event, progress: object) -> None:
        u = cfg.upload
        self._progress = progress
        self.pacer = Pacer(
            clock=SystemClock(stop), zone=ZoneInfo(cfg.manifest.timezone), max_per_day=u.max_per_day,
            count_since=ledger.count_uploaded_since,
            hours=parse_hours(u.hours, cfg.manifest.timezone) if u.hours else None, wait=u.wait,
            on_wait=self._on_wait, elsewhere=ledger.uploads_elsewhere_since,  # the fleet, on a shared ledger
        )
        self.bandwidth = ByteBucket(u.max_mb_per_second).take if u.max_mb_per_second else None
        self._admitted = threading.local()

    @property
    def pause(self) -> Pause | None:
        """Why sending stopped for the rest of the run, and when the next slot is (None: it did not)."""
        return self.pacer.stopped

    def ready(self) -> bool:
        return self.pacer.ready() is None

    def held(self) -> Outcome | None:
        pause = self.pacer.stopped
        return Outcome("not_attempted", error=pause.reason) if pause else None

    def start(self, stopped_reason: Callable[[], str]) -> Outcome | None:
        """None: send now (this thread holds a slot until `end`). Else the row's outcome."""
        why = self.pacer.before_start()
        if why is None:
            self._admitted.held = True
            return None
        return Outcome("not_attempted", error=why if self.pacer.stopped else stopped_reason())

    def end(self, outcome: Outcome | None) -> None:
        if getattr(self._admitted, "held", False):
            self._admitted.held = False
            self.pacer.after(outcome is not None and outcome.status == "uploaded")

    def resend_after_quota(self, result: Attempted) -> bool:
        if result.quota_seconds is None:
            return False
        log.warning("the API answered with its quota (HTTP %s: %s; Retry-After %.0f s)",
                    result.http_status, result.message, result.quota_seconds)
        return self.pacer.resend_after_quota(result.quota_seconds, f"HTTP {result.http_status}: {result.message}")

    def quota_outcome(self, stopped_reason: Callable[[], str], **common: Any) -> Outcome:
        """A row refused by the API's quota is not failed: it was not attempted, and a rerun sends it."""
        pause = self.pacer.stopped
        return Outcome("not_attempted", error=pause.reason if pause else stopped_reason(), **common)

    def _on_wait(self, pause: Pause | None) -> None:
        if pause is not None:
            log.warning("waiting until %s: %s", pause.when, pause.reason)
        show = getattr(self._progress, "pause", None)  # optional in a Progress (the CLI's bars have it)
        if show is not None:
            show(f"waiting (Ctrl-C stops): {pause.reason}" if pause else None)
