"""Progress bars for the CLI (tqdm on stderr): invites, then uploads with calls/s, MB/s and ETA."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

_LABELS = {"agents": "inviting agents", "uploads": "uploading calls"}
_UNITS = {"agents": "agent", "uploads": "call"}


class TqdmProgress:
    def __init__(self, *, disable: bool = False) -> None:
        # Bars only on a terminal: a redirected stderr gets the summary, not thousands of bar updates.
        self.disable = disable or not sys.stderr.isatty()
        self._bars: dict[str, tqdm] = {}
        self._bytes: dict[str, int] = {}
        self._t0: dict[str, float] = {}

    def start(self, phase: str, total: int) -> None:
        self._bars[phase] = tqdm(total=total, desc=_LABELS.get(phase, phase), unit=_UNITS.get(phase, "it"),
                                 disable=self.disable, file=sys.stderr, dynamic_ncols=True, mininterval=0.2)
        self._bytes[phase] = 0
        self._t0[phase] = time.monotonic()

    def advance(self, phase: str, n: int = 1, nbytes: int = 0) -> None:
        bar = self._bars.get(phase)
        if bar is None:
            return
        self._bytes[phase] += nbytes
        bar.update(n)
        if nbytes and not self.disable:
            elapsed = max(1e-6, time.monotonic() - self._t0[phase])
            bar.set_postfix_str(f"{self._bytes[phase] / elapsed / 1e6:.2f} MB/s", refresh=False)

    def finish(self, phase: str) -> None:
        bar = self._bars.pop(phase, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for phase in list(self._bars):
            self.finish(phase)
