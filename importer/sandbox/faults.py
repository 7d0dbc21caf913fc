"""The sandbox's fault model: scripted actions (`Sandbox.inject`), random 500/503 and drops, and the
token-bucket rate limit. How a fault is carried out on the wire is `app.py` and `http.py`.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

RETRY_AFTER_DEFAULT = "1"
# Statuses whose answers carry Retry-After unless the injected action sets it.
RETRY_AFTER_STATUSES = frozenset({429, 503})

# Kinds of Fault.kind
STATUS = "status"
STORE_THEN_DROP = "store_then_drop"
STORE_THEN_STATUS = "store_then_status"
RESET_MID_BODY = "reset_mid_body"
HANG = "hang"

_STORE_THEN_STATUS_RE = re.compile(r"store_then_(5\d\d)")


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one request; `label` is what `requests_log()` shows under "fault"."""

    kind: str
    label: str
    status: int | None = None
    retry_after: str | None = None
    # Set only for ("status", code, body): the raw body, sent verbatim.
    body: bytes | None = None


def _check_status(code: object, *, lowest: int = 400) -> int:
    if isinstance(code, bool) or not isinstance(code, int) or not lowest <= code <= 599:
        raise ValueError(f"fault status must be an int from {lowest} to 599, got {code!r}")
    return code


def parse_action(action: object) -> Fault:
    """Turn one `inject` action into a Fault; a typo raises ValueError now rather than misbehaving later."""
    if isinstance(action, int) and not isinstance(action, bool):
        code = _check_status(action)
        retry = RETRY_AFTER_DEFAULT if code in RETRY_AFTER_STATUSES else None
        return Fault(STATUS, f"inject:{code}", status=code, retry_after=retry)
    if isinstance(action, str):
        if action in (STORE_THEN_DROP, RESET_MID_BODY, HANG):
            return Fault(action, f"inject:{action}")
        match = _STORE_THEN_STATUS_RE.fullmatch(action)
        if match:
            return Fault(STORE_THEN_STATUS, f"inject:{action}", status=int(match.group(1)))
    if isinstance(action, tuple):
        if len(action) == 2 and isinstance(action[1], str):
            code = _check_status(action[0])
            return Fault(STATUS, f"inject:{code}", status=code, retry_after=action[1])
        if len(action) == 3 and action[0] == "status" and isinstance(action[2], str | bytes):
            code = _check_status(action[1], lowest=200)
            body = action[2].encode("utf-8") if isinstance(action[2], str) else action[2]
            return Fault(STATUS, f"inject:status:{code}", status=code, body=body)
    raise ValueError(
        f"unknown fault action {action!r}: use a status int, (429|503, 'Retry-After'), ('status', code, body), "
        "'store_then_drop', 'store_then_500|502|504', 'reset_mid_body' or 'hang'"
    )


def default_detail(code: int) -> Any:
    """The FastAPI-style `detail` of an injected status without a custom body."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = f"HTTP {code}"
    if code == 422:
        return [{"loc": ["body"], "msg": phrase, "type": "value_error"}]
    return phrase


class FaultPlan:
    """Scripted faults (FIFO per path) first, then random ones; thread-safe and reproducible with a seed."""

    def __init__(
        self, *, paths: Collection[str], fail_rate: float, drop_rate: float, seed: int | None
    ) -> None:
        for name, rate in (("fail_rate", fail_rate), ("drop_rate", drop_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate!r}")
        self._paths = frozenset(paths)
        self._fail_rate = fail_rate
        self._drop_rate = drop_rate
        self._rng = random.Random(seed)
        self._queues: dict[str, deque[Fault]] = {path: deque() for path in self._paths}
        self._lock = threading.Lock()

    def inject(self, path: str, actions: Iterable[object]) -> None:
        if path not in self._paths:
            raise ValueError(f"faults can be injected on {sorted(self._paths)}, not {path!r}")
        # Parse everything before queueing anything, so a bad action leaves the plan unchanged.
        faults = [parse_action(action) for action in actions]
        with self._lock:
            self._queues[path].extend(faults)

    def pending(self, path: str) -> int:
        with self._lock:
            return len(self._queues.get(path, ()))

    def next_fault(self, path: str, *, droppable: bool) -> Fault | None:
        with self._lock:
            queue = self._queues.get(path)
            if queue:
                return queue.popleft()
            if self._fail_rate and self._rng.random() < self._fail_rate:
                code = 500 if self._rng.random() < 0.5 else 503
                retry = RETRY_AFTER_DEFAULT if code in RETRY_AFTER_STATUSES else None
                return Fault(STATUS, f"random:{code}", status=code, retry_after=retry)
            if droppable and self._drop_rate and self._rng.random() < self._drop_rate:
                return Fault(STORE_THEN_DROP, "random:store_then_drop")
        return None


class TokenBucket:
    """`rate` requests per second with a burst of one second's worth, so an evenly paced client never trips it."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate


class DailyQuota:
    """At most `limit` accepted uploads in any `window` seconds (rolling), as SaaS APIs ration their users.
    A request reserves its place before it is read, so concurrent uploads cannot overshoot the limit."""

    def __init__(self, limit: int, window: float = 86400.0, clock: Callable[[], float] = time.time) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"daily_quota must be a positive whole number, got {limit!r}")
        self.limit = limit
        self._window = window
        self._clock = clock
        self._accepted: deque[float] = deque()
        self._pending = 0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """0.0: go on (then `settle`); else the seconds until a slot frees."""
        with self._lock:
            now = self._clock()
            while self._accepted and self._accepted[0] <= now - self._window:
                self._accepted.popleft()
            if len(self._accepted) + self._pending < self.limit:
                self._pending += 1
                return 0.0
            # Full, counting the requests in progress as accepted: the oldest slot frees a window after it.
            oldest = self._accepted[0] if self._accepted else now
            return max(1.0, oldest + self._window - now)

    def settle(self, accepted: bool) -> None:
        with self._lock:
            self._pending -= 1
            if accepted:
                self._accepted.append(self._clock())


def retry_after_seconds(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
