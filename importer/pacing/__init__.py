"""The pacing wing: how fast, how much a day, and at what hours a run may send.

- `Pacer` (pacer.py): the gate each upload passes before it starts: `upload.max_per_day` over a rolling 24 h
  counted from the ledger, `upload.hours`, and the API's own quota (a very long Retry-After); it stops the run
  or, with `upload.wait`, waits for the next slot.
- `ByteBucket` (bucket.py): `upload.max_mb_per_second`, shared by every worker, paid as the body streams.
- `parse_hours` (hours.py): reads and checks `upload.hours`.
- `estimate_lines` (estimate.py): the dry-run plan's finish estimate under these limits.

Pure decisions on an injectable clock; the only I/O is the ledger count handed in as a function.
"""

from __future__ import annotations

from .bucket import ByteBucket
from .estimate import Limits, estimate_lines
from .hours import HoursError, SendingHours, parse_hours
from .pacer import Pacer, Pause, SystemClock, local_time
from .quota import DAY, next_quota_slot

__all__ = [
    "DAY",
    "ByteBucket",
    "HoursError",
    "Limits",
    "Pacer",
    "Pause",
    "SendingHours",
    "SystemClock",
    "estimate_lines",
    "local_time",
    "next_quota_slot",
    "parse_hours",
]
