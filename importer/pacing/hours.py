"""`upload.hours`: the hours of the day in which uploads may start, in the manifest's time zone.

"19:00-07:30" is one window across midnight; "12:00-14:00,19:00-07:30" is two; seconds may be given
("19:00:30-07:30"). An end of "24:00" means midnight. A window only says when an upload may *start*: one that
started inside it finishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW = re.compile(rf"^\s*{_TIME}\s*-\s*{_TIME}\s*$")
EXAMPLE = '"19:00-07:30" (HH:MM-HH:MM, 24-hour clock; several windows separated by commas)'
DAY_SECONDS = 24 * 3600


class HoursError(ValueError):
    """`upload.hours` is not a list of HH:MM-HH:MM windows; the message says what is wrong."""


def _seconds(h: str, m: str, s: str | None, text: str, *, end: bool) -> int:
    hours, minutes, seconds = int(h), int(m), int(s or 0)
    if minutes > 59 or seconds > 59 or hours > 24 or (hours == 24 and (minutes or seconds or not end)):
        raise HoursError(f"{text!r} is not a time of day: use {EXAMPLE}")
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class SendingHours:
    """Windows as (start, end) seconds after midnight; end < start crosses midnight."""

    windows: tuple[tuple[int, int], ...]
    zone: ZoneInfo
    text: str

    def is_open(self, epoch: float) -> bool:
        local = datetime.fromtimestamp(epoch, self.zone)
        second = local.hour * 3600 + local.minute * 60 + local.second
        return any(_inside(second, start, end) for start, end in self.windows)

    def next_open(self, epoch: float) -> float:
        """The first moment at or after `epoch` when a window is open (epoch seconds)."""
        if self.is_open(epoch):
            return epoch
        local = datetime.fromtimestamp(epoch, self.zone)
        candidates = []
        for day in (0, 1, 2):  # two days ahead covers every window, even across a DST change
            date = (local + timedelta(days=day)).date()
            for start, _end in self.windows:
                at = datetime.combine(date, time(start // 3600, start // 60 % 60, start % 60), self.zone)
                if at.timestamp() > epoch:
                    candidates.append(at.timestamp())
        return min(candidates)

    def open_seconds_per_day(self) -> float:
        """How long the windows are open in a day (overlaps counted once), for the plan's estimate."""
        spans = []
        for start, end in self.windows:
            spans += [(start, end)] if start < end else [(start, DAY_SECONDS), (0, end)]
        total, reach = 0, 0
        for start, end in sorted(spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return float(total)


def _inside(second: int, start: int, end: int) -> bool:
    if start < end:
        return start <= second < end
    return second >= start or second < end  # across midnight


def parse_hours(text: str, zone: str) -> SendingHours:
    """Read `upload.hours`; raise HoursError naming what to change."""
    if not text.strip():
        raise HoursError(f"it is empty: use {EXAMPLE}, or null for any time")
    windows = []
    for part in (p.strip() for p in text.split(",")):
        match = _WINDOW.match(part)
        if not match:
            raise HoursError(f"{part!r} is not a window of hours: use {EXAMPLE}")
        g = match.groups()
        start = _seconds(g[0], g[1], g[2], part, end=False)
        end = _seconds(g[3], g[4], g[5], part, end=True)  # 24:00 stays 86400: up to midnight
        if start == end:
            raise HoursError(f"{part!r} starts and ends at the same time: for any time of day use null")
        windows.append((start, end))
    return SendingHours(tuple(windows), ZoneInfo(zone), text.strip())
