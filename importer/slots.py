"""Waiting for a send slot, shared by the run's own rate limiter (client.py) and the fleet's (ledger/pg_rate.py).

A slot is reserved, then waited for; a 429 that another thread receives meanwhile may push the shared pause
past it, so before sending the waiter asks again (`recheck`), and waits for the new slot it is given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_for_slot(slot: float, recheck: Callable[[], float | None], stop: threading.Event | None,
                  clock: Callable[[], float] = time.monotonic) -> bool:
    """Wait until `slot`, then until every later slot `recheck` gives (None: go now); False if `stop` was set."""
    while True:
        delay = slot - clock()
        if delay > 0:
            if stop is not None:
                if stop.wait(delay):
                    return False
            else:
                time.sleep(delay)
        later = recheck()
        if later is None:
            return not (stop is not None and stop.is_set())
        slot = later
