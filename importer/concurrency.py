"""How many uploads to keep in flight: a pure limiter, driven by the clock and the events it is given.

Nothing here sleeps, locks or reads the time itself, so every rule is tested on a fake clock
(tests/test_concurrency.py). `admission.py` is the glue that feeds it from the run.

It climbs the goodput hill. Goodput is the body bytes the server acknowledged per second (transport.py; a
failed attempt's bytes are taken back), measured over a window (MEASURE s; shorter in slow start) that starts SETTLE s after
each change, so new requests are past their first burst. Each change is judged against the window before it:

- slow start: from 4, the limit doubles while goodput grows with it (at least GAIN of the proportional gain);
- a step up that did not pay (goodput grew less than that): back down to where it was, unless goodput still
  grew by STILL_GREW (then keep it: the link is nearly full); the knee is found, slow start ends;
- then every PROBE_EVERY windows a probe, judged against the mean of the windows held before it: 25% up
  (kept if it pays or still grew), or 25% down (kept only when goodput did not fall: the same goodput with
  fewer requests in flight); a rising latency shows as goodput that does not follow the limit, so the
  probes walk the limit back down;
- a 429, 503, 504, a timeout or a reset: x0.75 at once, and at most once until a window with progress
  follows (a burst of refusals, or an outage, is one signal, not twenty). The limit where the server pushed
  back is a wall: probes stay under it and try it again only after WALL_WINDOWS windows, so a hard server
  limit costs a refusal now and then, not every window.

Windows in which the limit was not used in full, or nothing moved (an outage, the end of the run) change
nothing. Other limits (a request rate, a byte rate, pacing) keep goodput flat: the probes up do not pay and
the limit stays where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SETTLE = 1.0  # seconds after a change before measuring: new requests connect and their TCP windows grow
MEASURE = 2.0  # seconds of measurement per window
FAST_SETTLE, FAST_MEASURE = 0.25, 0.75  # in slow start: a doubling is judged quickly, and is easy to judge
GAIN = 0.4  # a step up pays when goodput grows by at least this share of the step's proportional gain
STILL_GREW = 1.03  # ... or by 3% at least: kept, but the knee is near
HOLDS = 0.97  # a step down is kept only when goodput did not fall (within 3%: windows are noisy on a lossy link)
BACKOFF = 0.75  # multiplicative decrease on a refusal, timeout or reset
PROBE_EVERY = 3  # windows held between probes
WALL_WINDOWS = 10  # windows held just under a wall before trying it again


@dataclass(frozen=True)
class Change:
    """One change of the limit, for the log (-v) and the summary."""

    at: float
    old: int
    new: int
    reason: str


class FixedLimit:
    """`upload.workers: N`: exactly N, whatever happens (the same interface as the adaptive limit)."""

    adaptive = False

    def __init__(self, n: int, *, clock_start: float = 0.0) -> None:
        self.limit = n
        self.history: list[tuple[float, int]] = [(clock_start, n)]

    def in_flight(self, n: int, now: float) -> Change | None:
        return None

    def sent(self, nbytes: int, now: float) -> Change | None:
        return None

    def congestion(self, reason: str, now: float) -> Change | None:
        return None

    def poll(self, now: float) -> Change | None:
        return None


@dataclass
class _Window:
    start: float  # measuring starts here (SETTLE after the change that opened the window)
    in_flight: int
    bytes: int = 0
    peak: int = 0


@dataclass
class AdaptiveLimit:
    """`upload.workers: auto`: between `floor` and `ceiling` (upload.max_workers), starting at `initial`."""

    ceiling: int
    now: float
    initial: int = 4
    floor: int = 1
    adaptive: bool = field(default=True, init=False)
    limit: int = field(init=False)
    history: list[tuple[float, int]] = field(init=False)  # (time, limit) at the start and at each change

    def __post_init__(self) -> None:
        self.limit = max(self.floor, min(self.initial, self.ceiling))
        self.history = [(self.now, self.limit)]
        self._window = _Window(self.now + FAST_SETTLE, 0)
        self._slow_start = True
        self._can_back_off = True
        self._before: tuple[int, float] | None = None  # (limit, goodput) of the window before the last step
        self._at_limit: list[float] = []  # goodput of the windows held at the current limit
        self._held = 0  # windows since the last step
        self._probe_up = True  # probes alternate up and down
        self._wall: int | None = None  # where the server last pushed back
        self._under_wall = 0  # windows held just under the wall

    # --- events -----------------------------------------------------------------------------------

    def in_flight(self, n: int, now: float) -> Change | None:
        """The number of requests in flight changed (a row admitted or finished)."""
        w = self._window
        w.in_flight = n
        if now >= w.start:
            w.peak = max(w.peak, n)
        return self.poll(now)

    def sent(self, nbytes: int, now: float) -> Change | None:
        """Body bytes the server acknowledged (negative: a failed attempt's bytes taken back)."""
        if now > self._window.start:
            self._window.bytes += nbytes
        return self.poll(now)

    def congestion(self, reason: str, now: float) -> Change | None:
        """The server refused (429, 503, 504) or the path choked (timeout, reset)."""
        self._slow_start = False
        if not self._can_back_off:
            return None
        self._can_back_off = False
        self._wall, self._under_wall = self.limit, 0
        self._before = None  # the next window is a fresh reference, not the judge of a step
        return self._step(max(self.floor, int(self.limit * BACKOFF)), now, f"{reason}: backing off")

    def poll(self, now: float) -> Change | None:
        """Close the window when it is due and decide; call it at least every second or so."""
        w = self._window
        if w.peak < w.in_flight and now >= w.start:
            w.peak = w.in_flight
        if now < w.start + (FAST_MEASURE if self._slow_start else MEASURE):
            return None
        self._window = _Window(now, w.in_flight, peak=w.in_flight)
        if w.bytes <= 0:
            return None  # no progress: an outage, a pause, or nothing left to send
        self._can_back_off = True
        goodput = w.bytes / (now - w.start)
        if w.peak < self.limit:
            return None  # the limit was not used in full: nothing learnt about it
        self._held += 1
        self._at_limit.append(goodput)
        if self._wall is not None and self.limit >= self._wall:
            self._wall = None  # a whole window at the wall without pushback: it has moved
        before, self._before = self._before, None
        if before is not None:
            return self._judge(before, goodput, now)
        # Probes are judged against the mean of the windows held here: one noisy window does not set the bar.
        return self._probe(sum(self._at_limit[-5:]) / len(self._at_limit[-5:]), now)

    # --- decisions --------------------------------------------------------------------------------

    def _judge(self, before: tuple[int, float], goodput: float, now: float) -> Change | None:
        """The first window after a step, against the one before it."""
        old, was = before
        gain = goodput / was if was > 0 else 1.0
        mb = f"{was / 1e6:.2f} -> {goodput / 1e6:.2f} MB/s"
        if self.limit > old:
            pays = gain - 1 >= GAIN * (self.limit / old - 1)
            if pays and self._slow_start:
                return self._step(self.limit * 2, now, f"{mb} from {old} to {self.limit}: doubling (slow start)",
                                  judged=goodput)
            self._slow_start = False
            if pays or gain >= STILL_GREW:
                return None  # kept; probes go on from here
            return self._step(old, now, f"{mb} from {old} to {self.limit}: no gain, back to {old}")
        if gain >= HOLDS:
            return None  # the same goodput with fewer in flight: kept
        return self._step(old, now, f"{mb} from {old} to {self.limit}: goodput fell, back to {old}")

    def _probe(self, goodput: float, now: float) -> Change | None:
        if self._slow_start:  # the first window, at the initial limit
            return self._step(self.limit * 2, now, f"{goodput / 1e6:.2f} MB/s at {self.limit}: doubling "
                              "(slow start)", judged=goodput)
        wall = self._wall
        top = self.ceiling if wall is None else wall - 1
        if wall is not None and self.limit >= wall - 1:
            self._under_wall += 1
            if self._under_wall >= WALL_WINDOWS:
                self._under_wall = 0
                return self._step(wall, now, f"trying {wall} again (the server pushed back there)", judged=goodput)
        if self._held < PROBE_EVERY:
            return None
        go_up, self._probe_up = self._probe_up, not self._probe_up
        if go_up and self.limit < top:
            up = min(top, self.limit + max(1, self.limit // 4))
            return self._step(up, now, f"{goodput / 1e6:.2f} MB/s at {self.limit}: probing {up}", judged=goodput)
        if self.limit > self.floor and (wall is None or self.limit < wall - 1):  # under a wall: it is known
            down = max(self.floor, self.limit - max(1, self.limit // 4))
            return self._step(down, now, f"{goodput / 1e6:.2f} MB/s at {self.limit}: probing {down}",
                              judged=goodput)
        return None

    def _step(self, new: int, now: float, reason: str, judged: float | None = None) -> Change | None:
        new = max(self.floor, min(self.ceiling, new))
        self._held = 0
        self._at_limit = []
        if self.limit == self.ceiling:
            self._slow_start = False  # nowhere left to double to
        if new == self.limit:
            return None
        if judged is not None:
            self._before = (self.limit, judged)
        change = Change(now, self.limit, new, reason)
        self.limit = new
        self.history.append((now, new))
        self._window = _Window(now + (FAST_SETTLE if self._slow_start else SETTLE), self._window.in_flight)
        return change


@dataclass(frozen=True)
class Usage:
    """The range a run used, for the summary: lowest, highest, and the limit held longest in its second half."""

    adaptive: bool
    lowest: int
    highest: int
    settled: int
    changes: int


def usage(history: list[tuple[float, int]], end: float, *, adaptive: bool) -> Usage:
    """From (time, limit) steps, ending at `end`."""
    limits = [n for _, n in history]
    start = history[0][0]
    half = start + (end - start) / 2
    held: dict[int, float] = {}
    for (t, n), (t_next, _) in zip(history, [*history[1:], (end, 0)], strict=True):
        lo, hi = max(t, half), max(t_next, half)
        held[n] = held.get(n, 0.0) + (hi - lo)
    settled = max(held, key=lambda n: (held[n], -n)) if any(held.values()) else limits[-1]
    return Usage(adaptive, min(limits), max(limits), settled, len(history) - 1)


def parse_workers(raw: Any, what: str) -> int | str:
    """`auto` or a whole number (the range is checked with the other keys)."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise ConfigError(f"{what} must be auto or a whole number (got {raw!r})")
