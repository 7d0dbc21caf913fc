"""The concurrency limiter alone, on a fake clock: a simulated link or server feeds it events tick by tick.

Nothing here sleeps; each test states a world (a link of some capacity, a server that refuses above K at
once, requests that wait on a rate limit) and checks where the limit goes and what it cost.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from importer.concurrency import (
    FAST_MEASURE,
    FAST_SETTLE,
    MEASURE,
    SETTLE,
    WALL_WINDOWS,
    AdaptiveLimit,
    FixedLimit,
    PathSample,
    usage,
)

WINDOW = SETTLE + MEASURE

TICK = 0.125  # exact in binary: windows of 0.5, 1 and 2 s hold whole ticks
MB = 1_000_000


class World:
    """Ticks of TICK s: every slot the limit allows is busy; `goodput(n)` says how many bytes/s n requests in
    flight get through; `refuses(n)` whether the server refuses one of them this tick; `path(n)`, when given,
    what the connections see of the path (TCP_INFO); `waits(n)` the slot-seconds per second they spend on
    the tool's own gates (a request rate, a bandwidth cap)."""

    def __init__(self, limiter: AdaptiveLimit, goodput: Callable[[int], float],
                 refuses: Callable[[int], bool] = lambda n: False,
                 path: Callable[[int], PathSample] | None = None,
                 waits: Callable[[int], float] | None = None) -> None:
        self.limiter = limiter
        self.goodput = goodput
        self.refuses = refuses
        self.path = path
        self.waits = waits
        self.now = limiter.now
        self.refusals = 0
        self.changes: list = []

    def run(self, seconds: float, *, busy: bool = True) -> None:
        for _ in range(round(seconds / TICK)):
            self.now += TICK
            n = self.limiter.limit if busy else 0
            self._note(self.limiter.in_flight(n, self.now))
            if busy and self.refuses(n):
                self.refusals += 1
                self._note(self.limiter.congestion("HTTP 429 (too many requests)", self.now))
                n = min(n, self.limiter.limit)
            path = self.path(n) if self.path and n else None
            self._note(self.limiter.sent(int(self.goodput(n) * TICK), self.now, path))
            if self.waits is not None and n:
                self._note(self.limiter.waited(self.waits(n) * TICK, self.now))
            self._note(self.limiter.poll(self.now))

    def _note(self, change) -> None:
        if change is not None:
            self.changes.append(change)

    def limits_over(self, seconds: float) -> list[int]:
        seen = []
        for _ in range(round(seconds / TICK)):
            self.run(TICK)
            seen.append(self.limiter.limit)
        return seen


def link(capacity: float, per_stream: float) -> Callable[[int], float]:
    """A lossy uplink: each stream is held to `per_stream` by loss, all together to `capacity`."""
    return lambda n: min(n * per_stream, capacity)


RTT = 0.040


def seen_path(capacity: float, loss: float = 0.005) -> Callable[[float], PathSample]:
    """What a connection sees when streams want `demand` bytes/s of a link of `capacity`: over it, a queue
    (the round trip grows with the excess, as measured through netlab: 24 streams that want 1.2 x the link
    see about 48 ms for 40), and the path's random loss."""
    return lambda demand: PathSample(rtt=RTT * max(1.0, demand / capacity), min_rtt=RTT, segs=1000,
                                     retrans=round(1000 * loss))


def lossy_world(limiter: AdaptiveLimit, capacity: float, per_stream: float, loss: float = 0.005) -> World:
    path = seen_path(capacity, loss)
    return World(limiter, link(capacity, per_stream), path=lambda n: path(n * per_stream))


class StreamsWorld(World):
    """A lossy link as TCP makes it (netlab, CUBIC, 0.5% loss): a new stream runs far above its loss-bound
    rate for its first seconds (slow start, before the losses catch up with it), and every window is noisy
    (+-15%, a new draw each second), as on the two loaded cores the benchmarks ran on."""

    def __init__(self, limiter: AdaptiveLimit, capacity: float, per_stream: float, seed: int) -> None:
        super().__init__(limiter, self._goodput, path=self._path)
        self.capacity, self.per_stream = capacity, per_stream
        self.starts: list[float] = []
        self.rng = random.Random(seed)
        self.noise, self.noise_until = 1.0, 0.0
        self.seen = seen_path(capacity)

    def _demand(self, n: int) -> float:
        self.starts = self.starts[:n] + [self.now] * (n - len(self.starts))  # the newest go first
        return sum(self.per_stream * (1 + 2 * math.exp(-(self.now - t) / 1.5)) for t in self.starts)

    def _goodput(self, n: int) -> float:
        if self.now >= self.noise_until:
            self.noise, self.noise_until = self.rng.uniform(0.85, 1.15), self.now + 1
        return min(self._demand(n), self.capacity) * self.noise

    def _path(self, n: int) -> PathSample:
        return self.seen(self._demand(n))


def test_starts_small_and_doubles_while_goodput_doubles_with_it():
    limiter = AdaptiveLimit(ceiling=32, now=0.0)
    assert limiter.limit == 4
    world = World(limiter, link(capacity=100 * MB, per_stream=1 * MB))  # room for 100 streams
    window = FAST_SETTLE + FAST_MEASURE
    world.run(3 * window + 0.15)
    assert [c.new for c in world.changes] == [8, 16, 32]  # a window each
    assert [round(c.at / window) for c in world.changes] == [1, 2, 3]
    assert all("doubling (slow start)" in c.reason for c in world.changes)
    world.run(60)
    assert 24 <= limiter.limit <= 32  # never past the ceiling (upload.max_workers); probes may dip below it


def fill(world: World, capacity: float, seconds: float) -> float:
    """The share of the link used over `seconds`, tick by tick (by the streams' steady, loss-bound rate)."""
    per_stream = getattr(world, "per_stream", None)
    rate = world.goodput if per_stream is None else (lambda n: min(n * per_stream, capacity))
    used = [rate(n) / capacity for n in world.limits_over(seconds)]
    return sum(used) / len(used)


@pytest.mark.parametrize("knee", [3, 5, 12, 20])
def test_fills_a_lossy_link_and_stops_growing_once_it_is_full(knee):
    per_stream = 0.6 * MB
    capacity = knee * per_stream
    world = World(AdaptiveLimit(ceiling=32, now=0.0), link(capacity=capacity, per_stream=per_stream))
    assert fill(world, capacity, 20) >= 0.9  # the ramp included
    assert fill(world, capacity, 300) >= 0.95  # then full, but for the probes below the knee
    seen = world.limits_over(120)
    assert max(seen) <= max(knee * 2, 8)  # and not much more: steps up that do not pay are undone
    assert world.refusals == 0


def test_a_rate_limit_elsewhere_bounds_it_more_requests_only_wait():
    # 20 calls/s of 50 KB whatever the concurrency (max_per_second, a pacing gate): requests wait.
    world = World(AdaptiveLimit(ceiling=32, now=0.0), lambda n: 20 * 50_000 if n else 0)
    world.run(120)
    assert world.limiter.limit <= 5
    assert max(new for _, new in world.limiter.history) <= 8  # 8 was tried once, did not pay, was undone
    assert any("no gain, back to 4" in c.reason for c in world.changes)


def test_settles_at_or_under_a_server_limit_with_few_refusals():
    k = 6
    world = World(AdaptiveLimit(ceiling=32, now=0.0), link(capacity=1e12, per_stream=1 * MB),
                  refuses=lambda n: n > k)
    world.run(30)
    seen = world.limits_over(300)
    assert sum(1 for n in seen if n <= k) / len(seen) > 0.9  # at or under K nearly all the time
    assert usage(world.limiter.history, world.now, adaptive=True).settled == k
    # One refusal per try of the wall, every WALL_WINDOWS windows, plus the first overshoots.
    assert world.refusals <= 330 / (WALL_WINDOWS * WINDOW) + 4


def test_a_burst_of_refusals_is_one_backoff_until_progress_resumes():
    limiter = AdaptiveLimit(ceiling=32, now=0.0, initial=20)
    changes = [limiter.congestion("HTTP 503 (busy)", 0.1 + i / 100) for i in range(20)]
    assert [c.new for c in changes if c] == [15]  # x0.75 once, not twenty times
    assert "HTTP 503" in changes[0].reason


def test_an_outage_changes_nothing_and_progress_rearms_the_backoff():
    limiter = AdaptiveLimit(ceiling=32, now=0.0, initial=16)
    world = World(limiter, lambda n: 0.0)  # the API answers nothing: no bytes move
    world.run(60)
    assert limiter.limit == 16 and world.changes == []
    assert limiter.congestion("connection timed out", world.now).new == 12
    assert limiter.congestion("connection timed out", world.now + 5) is None  # still the same outage
    world.goodput = link(capacity=100 * MB, per_stream=1 * MB)
    world.run(WINDOW + 0.15)
    assert limiter.congestion("connection timed out", world.now) is not None


def test_when_the_path_gets_slower_the_probes_walk_the_limit_down():
    limiter = AdaptiveLimit(ceiling=32, now=0.0, initial=24)
    world = World(limiter, link(capacity=100 * MB, per_stream=1 * MB))
    world.run(10)
    world.goodput = link(capacity=4 * MB, per_stream=1 * MB)  # the link now fills with 4: latency rises above
    world.run(120)
    assert limiter.limit <= 12
    assert any("probing" in c.reason for c in world.changes)


def test_after_backing_off_it_stays_under_the_wall_then_tries_it_again():
    limiter = AdaptiveLimit(ceiling=32, now=0.0, initial=24)
    world = World(limiter, link(capacity=1e12, per_stream=1 * MB))
    world.run(0.3)
    limiter.congestion("HTTP 429 (too many requests)", world.now)  # pushed back at 24
    assert limiter.limit == 18
    seen = world.limits_over(30)
    assert max(seen) == 23 and 18 in seen  # back up by probes, but under the wall
    world.run(WALL_WINDOWS * WINDOW + 2)
    assert any("trying 24 again" in c.reason for c in world.changes)


def test_idle_slots_do_not_make_it_grow():
    limiter = AdaptiveLimit(ceiling=32, now=0.0)
    world = World(limiter, link(capacity=100 * MB, per_stream=1 * MB))
    world.refuses = lambda n: False
    now = 0.0
    for _ in range(50):  # 2 requests in flight, far under the limit of 4: nothing to learn about 8
        now += TICK
        limiter.in_flight(2, now)
        limiter.sent(int(2 * MB * TICK), now)
        limiter.poll(now)
    assert limiter.limit == 4


def test_a_fixed_number_is_exactly_that_many():
    fixed = FixedLimit(8)
    assert fixed.congestion("HTTP 429 (too many requests)", 1.0) is None
    assert fixed.poll(100.0) is None and fixed.limit == 8
    u = usage(fixed.history, 10.0, adaptive=False)
    assert (u.lowest, u.highest, u.settled, u.changes, u.adaptive) == (8, 8, 8, 0, False)


def test_usage_reports_the_range_and_the_limit_held_longest_in_the_second_half():
    history = [(0.0, 4), (1.0, 8), (2.0, 16), (3.0, 12), (50.0, 13), (52.0, 12)]
    u = usage(history, 100.0, adaptive=True)
    assert (u.lowest, u.highest, u.settled, u.changes) == (4, 16, 12, 5)


# --- what the connections see of the path (TCP_INFO) -------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_fills_a_lossy_link_whose_new_streams_start_fast_and_whose_windows_are_noisy(seed):
    # netlab's office uplink: 12 MB/s, 0.6 MB/s per stream: 20 streams fill it. The window before each
    # doubling reads high (its new streams are still in slow start), so goodput alone says "no gain".
    capacity = 12 * MB
    world = StreamsWorld(AdaptiveLimit(ceiling=32, now=0.0), capacity=capacity, per_stream=0.6 * MB, seed=seed)
    # The loss-bound rate of the streams in use, against the link (the 200 x 2 MB benchmark lasts ~35 s).
    assert fill(world, capacity, 40) >= 0.93  # the ramp included
    assert fill(world, capacity, 300) >= 0.97
    assert world.limiter.limit >= 20
    assert world.refusals == 0


def test_a_lossy_path_with_room_is_never_probed_down():
    world = lossy_world(AdaptiveLimit(ceiling=32, now=0.0), capacity=100 * MB, per_stream=0.6 * MB)
    world.run(10)
    assert world.limiter.limit == 32
    assert set(world.limits_over(300)) == {32}  # a probe down costs goodput and teaches nothing here


@pytest.mark.parametrize("knee", [3, 12, 20])
def test_on_a_full_path_it_walks_down_to_about_the_streams_that_fill_it(knee):
    per_stream = 0.6 * MB
    capacity = knee * per_stream
    world = lossy_world(AdaptiveLimit(ceiling=32, now=0.0, initial=32), capacity=capacity, per_stream=per_stream)
    world.run(120)
    seen = world.limits_over(300)
    # The round trip says the link is full: fewer streams keep it full. It settles where the queue is gone
    # (the queue shows from 1.375 x the knee here) and probes just over it now and then.
    assert usage(world.limiter.history, world.now, adaptive=True).settled <= knee * 1.375
    assert max(seen) <= knee * 1.375 * 1.25 + 1
    assert sum(min(n * per_stream, capacity) for n in seen) / len(seen) >= 0.95 * capacity
    assert any("the path is full" in c.reason for c in world.changes)


def test_when_the_path_fills_up_the_round_trip_walks_the_limit_down_at_once():
    limiter = AdaptiveLimit(ceiling=32, now=0.0, initial=24)
    world = lossy_world(limiter, capacity=100 * MB, per_stream=1 * MB)
    world.run(10)
    world.path = lambda n: seen_path(4 * MB)(n * 1 * MB)  # 4 streams fill the link now
    world.goodput = link(capacity=4 * MB, per_stream=1 * MB)
    world.run(60)
    assert limiter.limit <= 6
    downs = [c for c in world.changes if c.new < c.old]
    assert downs and all("rtt" in c.reason for c in downs)  # -v says what it saw


def test_slots_that_wait_on_our_own_gates_are_not_judged_even_on_a_lossy_path():
    # max_per_second: 20 calls/s of 50 KB whatever the concurrency; the slots spend 90% of their time in the
    # rate limiter. On a lossy path a flat goodput would otherwise read as "more streams help".
    path = seen_path(100 * MB)
    world = World(AdaptiveLimit(ceiling=32, now=0.0), lambda n: 20 * 50_000, path=lambda n: path(1 * MB),
                  waits=lambda n: 0.9 * n)
    world.run(120)
    assert world.limiter.limit == 4 and world.changes == []
    world.waits = None  # the rate limit lifted: the link is used again, and judged again
    world.goodput = link(capacity=100 * MB, per_stream=0.6 * MB)
    world.run(10)
    assert world.limiter.limit == 32


def test_a_step_down_past_a_sharp_knee_is_not_tried_again_and_again():
    # 26 streams fill the link; past it the queue shows at once (a sharp knee). A probe from 32 down to 24
    # loses goodput; the next probes down stay over 24 for a while (and find 26).
    per_stream, capacity = 0.6 * MB, 26 * 0.6 * MB
    def path(n: int) -> PathSample:
        return PathSample(rtt=RTT * (1 + 3 * max(0.0, n * per_stream / capacity - 1)), min_rtt=RTT, segs=1000,
                          retrans=5)
    world = World(AdaptiveLimit(ceiling=32, now=0.0, initial=32), link(capacity, per_stream), path=path)
    seen = world.limits_over(300)
    fell = [c for c in world.changes if "goodput fell" in c.reason]
    assert 1 <= len(fell) <= 2 * 300 / (WALL_WINDOWS * WINDOW)  # about two per knee remembered, not one a probe
    assert sum(1 for n in seen if n >= 26) / len(seen) >= 0.95


def test_a_clean_path_whose_every_step_up_paid_is_not_probed_down():
    # Requests bound by the server's latency (small calls): goodput follows the limit up to the ceiling.
    # A probe down would cost a quarter of it for a window and teach nothing.
    world = World(AdaptiveLimit(ceiling=16, now=0.0), lambda n: n * 200_000)
    world.run(5)
    assert world.limiter.limit == 16
    assert set(world.limits_over(300)) == {16}
    world.goodput = lambda n: n * 20_000  # the server gets 10 x slower: now probes down may find fewer
    world.run(60)
    assert any("probing 12" in c.reason for c in world.changes)
