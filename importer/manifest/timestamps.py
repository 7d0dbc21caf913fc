"""Call timestamps, vectorised: Unix seconds or milliseconds, ISO 8601, and the day-first or month-first
dates that spreadsheets write, with the time zone that times without an offset are read in."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .fields import as_text, no_messages, show

MIN_TIMESTAMP = 946_684_800  # 2000-01-01T00:00:00Z
FUTURE_TOLERANCE_SECONDS = 300  # clocks differ; a call "5 minutes from now" is a typo, not skew
_TS_HINT = "use Unix seconds, ISO 8601 such as 2025-11-25T14:30:00+01:00, or 25/11/2025 14:30"

# [0-9], not \\d: \\d also matches other scripts' digits, which no date or phone parser here expects.
_NUMBER = r"^([0-9]+)(?:\.[0-9]+)?$"
_TIME = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?"
_OFFSET = r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)"
_ISO = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}(?:[T ]{_TIME}{_OFFSET}?)?$"
_ISO_WITH_OFFSET = rf"[T ]{_TIME}{_OFFSET}$"
# Day/month/year (or month/day/year) with one separator used twice, and an optional time.
_DMY = (
    r"^([0-9]{1,2})([/.\-])([0-9]{1,2})\2([0-9]{4}|[0-9]{2})"
    r"(?:[ T]+([0-9]{1,2})[:hH]([0-9]{2})(?::([0-9]{2}))?)?$"
)
# Year first with slashes (yyyy/mm/dd), which some Excel locales write.
_YMD = r"^([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})(?:[ T]+([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?$"


def parse_timestamps(
    raw: pd.Series,
    *,
    timezone: str = "UTC",
    dayfirst: bool = True,
    now: dt.datetime | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (int64; 0 where invalid or empty) and error messages.

    Accepted: Unix seconds (up to 11 digits), Unix milliseconds (12-13 digits; the sub-second part is
    dropped, i.e. rounded down, as is any fraction of a second elsewhere), ISO 8601 with or without
    offset, `25/11/2025 14:30[:05]` with / . or - (day or month first by `dayfirst`), and yyyy/mm/dd.
    Times without an offset are in `timezone`. A local time that does not exist (the spring-forward gap)
    is an error; an ambiguous one (the autumn hour that happens twice) is the first occurrence, i.e.
    summer time, which is what a recorder that logs local wall-clock time most likely meant first.
    Each format is parsed as one vectorised group.
    """
    values = as_text(raw)
    n = len(values)
    seconds = np.zeros(n, dtype=np.int64)
    errors = no_messages(n)
    present = (values != "").to_numpy(dtype=bool)
    if not present.any():
        return seconds, errors
    tz = ZoneInfo(timezone)
    pending = present.copy()
    # Each group is matched only among the cells no earlier group took (most files use one format).
    number = _match_among(values, pending, _NUMBER)
    if number.any():
        _parse_numbers(values, number, seconds, errors)
        pending &= ~number
    upper = pd.Series("", index=values.index, dtype=object)
    if pending.any():
        upper[pending] = values[pending].str.upper()  # ISO allows t and z in lower case
    iso = _match_among(upper, pending, _ISO)
    if iso.any():
        _parse_iso(upper, values, iso, tz, timezone, seconds, errors)
        pending &= ~iso
    dmy = _match_among(values, pending, _DMY)
    if dmy.any():
        order = (2, 1, 0) if dayfirst else (2, 0, 1)  # (year, month, day) positions
        _parse_components(values, dmy, _DMY, order, dayfirst, tz, timezone, seconds, errors)
        pending &= ~dmy
    ymd = _match_among(values, pending, _YMD)
    if ymd.any():
        _parse_components(values, ymd, _YMD, (0, 1, 2), None, tz, timezone, seconds, errors)
        pending &= ~ymd
    for i in np.flatnonzero(pending):
        errors[i] = _excel_damage(values.iat[i]) or (
            f"not a date/time this tool can read: {show(values.iat[i])} ({_TS_HINT})")

    # Range checks on everything that parsed.
    ok = present & (errors == "")
    now_ts = int((now or dt.datetime.now(dt.UTC)).timestamp())
    too_old = ok & (seconds < MIN_TIMESTAMP)
    future = ok & (seconds > now_ts + FUTURE_TOLERANCE_SECONDS)
    for i in np.flatnonzero(too_old):
        errors[i] = f"before 2000: {show(values.iat[i])} is {_utc_text(int(seconds[i]))}"
    for i in np.flatnonzero(future):
        errors[i] = (
            f"in the future: {show(values.iat[i])} is {_utc_text(int(seconds[i]))} "
            "(check the date, and manifest.timezone)"
        )
    seconds[errors != ""] = 0
    return seconds, errors


def _match_among(values: pd.Series, among: np.ndarray, pattern: str) -> np.ndarray:
    """Full-match `pattern` on the cells selected by `among` only; False elsewhere."""
    out = np.zeros(len(values), dtype=bool)
    idx = np.flatnonzero(among)
    if len(idx):
        out[idx] = np.array(values.iloc[idx].astype(str).str.fullmatch(pattern), dtype=bool)
    return out


def _utc_text(seconds: int) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def _parse_numbers(values: pd.Series, mask: np.ndarray, seconds: np.ndarray, errors: np.ndarray) -> None:
    subset = values[mask]
    # Integer part: the cell itself, unless it has a fraction (then what precedes the dot; rounded down).
    fraction = np.array(subset.str.contains(".", regex=False), dtype=bool)
    digits = subset.copy()
    if fraction.any():
        digits[fraction] = subset[fraction].str.split(".", n=1).str[0]
    lengths = digits.str.len().to_numpy(dtype=np.int64)
    idx = np.flatnonzero(mask)
    # Seconds until the year 5138 have at most 11 digits; milliseconds since 2000 have 12 (until
    # 2001-09-09) or 13. Nothing else is a plausible call time.
    as_seconds = lengths <= 11
    as_millis = (lengths == 12) | (lengths == 13)
    if as_seconds.any():
        seconds[idx[as_seconds]] = digits[as_seconds].astype(np.int64).to_numpy()
    if as_millis.any():
        seconds[idx[as_millis]] = digits[as_millis].astype(np.int64).to_numpy() // 1000
    # 36526 to 73050 is 2000-01-01 to 2099-12-31 as an Excel date serial (days since 1899-12-30, the
    # fraction being the time of day): a date column Excel exported as a number.
    serial = np.flatnonzero(lengths == 5)
    for k in serial:
        message = _excel_damage(subset.iat[k])
        if message:
            errors[idx[k]] = message
    for k in np.flatnonzero(~(as_seconds | as_millis)):
        errors[idx[k]] = (
            f"{show(subset.iat[k])} has {lengths[k]} digits: Unix seconds have 10 digits and milliseconds 13"
        )


_SCIENTIFIC = re.compile(r"^([0-9](?:[.,][0-9]+)?)[eE]\+?([0-9]{1,2})$")
_DECIMAL_COMMA = re.compile(r"^([0-9]{9,13}),0+$")
_EXCEL_HINT = "format the column as text (or as a number with no decimals) in Excel, then export again"


def _excel_damage(value: str) -> str | None:
    """A message for a time Excel damaged on its way out, showing what it meant; None if it is not one."""
    text = value.strip()
    m = re.fullmatch(r"([0-9]{5})(?:[.,]([0-9]+))?", text)
    if m and 36526 <= int(m.group(1)) <= 73050:
        days = float(f"{m.group(1)}.{m.group(2) or 0}")
        meant = dt.datetime(1899, 12, 30) + dt.timedelta(days=days)
        meant = (meant + dt.timedelta(seconds=30)).replace(second=0, microsecond=0)  # serials round to the minute
        return (f"an Excel date serial ({show(text)} = {meant:%Y-%m-%d %H:%M}): format the column as a date or as "
                "text in Excel, then export again")
    m = _SCIENTIFIC.match(text)
    if m:
        number = float(m.group(1).replace(",", ".")) * 10 ** int(m.group(2))
        seconds = number / 1000 if number >= 1e11 else number
        about = _utc_text(int(seconds)) if 0 < seconds < 1e11 else "?"
        return (f"a number Excel shortened to scientific notation ({show(text)}, about {about}): its last digits "
                f"are lost; {_EXCEL_HINT}")
    m = _DECIMAL_COMMA.match(text)
    if m:
        digits = m.group(1)
        seconds = int(digits) // 1000 if len(digits) >= 12 else int(digits)
        return (f"a number with a decimal part added by Excel ({show(text)} = {_utc_text(seconds)}): {_EXCEL_HINT}, "
                "or remove the ',0'")
    return None


def _parse_iso(
    upper: pd.Series,
    values: pd.Series,
    mask: np.ndarray,
    tz: ZoneInfo,
    tz_name: str,
    seconds: np.ndarray,
    errors: np.ndarray,
) -> None:
    subset = upper[mask].str.replace(",", ".", regex=False)
    idx = np.flatnonzero(mask)
    has_offset = subset.str.contains(_ISO_WITH_OFFSET, regex=True).to_numpy(dtype=bool)
    if has_offset.any():
        parsed = pd.to_datetime(subset[has_offset], format="ISO8601", utc=True, errors="coerce")
        _store(parsed, idx[has_offset], values, seconds, errors, "not a valid date/time: {}")
    naive = ~has_offset
    if naive.any():
        parsed = pd.to_datetime(subset[naive], format="ISO8601", errors="coerce")
        _localize_and_store(
            parsed, idx[naive], values, tz, tz_name, seconds, errors, "not a valid date/time: {}"
        )


def _parse_components(
    values: pd.Series,
    mask: np.ndarray,
    pattern: str,
    order: tuple[int, int, int],
    dayfirst: bool | None,
    tz: ZoneInfo,
    tz_name: str,
    seconds: np.ndarray,
    errors: np.ndarray,
) -> None:
    """Dates written as separate numbers: build datetimes from the (year, month, day, h, m, s) columns."""
    parts = values[mask].str.extract(pattern)
    if pattern == _DMY:
        parts = parts[[0, 2, 3, 4, 5, 6]]  # drop the separator group
    parts.columns = range(6)
    numbers = parts.apply(pd.to_numeric, errors="coerce")
    year, month, day = numbers[order[0]], numbers[order[1]], numbers[order[2]]
    year = year.where(year >= 100, year + 2000)  # 24/11/25: two-digit years are 20yy (LibreOffice's French short date)
    comp = pd.DataFrame(
        {
            "year": year,
            "month": month,
            "day": day,
            "hour": numbers[3].fillna(0),
            "minute": numbers[4].fillna(0),
            "second": numbers[5].fillna(0),
        }
    )
    parsed = pd.to_datetime(comp, errors="coerce")
    # to_datetime adds hours, minutes and seconds as durations (24:00 would become the next day).
    out_of_range = ((comp["hour"] > 23) | (comp["minute"] > 59) | (comp["second"] > 59)).to_numpy(dtype=bool)
    if out_of_range.any():
        parsed[out_of_range] = pd.NaT
    idx = np.flatnonzero(mask)
    bad = parsed.isna().to_numpy(dtype=bool)
    if dayfirst is not None and bad.any():
        # Impossible under the setting: say so, and whether the other order would have worked, but never
        # swap silently (one swapped row in a file of day-first dates is a wrong date).
        swapped = comp.rename(columns={"month": "day", "day": "month"})
        other_ok = np.array(pd.to_datetime(swapped[comp.columns], errors="coerce").notna(), dtype=bool)
        other_ok &= ~out_of_range
        setting = "true" if dayfirst else "false"
        order_name = "day first" if dayfirst else "month first"
        for k in np.flatnonzero(bad):
            i = idx[k]
            if other_ok[k]:
                other = "the month first" if dayfirst else "the day first"
                errors[i] = (
                    f"impossible date when read {order_name} (manifest.dayfirst is {setting}): "
                    f"{show(values.iat[i])}; if the file writes {other}, set manifest.dayfirst: "
                    f"{'false' if dayfirst else 'true'}"
                )
            else:
                errors[i] = f"not a valid date/time: {show(values.iat[i])}"
    _localize_and_store(parsed, idx, values, tz, tz_name, seconds, errors, "not a valid date/time: {}")


def _localize_and_store(
    parsed: pd.Series,
    idx: np.ndarray,
    values: pd.Series,
    tz: ZoneInfo,
    tz_name: str,
    seconds: np.ndarray,
    errors: np.ndarray,
    invalid: str,
) -> None:
    was_valid = parsed.notna().to_numpy(dtype=bool)
    # ambiguous=True everywhere: in the repeated autumn hour take the first occurrence (summer time); the
    # flag is ignored for times that are not ambiguous.
    local = parsed.dt.tz_localize(tz, ambiguous=np.ones(len(parsed), dtype=bool), nonexistent="NaT")
    gap = was_valid & local.isna().to_numpy(dtype=bool)
    for k in np.flatnonzero(gap):
        i = idx[k]
        errors[i] = (
            f"{show(values.iat[i])} does not exist in {tz_name}: the clocks skip that hour when summer time "
            "starts; check the time"
        )
    ok = ~local.isna().to_numpy(dtype=bool)
    _store(local[ok], idx[ok], values, seconds, errors, invalid)
    for k in np.flatnonzero(~was_valid):
        i = idx[k]
        if not errors[i]:
            errors[i] = invalid.format(show(values.iat[i]))


def _store(
    parsed: pd.Series,
    idx: np.ndarray,
    values: pd.Series,
    seconds: np.ndarray,
    errors: np.ndarray,
    invalid: str,
) -> None:
    """Aware datetimes -> Unix seconds (rounded down); NaT -> the `invalid` message."""
    bad = parsed.isna().to_numpy(dtype=bool)
    good = ~bad
    if good.any():
        utc = parsed[good].dt.tz_convert("UTC").dt.tz_localize(None)
        secs = utc.to_numpy().astype("datetime64[s]").astype(np.int64)
        seconds[idx[good]] = secs
    for k in np.flatnonzero(bad):
        i = idx[k]
        if not errors[i]:
            errors[i] = invalid.format(show(values.iat[i]))
