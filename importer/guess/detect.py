"""Guessing a config from a manifest: the sheet and header row, the column mapping, phone columns, dayfirst
and the time zone, each from the file itself. Reading is the manifest wing's (the same encoding and
delimiter detection a run uses), so what `init` reads is what `validate` will read."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..config import Config
from ..errors import ManifestError
from ..manifest import RawTable, is_french, match_headers, normalize_phones, read_table
from .model import Guess

HEADER_SEARCH_ROWS = 20  # a header below this many title rows is not looked for
SAMPLE = 500  # cells looked at per column
PHONE_SHARE = 0.8  # a column is phone-shaped when this share of its sampled cells look like numbers...
VALID_SHARE = 0.5  # ...and a phone column when this share are valid ones (validate then names the others)
_PHONE_LIKE = re.compile(r"^\+?[0-9 ().\-/]{6,20}$")
_DATE = re.compile(r"^\s*([0-9]{1,2})[/.\-]([0-9]{1,2})[/.\-]([0-9]{2,4})\b")
_OFFSET = re.compile(r"(Z|[+-][0-9]{2}:?[0-9]{2})$")
REGIONS = ("FR", "BE", "CH", "GB", "US", "CA", "DE", "ES", "IT", "NL")  # tried in this order; ties keep the first


def guess_config(manifest: Path) -> Guess:
    """Read `manifest` (CSV or XLSX) and guess its config. ManifestError when it cannot be read at all."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"manifest not found: {manifest}")
    sheets = _sheet_names(manifest)
    best: tuple[int, str | None, RawTable, int] | None = None
    for sheet in sheets or [None]:
        table, offset = _find_header(manifest, sheet)
        found = len(match_headers(table.headers))
        if best is None or found > best[0]:
            best = (found, sheet, table, offset)
    assert best is not None
    _, sheet, table, offset = best
    return _guess_from(manifest, table, sheet, tuple(sheets), offset > 0)


def _sheet_names(path: Path) -> list[str]:
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return []
    try:
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True)
    except Exception:  # damaged: read_table says why, in the loader's words
        return []
    try:
        return [ws.title for ws in wb.worksheets if ws.sheet_state == "visible"] or list(wb.sheetnames)
    finally:
        wb.close()


def _find_header(path: Path, sheet: str | None) -> tuple[RawTable, int]:
    """The table read with its real header: the first of the first rows that names most fields (title
    rows above it skipped). Returns the table and how many non-empty rows were skipped."""
    cfg = Config()
    table = read_table(path, replace(cfg, manifest=replace(cfg.manifest, sheet=sheet)))
    top = table.data.head(HEADER_SEARCH_ROWS)
    candidates = [table.headers] + [[str(c) for c in r] for r in top.itertuples(index=False, name=None)]
    scores = [len(match_headers(row)) for row in candidates]
    k = max(range(len(candidates)), key=lambda i: (scores[i], -i))
    if k == 0 or scores[k] <= scores[0]:
        return table, 0
    # The header is data row k-1: what the loader does with `manifest.header_row` set to its row number.
    return replace(table, headers=candidates[k], data=table.data.iloc[k:], lines=table.lines[k:],
                   header_row=int(table.lines[k - 1])), k


def _guess_from(path: Path, table: RawTable, sheet: str | None, sheets: tuple[str, ...], titled: bool) -> Guess:
    headers = [h for h in table.headers if h.strip()]
    found = match_headers(headers)
    mapping = {f: h.strip() for f, (h, _) in found.items()}
    column = {h: j for j, h in enumerate(table.headers)}
    data = table.data
    if len(data):
        blank = data.apply(lambda c: c.str.strip().eq("")).all(axis=1)
        data = data[~blank]
    used = {found[f][0] for f in found}
    others = [h for h in headers if h not in used and not h.strip().casefold().startswith("import_")]
    samples = {h: _sample(data[column[h]]) for h in others} if len(data.columns) else {}
    french_headers = is_french(headers)
    phones, region = _phone_columns(samples, prefer_fr=french_headers)
    stamp = _sample(data[column[found["conversation_timestamp"][0]]]) if "conversation_timestamp" in found else []
    dayfirst, dayfirst_reason = _dayfirst(stamp)
    timezone, timezone_reason = _timezone(french_headers, region if phones else None, stamp)
    notes = []
    if "conversation_timestamp" in found and dayfirst_reason.startswith("the dates disagree"):
        notes.append(dayfirst_reason)
    return Guess(
        manifest=path,
        mapping=mapping,
        rows=int(len(data)),
        header_row=table.header_row,
        title_rows=titled,
        encoding=None if table.encoding == "xlsx" else table.encoding,
        delimiter=None if table.encoding == "xlsx" else table.delimiter,
        sheet=sheet,
        sheets=sheets,
        phone_columns=tuple(h.strip() for h in phones),
        default_region=region,
        dayfirst=dayfirst,
        dayfirst_reason=dayfirst_reason,
        timezone=timezone,
        timezone_reason=timezone_reason,
        metadata=tuple(h.strip() for h in others),
        notes=tuple(notes),
    )


def _sample(column: pd.Series) -> list[str]:
    values = column.astype(str).str.strip()
    return values[values != ""].head(SAMPLE).tolist()


def _phone_columns(samples: dict[str, list[str]], prefer_fr: bool) -> tuple[list[str], str]:
    """The columns whose cells are phone numbers, and the region they read best in (the one `validate`
    will use: metadata.default_region)."""
    shaped = {h: cells for h, cells in samples.items()
              if cells and sum(bool(_PHONE_LIKE.match(c)) for c in cells) >= PHONE_SHARE * len(cells)}
    if not shaped:
        return [], "FR"
    best: tuple[int, str, list[str]] = (-1, "FR", [])
    # Numbers written with their country code read the same under any region: their own country goes
    # first, so +1 212... makes the region US rather than the first tried.
    own = _countries([c for cells in shaped.values() for c in cells])
    first = [own] if own else (["FR"] if prefer_fr else [])
    for region in dict.fromkeys([*first, *REGIONS]):
        columns, valid = [], 0
        for header, cells in shaped.items():
            _, errors = normalize_phones(pd.Series(cells, dtype=object), region)
            good = int((errors == "").sum())
            if good >= VALID_SHARE * len(cells):
                columns.append(header)
                valid += good
        if valid > best[0]:
            best = (valid, region, columns)
    return best[2], best[1]


def _countries(cells: list[str]) -> str | None:
    """The most common country among the numbers written with +country (or 00country)."""
    import phonenumbers

    seen: Counter[str] = Counter()
    for cell in cells:
        text = cell.strip()
        if text.startswith("00"):
            text = "+" + text[2:]
        if text.startswith("+"):
            try:
                region = phonenumbers.region_code_for_number(phonenumbers.parse(text, None))
            except phonenumbers.NumberParseException:
                continue
            if region and region != "ZZ":
                seen[region] += 1
    return seen.most_common(1)[0][0] if seen else None


def _dayfirst(cells: list[str]) -> tuple[bool, str]:
    """A first field above 12 settles day first; a second field above 12, month first."""
    day_first = next((c for c in cells if (m := _DATE.match(c)) and int(m.group(1)) > 12), None)
    month_first = next((c for c in cells if (m := _DATE.match(c)) and int(m.group(2)) > 12), None)
    if day_first and month_first:
        return True, (f"the dates disagree: {day_first!r} is day first, {month_first!r} month first; "
                      "kept true, fix the other rows")
    if day_first:
        return True, f"a date starts with a day above 12: {day_first!r}"
    if month_first:
        return False, f"a date has a month-first day above 12: {month_first!r}"
    if any(_DATE.match(c) for c in cells):
        return True, "no date with a day above 12 to tell; kept the default, check a date such as 03/04"
    return True, "the timestamps are not written day/month/year; the setting does not apply"


def _timezone(french_headers: bool, phone_region: str | None, stamps: list[str]) -> tuple[str, str]:
    if stamps and all(_OFFSET.search(s) or s.isdigit() for s in stamps):
        why = "every timestamp carries its zone (an offset, or Unix time)"
        return ("Europe/Paris", f"{why}; Paris for any later row without one") if french_headers else ("UTC", why)
    if french_headers:
        return "Europe/Paris", "French headers: times without an offset are read as Paris time"
    if phone_region == "FR":
        return "Europe/Paris", "French phone numbers in the data: times without an offset are read as Paris time"
    return "UTC", "no French headers or data: times without an offset are read as UTC; change it if they are local"

