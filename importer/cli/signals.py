"""Stopping a run: Ctrl-C, SIGTERM (schedulers, `timeout`, systemd, container runtimes) and SIGHUP (a closed
terminal) all stop it cleanly the first time; a second signal stops it at once."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runner import StopSignal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def install_sigint(stop: StopSignal, rerun: str = ""):  # noqa: ANN202 - returns the restorer
    """The first stop signal sets `stop` (in-flight uploads finish, nothing new starts; the run then ends
    with 128 + the signal's number); a second one leaves at once, saying how to pick up."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        name = _NAMES.get(signum, f"signal {signum}")
        # os.write, not print: the main thread may be inside a write to stderr (a reentrant print raises).
        if stop.requested:
            # Leave now. Results rows already written are on disk; rows in flight stay `sending` in the
            # ledger and become `unknown` on the next run, which sends everything else that is left.
            then = f"; rerun to send what is left: {rerun}" if rerun else ""
            os.write(2, (f"\n{name} again: stopped at once; the calls in flight are unknown until the next run"
                         f"{then}\n").encode())
            os._exit(128 + signum)
        stop.request(signum)
        os.write(2, f"\n{name}: stopping: in-flight uploads finish, nothing new starts ({name} again to quit "
                    "at once)\n".encode())

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def wait_for_stop() -> None:
    """Block until Ctrl-C or SIGTERM (`kill` stops a server command as cleanly as Ctrl-C)."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
