"""The dry-run plan's finish estimate: how long the limits in force make the job, and roughly when it ends.

The slowest of the limits decides: the request rate, the bandwidth cap, the daily quota, the sending hours,
and the workers (whose pace is the API's; an upload is assumed to take about a second, and said so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .bucket import MB
from .hours import SendingHours
from .quota import DAY

ASSUMED_SECONDS_PER_UPLOAD = 1.0


@dataclass(frozen=True)
class Limits:
    workers: int
    max_per_second: float = 0.0
    max_mb_per_second: float = 0.0
    max_per_day: int = 0
    hours: SendingHours | None = None
    used_today: int = 0  # uploads already counted in the last 24 h (the ledger)


def estimate_lines(calls: int, nbytes: int, limits: Limits, *, now: float, zone: ZoneInfo) -> list[str]:
    """The plan's lines about pace: one per limit in force, then the estimate."""
    if calls <= 0:
        return []
    mean_bytes = nbytes / calls
    # calls per second while sending, each limit on its own: (calls/s, words)
    paces = [(limits.workers / ASSUMED_SECONDS_PER_UPLOAD,
              f"{limits.workers} workers at about {ASSUMED_SECONDS_PER_UPLOAD:g} s an upload")]
    if limits.max_per_second:
        paces.append((limits.max_per_second, f"at most {limits.max_per_second:g} calls/s"))
    if limits.max_mb_per_second and mean_bytes:
        paces.append((limits.max_mb_per_second * MB / mean_bytes,
                      f"at most {limits.max_mb_per_second:g} MB/s ({_size(mean_bytes)} a call)"))
    per_second, pace_words = min(paces)
    open_seconds = limits.hours.open_seconds_per_day() if limits.hours else DAY
    per_day, binding = per_second * open_seconds, pace_words
    if limits.hours:
        binding = f"{pace_words}, {open_seconds / 3600:g} h a day ({limits.hours.text})"
    if limits.max_per_day and limits.max_per_day < per_day:
        per_day, binding = float(limits.max_per_day), f"at most {limits.max_per_day:,} a day"
    lines = [f"  {'pace:' if i == 0 else '':<20}{line}" for i, (_, line) in enumerate(sorted(paces, reverse=True))]
    if limits.hours:
        lines.append(f"  sending hours:      {limits.hours.text} ({open_seconds / 3600:g} h a day, "
                     f"{limits.hours.zone.key})")
    if limits.max_per_day:
        lines.append(f"  daily quota:        {limits.max_per_day:,} in any 24 h ({limits.used_today:,} used now)")
    start = limits.hours.next_open(now) if limits.hours else now
    # Under a binding quota the uploads already in the window hold their slots for up to a day: work ahead.
    backlog = limits.used_today if limits.max_per_day and per_day == limits.max_per_day else 0
    # Within the first day the pace alone decides; beyond it, whole days at the daily rate.
    seconds = calls / per_second if calls + backlog <= per_day else (calls + backlog) / per_day * DAY
    finish = start + seconds
    if seconds < DAY:
        around = datetime.fromtimestamp(round(finish / 60) * 60, zone).strftime("%Y-%m-%d %H:%M %Z")
        lines.append(f"  finish estimate:    {binding}: about {_duration(seconds)}, finishing around {around}")
    else:
        day = datetime.fromtimestamp(finish, zone).date().isoformat()
        lines.append(f"  finish estimate:    {binding}: about {seconds / DAY:,.0f} days, finishing around {day}")
    return lines


def _size(nbytes: float) -> str:
    return f"{nbytes / MB:.1f} MB" if nbytes >= 100_000 else f"{nbytes / 1000:.0f} kB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"
