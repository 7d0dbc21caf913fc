"""`upload.max_per_day`: a rolling 24 h budget, counted from the ledger so that it holds across runs (and,
on a shared ledger, across every run of the fleet)."""

from __future__ import annotations

from collections.abc import Callable

DAY = 24 * 3600.0

CountSince = Callable[[float], int]  # the ledger's count_uploaded_since(epoch_seconds) -> int


def next_quota_slot(count_since: CountSince, limit: int, now: float) -> float:
    """The first moment after `now` at which fewer than `limit` uploads fall in the last 24 h.

    The ledger only counts (so that any backend can answer it with one indexed query); the moment is found
    by bisection on the start of the window, to the second, erring late: a rerun at that time finds a slot.
    """
    lo, hi = now - DAY, now
    if count_since(hi) >= limit:  # uploads stamped in the future (a clock moved back): a day from now
        return now + DAY
    while hi - lo > 1.0:
        mid = (lo + hi) / 2
        if count_since(mid) >= limit:
            lo = mid
        else:
            hi = mid
    return hi + DAY
