"""Progress for the CLI: tqdm bars on a terminal (invites, then uploads with calls/s, MB/s and ETA); when
stderr is not a terminal (nohup, cron, a CI log), one plain line every `interval` seconds instead, so a
long migration still shows where it is without thousands of bar redraws. Both show how many uploads are in
flight at once (`status`, from the run) and say when an API outage is being ridden out."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time

from tqdm import tqdm

_LABELS = {"agents": "inviting agents", "uploads": "uploading calls"}
_UNITS = {"agents": "agent", "uploads": "call"}


class TqdmProgress:
    def __init__(self, *, disable: bool = False, interval: float = 30.0) -> None:
        self.quiet = disable
        self.plain = not disable and not sys.stderr.isatty()
        self.interval = interval
        self._bars: dict[str, tqdm] = {}
        self._done: dict[str, int] = {}
        self._total: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._t0: dict[str, float] = {}
        self._last_line = 0.0
        self._lock = threading.Lock()
        self._at_once: int | None = None
        self._note: str | None = None

    def status(self, concurrency: int, note: str | None) -> None:
        """Uploads in flight at once now, and a word on an outage (None when there is none)."""
        with self._lock:
            first_note = note is not None and self._note is None
            self._at_once, self._note = concurrency, note
            bar = self._bars.get("uploads")
            if bar is not None:
                bar.set_postfix_str(self._postfix("uploads"), refresh=True)
            elif self.plain and first_note:
                print(f"uploading calls: {note}", file=sys.stderr, flush=True)

    def _postfix(self, phase: str) -> str:
        elapsed = max(1e-6, time.monotonic() - self._t0.get(phase, time.monotonic()))
        parts = [f"{self._bytes.get(phase, 0) / elapsed / 1e6:.2f} MB/s"]
        if self._at_once is not None:
            parts.append(f"{self._at_once} at once")
        if self._note:
            parts.append(self._note)
        return ", ".join(parts)

    def start(self, phase: str, total: int) -> None:
        if not self.quiet and not self.plain:
            self._bars[phase] = tqdm(total=total, desc=_LABELS.get(phase, phase), unit=_UNITS.get(phase, "it"),
                                     file=sys.stderr, dynamic_ncols=True, mininterval=0.2)
        self._done[phase], self._total[phase], self._bytes[phase] = 0, total, 0
        self._t0[phase] = self._last_line = time.monotonic()

    def advance(self, phase: str, n: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            if phase not in self._done:
                return
            self._done[phase] += n
            self._bytes[phase] += nbytes
            elapsed = max(1e-6, time.monotonic() - self._t0[phase])
            bar = self._bars.get(phase)
            if bar is not None:
                bar.update(n)
                if nbytes:
                    bar.set_postfix_str(self._postfix(phase), refresh=False)
            elif self.plain and time.monotonic() - self._last_line >= self.interval:
                self._last_line = time.monotonic()
                print(self._line(phase, elapsed), file=sys.stderr, flush=True)

    def _line(self, phase: str, elapsed: float) -> str:
        done, total = self._done[phase], self._total[phase]
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        at_once = f", {self._at_once} at once" if phase == "uploads" and self._at_once is not None else ""
        note = f"; {self._note}" if phase == "uploads" and self._note else ""
        return (f"{_LABELS.get(phase, phase)}: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%), "
                f"{rate:.1f}/s, {self._bytes[phase] / elapsed / 1e6:.2f} MB/s{at_once}, "
                f"ETA {int(eta // 60)}m{int(eta % 60):02d}s{note}")

    def logging_redirect(self) -> contextlib.AbstractContextManager[None]:
        """Log lines (-v) printed above the bars instead of through them."""
        if self.quiet or self.plain:
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm(loggers=[logging.getLogger("importer")], tqdm_class=tqdm)

    def pause(self, text: str | None) -> None:
        """Sending waits (--wait: the quota or the hours): say until when on the bar, or as a line; None: going on."""
        with self._lock:
            bar = self._bars.get("uploads")
            if bar is not None:
                bar.set_description_str(text or _LABELS["uploads"], refresh=True)
            elif not self.quiet:  # no bar (stderr is not a terminal, or the invites have not started yet)
                print(f"{_LABELS['uploads']}: {text or 'the wait is over, sending again'}", file=sys.stderr, flush=True)

    def finish(self, phase: str) -> None:
        bar = self._bars.pop(phase, None)
        if bar is not None:
            bar.close()
        self._done.pop(phase, None)

    def close(self) -> None:
        for phase in list(self._done):
            self.finish(phase)
