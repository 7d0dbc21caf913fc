"""Ctrl-C during a run: the first stops it cleanly, the second at once."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runner import StopSignal


def install_sigint(stop: StopSignal):  # noqa: ANN202 - returns the restorer
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            # Second Ctrl-C: leave now. Results rows already written are flushed; rows in flight stay
            # `sending` in the ledger and become `unknown` on the next run.
            os._exit(130)
        stop.request()
        # os.write, not print: the main thread may be inside a write to stderr (a reentrant print raises).
        os.write(2, b"\nstopping: in-flight uploads finish, nothing new starts (Ctrl-C again to quit at once)\n")

    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)
