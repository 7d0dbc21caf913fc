"""How many uploads to keep in flight: a pure limiter, driven by the clock and the events it is given.

Nothing here sleeps, locks or reads the time itself, so every rule is tested on a fake clock
(tests/test_concurrency.py). `admission.py` is the glue that feeds it from the run.

It climbs the goodput hill. Goodput is the body bytes the server acknowledged per second (transport.py; a
failed attempt's bytes are taken back), measured over a window (MEASURE s; shorter in slow start) that starts
SETTLE s after each change, so new requests are past their first burst. With the bytes come what the
connections see of the path (TCP_INFO on Linux): their round trip against the lowest seen (the floor) and
their retransmissions. A window then says the path is
- full: the round trip is over the floor by QUEUE_SHARE + QUEUE_MIN, a queue is building at the bottleneck;
- lossy: not full, and at least LOSSY of the segments were retransmitted. Each stream is then held down by
  loss (about MSS / RTT x 1.22 / sqrt(loss)), so more streams help until the link is full, and goodput
  alone is a poor judge: a new stream runs far above its loss-bound rate for its first seconds, so the
  window before a step reads high and the step looks as if it did not pay;
- clean: neither (or not known: no TCP_INFO here). Goodput alone judges.

Each change is judged against the window before it:
- slow start: from 4, the limit doubles while goodput grows with it (at least GAIN of the proportional gain),
  or on a lossy path while goodput did not fall under FELL; a full path ends it unless goodput still grew,
  keeping the limit (new streams' first burst fills the queue for a moment: the probes down judge it later,
  on longer windows);
- a step up that did not pay (or that made the path full): back down to where it was, unless goodput still
  grew by STILL_GREW (then keep it: the link is nearly full); the knee is found, slow start ends;
- then every PROBE_EVERY windows a probe, judged against the mean of the windows held before it. On a lossy
  path 25% up after one window, kept unless goodput fell, and climbing on at once; on a full one 25% down, kept while goodput
  holds (the same goodput with fewer requests in flight), and on down while it stays full; a step down
  after which goodput fell marks a knee that probes down stay over for WALL_WINDOWS windows; on a clean path
  up and down in turn, but down only once there is a sign that fewer may do as well: a step up that did not
  pay, one down that held, or goodput at the limit fallen under SLOWER of its best (a rising latency shows
  as goodput that does not follow the limit, so the probes walk the limit back down). A lossy path is never
  probed down, nor a clean one whose every step up paid: that costs goodput and teaches nothing;
- a 429, 503, 504, a timeout or a reset: x0.75 at once, and at most once until a window with progress
  follows (a burst of refusals, or an outage, is one signal, not twenty). The limit where the server pushed
  back is a wall: probes stay under it and try it again only after WALL_WINDOWS windows, so a hard server
  limit costs a refusal now and then, not every window.

Windows in which the limit was not used in full, or nothing moved (an outage, the end of the run), or the
slots spent over IDLE of their time waiting on the tool's own gates (a request rate, a bandwidth cap, the
delay before a retry: `waited`) change nothing: the limit is not what binds there, and more requests would
only wait too. Other limits that are not reported (another client on the link) keep goodput flat: the probes
up do not pay and the limit stays where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SETTLE = 1.0  # seconds after a change before measuring: new requests connect and their TCP windows grow
MEASURE = 2.0  # seconds of measurement per window
FAST_SETTLE, FAST_MEASURE = 0.1, 0.5  # in slow start: a doubling is judged quickly, and is easy to judge
SLOWER = 0.8  # the last two windows at a limit fell under this share of its best: something got slower
GAIN = 0.4  # a step up pays when goodput grows by at least this share of the step's proportional gain
STILL_GREW = 1.03  # ... or by 3% at least: kept, but the knee is near
HOLDS = 0.97  # a step down is kept only when goodput did not fall (within 3%: windows are noisy on a lossy link)
FELL = 0.85  # on a lossy path a step up is kept unless goodput fell under this share
BACKOFF = 0.75  # multiplicative decrease on a refusal, timeout or reset
PROBE_EVERY = 3  # windows held between probes
WALL_WINDOWS = 10  # windows held just under a wall before trying it again
QUEUE_SHARE, QUEUE_MIN = 0.25, 0.005  # a round trip over floor x 1.25 + 5 ms: a queue at the bottleneck
LOSSY = 0.001  # at least 0.1% of the segments retransmitted: each stream is held down by loss
IDLE = 0.25  # a window whose slots waited on the tool's own gates for this share of their time is not judged

FULL, LOSSY_PATH, CLEAN = "full", "lossy", "clean"  # what a window says of the path


@dataclass(frozen=True)
class PathSample:
    """What one connection saw of the path since its last sample (transport.py reads it from TCP_INFO)."""

    rtt: float  # smoothed round trip now, seconds
    min_rtt: float  # the lowest round trip this connection has seen, seconds
    segs: int  # data segments sent since the last sample
    retrans: int  # segments lost and sent again since the last sample
    # The connection had nothing more to send (small bodies, a request's tail): its round trip then holds
    # the server's delayed ACK, not a queue, and is not used to judge the path.
    app_limited: bool = False


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

    def sent(self, nbytes: int, now: float, path: PathSample | None = None) -> Change | None:
        return None

    def waited(self, seconds: float, now: float) -> Change | None:
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
    rtt_sum: float = 0.0  # of the path samples in the window, each weighed by its acknowledged bytes
    rtt_n: int = 0  # their bytes
    segs: int = 0
    retrans: int = 0
    waited: float = 0.0  # slot-seconds spent on the tool's own gates


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
        self._probe_up = True  # on a clean path probes alternate up and down
        self._wall: int | None = None  # where the server last pushed back
        self._under_wall = 0  # windows held just under the wall
        self._knee: tuple[int, int] | None = None  # (a limit where goodput fell, windows left to remember it)
        self._rtt_floor: float | None = None  # the lowest round trip any connection has seen: the path's floor
        self._undone = False  # the last step up was undone: the next probe waits PROBE_EVERY windows
        self._flat = False  # a step up did not pay, or one down held: there may be more streams than needed

    # --- events -----------------------------------------------------------------------------------

    def in_flight(self, n: int, now: float) -> Change | None:
        """The number of requests in flight changed (a row admitted or finished)."""
        w = self._window
        w.in_flight = n
        if now >= w.start:
            w.peak = max(w.peak, n)
        return self.poll(now)

    def sent(self, nbytes: int, now: float, path: PathSample | None = None) -> Change | None:
        """Body bytes the server acknowledged (negative: a failed attempt's bytes taken back), and what the
        connection saw of the path meanwhile."""
        w = self._window
        if path is not None and path.min_rtt > 0:
            self._rtt_floor = path.min_rtt if self._rtt_floor is None else min(self._rtt_floor, path.min_rtt)
        if now > w.start:
            w.bytes += nbytes
            if path is not None:
                if not path.app_limited and nbytes > 0:  # weighed by bytes: the bulk of a body speaks
                    w.rtt_sum += path.rtt * nbytes
                    w.rtt_n += nbytes
                w.segs += path.segs
                w.retrans += path.retrans
        return self.poll(now)

    def waited(self, seconds: float, now: float) -> Change | None:
        """A slot was held `seconds` by the tool's own gates (the request rate, the bandwidth cap, a retry's
        delay), not by the server or the path."""
        self._window.waited += seconds
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
        if w.waited > IDLE * self.limit * (now - w.start):
            return None  # the slots waited on our own gates: the limit is not what binds
        path, words, lossy = self._path(w)
        self._held += 1
        self._at_limit.append(goodput)
        if self._knee is not None:
            self._knee = (self._knee[0], self._knee[1] - 1) if self._knee[1] > 1 else None
        if self._wall is not None and self.limit >= self._wall:
            self._wall = None  # a whole window at the wall without pushback: it has moved
        before, self._before = self._before, None
        if before is not None:
            if self._slow_start and path == FULL and lossy and goodput >= before[1] * STILL_GREW:
                path = LOSSY_PATH  # still growing: the queue may be the new streams' first burst
                words = words.replace("the path is full", "a queue, but goodput grew")
            return self._judge(before, goodput, path, words, now)
        recent = self._at_limit[-2:]
        if sum(recent) / len(recent) < SLOWER * max(self._at_limit):
            # Goodput fell at this limit: the server or the path got slower, and what came before is no
            # reference any more; fewer may now do as well.
            self._at_limit, self._flat = recent, True
        # Probes are judged against the mean of the windows held here: one noisy window does not set the bar.
        return self._probe(sum(self._at_limit[-5:]) / len(self._at_limit[-5:]), path, words, now)

    # --- decisions --------------------------------------------------------------------------------

    def _path(self, w: _Window) -> tuple[str, str, bool]:
        """What the window says of the path (FULL, LOSSY_PATH, CLEAN), for the log why, and whether it is
        lossy (a full path may be lossy too)."""
        if not w.segs and not w.rtt_n:
            return CLEAN, "", False  # no TCP_INFO: goodput alone judges
        loss = w.retrans / w.segs if w.segs > 0 else 0.0
        floor = self._rtt_floor
        rtt = w.rtt_sum / w.rtt_n if w.rtt_n and floor is not None else None
        words = f"{loss:.1%} retransmitted"
        if rtt is not None:
            words = f"rtt {rtt * 1e3:.0f} ms (floor {floor * 1e3:.0f}), " + words
        lossy = loss >= LOSSY
        if rtt is not None and floor is not None and rtt > floor * (1 + QUEUE_SHARE) + QUEUE_MIN:
            return FULL, words + ": the path is full", lossy
        return (LOSSY_PATH, words + ": a lossy path", True) if lossy else (CLEAN, words, False)

    def _judge(self, before: tuple[int, float], goodput: float, path: str, words: str,
               now: float) -> Change | None:
        """The first window after a step, against the one before it."""
        old, was = before
        gain = goodput / was if was > 0 else 1.0
        mb = f"{was / 1e6:.2f} -> {goodput / 1e6:.2f} MB/s from {old} to {self.limit}"
        if words:
            mb += f", {words}"
        if self.limit > old:
            pays = gain - 1 >= GAIN * (self.limit / old - 1)
            self._flat = not pays  # a knee is near: on a clean path probes down may find fewer that do as well
            if path != FULL and (pays or (path == LOSSY_PATH and gain >= FELL)):
                why = "" if pays else " (loss holds each stream down: more streams help)"
                if self._slow_start:
                    return self._step(self.limit * 2, now, f"{mb}{why}: doubling (slow start)", judged=goodput)
                if path == LOSSY_PATH:
                    self._undone = False
                    up = self._up()
                    return self._step(up, now, f"{mb}{why}: climbing to {up}", judged=goodput)
                return None  # kept; probes go on from here
            slow_start, self._slow_start = self._slow_start, False
            # In slow start a queue may be the new streams' first burst, and the window before read high for
            # the same reason: the link is full or nearly, so keep the streams; probes down will tell.
            if pays or gain >= STILL_GREW or (slow_start and path == FULL):
                return None  # kept: the link is nearly full
            self._undone = True
            return self._step(old, now, f"{mb}: no gain, back to {old}")
        if gain < HOLDS:
            self._knee = (self.limit, WALL_WINDOWS)  # probes down stay over it for a while
            return self._step(old, now, f"{mb}: goodput fell, back to {old}")
        self._flat = True  # the same goodput with fewer: fewer still may do
        if path == FULL and self.limit > self.floor:  # the same goodput with fewer, and still a queue: on down
            down = self._down()
            return self._step(down, now, f"{mb}: the same goodput with fewer, down to {down}", judged=goodput)
        return None  # the same goodput with fewer in flight: kept

    def _probe(self, goodput: float, path: str, words: str, now: float) -> Change | None:
        mb = f"{goodput / 1e6:.2f} MB/s at {self.limit}" + (f", {words}" if words else "")
        if self._slow_start:  # the first window, at the initial limit
            return self._step(self.limit * 2, now, f"{mb}: doubling (slow start)", judged=goodput)
        wall = self._wall
        if wall is not None and self.limit >= wall - 1:
            self._under_wall += 1
            if self._under_wall >= WALL_WINDOWS:
                self._under_wall = 0
                return self._step(wall, now, f"trying {wall} again (the server pushed back there)", judged=goodput)
        # A lossy path with room: on up after one window, unless a step up from here was just undone.
        if self._held < (1 if path == LOSSY_PATH and not self._undone else PROBE_EVERY):
            return None
        up, down = self._up(), self._down()
        if path == CLEAN:
            go_up, self._probe_up = self._probe_up, not self._probe_up
            if not go_up and (wall is not None and self.limit >= wall - 1):
                return None  # under a wall: it is known
            if not go_up and not self._flat:
                return None  # every step up paid and goodput holds: no sign that fewer would do as well
        else:
            go_up = path == LOSSY_PATH  # more streams help a lossy path; fewer may fill a full one
        if go_up and up > self.limit:
            return self._step(up, now, f"{mb}: probing {up}", judged=goodput)
        if not go_up and down < self.limit:
            return self._step(down, now, f"{mb}: probing {down}", judged=goodput)
        return None

    def _up(self) -> int:
        """25% up, to the ceiling or just under a wall."""
        top = self.ceiling if self._wall is None else self._wall - 1
        return max(self.limit, min(top, self.limit + max(1, self.limit // 4)))

    def _down(self) -> int:
        """25% down, but over a limit where goodput fell lately (the knee of a full, lossy link is sharp)."""
        down = max(self.floor, self.limit - max(1, self.limit // 4))
        if self._knee is not None:
            down = max(down, min(self.limit, self._knee[0] + 1))
        return down

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
