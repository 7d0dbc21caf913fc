"""The concurrency limiter alone, on a fake clock: a simulated link or server feeds it events tick by tick.

Nothing here sleeps; each test states a world (a link of some capacity, a server that refuses above K at
once, requests that wait on a rate limit) and checks where the limit goes and what it cost.
"""

from __future__ import annotations

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
    usage,
)

WINDOW = SETTLE + MEASURE

TICK = 0.125  # exact in binary: windows of 0.5, 1 and 2 s hold whole ticks
MB = 1_000_000


class World:
    """Ticks of 0.1 s: every slot the limit allows is busy; `goodput(n)` says how many bytes/s n requests in
    flight get through; `refuses(n)` whether the server refuses one of them this tick."""

    def __init__(self, limiter: AdaptiveLimit, goodput: Callable[[int], float],
                 refuses: Callable[[int], bool] = lambda n: False) -> None:
        self.limiter = limiter
        self.goodput = goodput
        self.refuses = refuses
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
            self._note(self.limiter.sent(int(self.goodput(n) * TICK), self.now))
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


def test_starts_small_and_doubles_while_goodput_doubles_with_it():
    limiter = AdaptiveLimit(ceiling=32, now=0.0)
    assert limiter.limit == 4
    world = World(limiter, link(capacity=100 * MB, per_stream=1 * MB))  # room for 100 streams
    world.run(3 * (FAST_SETTLE + FAST_MEASURE) + 0.15)
    assert [(round(c.at), c.new) for c in world.changes] == [(1, 8), (2, 16), (3, 32)]  # a window each
    assert all("doubling (slow start)" in c.reason for c in world.changes)
    world.run(60)
    assert 24 <= limiter.limit <= 32  # never past the ceiling (upload.max_workers); probes may dip below it


def fill(world: World, capacity: float, seconds: float) -> float:
    """The share of the link used over `seconds`, tick by tick."""
    used = [world.goodput(n) / capacity for n in world.limits_over(seconds)]
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
    seen = world.limits_over(40)
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
