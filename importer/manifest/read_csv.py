"""CSV manifests: detecting the encoding and the delimiter, and parsing with exact spreadsheet rows.

- Encoding: a byte-order mark decides; else UTF-8 if the bytes are valid UTF-8; else cp1252 (what Excel
  writes on Windows in Western Europe), or latin-1 for bytes cp1252 leaves undefined. A file that mixes
  valid UTF-8 sequences with invalid bytes is refused: two exports pasted together.
- Delimiter: `,` `;` or tab, counted in the header outside quotes and checked on a sample of rows.
- Line endings are normalised to "\\n" before parsing (mixed CRLF/LF/CR files are common after edits);
  a CRLF inside a quoted multi-line cell therefore comes back as LF.
- The fast path is pandas' C parser. Anything it refuses (ragged rows, an unclosed quote) is re-read with
  Python's csv module only to explain the problem precisely, or to recover a torn last line.
- Row numbers are the spreadsheet's: each record is one row (a quoted multi-line cell included, as Excel
  shows it), blank lines are rows too (skipped later, the numbering kept).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ManifestError

if TYPE_CHECKING:
    from .xlsx_layout import SheetLayout

CANDIDATE_DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab"}
_SAMPLE_CHARS = 1 << 20  # how much text the delimiter detection looks at
_SAMPLE_RECORDS = 200
_MAX_LISTED = 10  # rows listed in one ManifestError


@dataclass
class RawTable:
    """A sheet as read, before header checks: every cell str, positional columns, header excluded."""

    headers: list[str]
    data: pd.DataFrame
    lines: np.ndarray  # spreadsheet row of each data row
    header_row: int
    delimiter: str
    encoding: str
    torn: tuple[int, int] | None = None  # a torn last line: (its spreadsheet row, the cells it has)
    has_nul: bool = False
    sheet: str | None = None  # XLSX: "sheet 'Calls' (the workbook's other sheets: ...)", for messages
    sheet_name: str | None = None
    layout: SheetLayout | None = None  # XLSX: hidden rows, merged ranges, formulas never calculated


def read_csv_table(path: Path, encoding: str, delimiter: str) -> RawTable:
    """Read, decode and parse a CSV file. `encoding` and `delimiter` are the config values ("auto" or a
    forced value). The bytes are dropped once decoded: a million-row file is held once, not twice."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    if data.startswith(b"PK\x03\x04"):
        raise ManifestError(
            f"{path.name} is an Excel workbook (a ZIP file), not CSV text: give it the .xlsx extension"
        )
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ManifestError(
            f"{path.name} is an old Excel .xls workbook, not CSV text: save it as .xlsx or CSV"
        )
    text, used = _decode(data, encoding, path)
    del data
    return _parse_text(path, text, used, delimiter)


# --- encodings -----------------------------------------------------------------------------------

_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _decode(data: bytes, forced: str, path: Path) -> tuple[str, str]:
    """Decode the file; the second value names the encoding used."""
    bom_encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if forced != "auto":
        encoding = forced
        if forced in ("utf-8", "utf-8-sig"):
            # A BOM at the very start is never data: strip it whatever was forced.
            encoding = "utf-8-sig" if bom_encoding == "utf-8-sig" else "utf-8"
        return _strict_decode(data, encoding, path, forced=True), encoding
    if bom_encoding is not None:
        return _strict_decode(data, bom_encoding, path, forced=False), bom_encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        bad = exc.start
    if _UTF8_MULTIBYTE.search(data):
        # Valid UTF-8 sequences (é as C3 A9) and invalid bytes in one file: two exports pasted together.
        raise ManifestError(
            f"{path.name}: mixed encodings: part of the file is UTF-8 and part is not (first non-UTF-8 byte "
            f"near line {_line_of(data, bad)}); re-save the whole file in one encoding (CSV UTF-8), or set "
            "manifest.encoding (utf-8, cp1252 or latin-1) in config.yaml"
        )
    try:
        # Not UTF-8: Excel on Windows in Western Europe writes cp1252 (latin-1 plus € and curly quotes).
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        # Bytes undefined in cp1252 (0x81, 0x8D, 0x8F, 0x90, 0x9D): latin-1 reads every byte.
        return data.decode("latin-1"), "latin-1"


def _strict_decode(data: bytes, encoding: str, path: Path, *, forced: bool) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        origin = "as set by manifest.encoding" if forced else "as its byte-order mark says"
        raise ManifestError(
            f"{path.name}: cannot be read as {encoding} ({origin}): invalid byte near line "
            f"{_line_of(data, exc.start)}; set manifest.encoding to the file's encoding "
            "(auto, utf-8, cp1252, latin-1) or save the file as CSV UTF-8"
        ) from None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# --- CSV -----------------------------------------------------------------------------------------

_BLANK_LINE = re.compile(r"[ \t,;]*\n")


def _parse_text(path: Path, text: str, encoding: str, forced_delimiter: str) -> RawTable:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        head = text[:4096]
        if head.count("\x00") * 8 > len(head):
            raise ManifestError(
                f"{path.name} contains binary data (NUL bytes): it is not a CSV text file. If it was saved as "
                "UTF-16 'Unicode text' without a byte-order mark, save it again as CSV UTF-8"
            )
    # Blank lines before the header still count as spreadsheet rows.
    skipped = 0
    pos = 0
    while True:
        m = _BLANK_LINE.match(text, pos)
        if m is None:
            break
        pos = m.end()
        skipped += 1
    if pos:
        text = text[pos:]
    if not text.strip(" \t\n,;\ufeff\x00"):
        raise ManifestError(f"{path.name} is empty: it has no header line (and no rows)")
    delimiter = _detect_delimiter(text, forced_delimiter, path)
    header_row = skipped + 1
    raw, torn = _parse_csv(text, delimiter, header_row, path)
    headers = [str(h) for h in raw.iloc[0].tolist()] if len(raw) else []
    rows = raw.iloc[1:]
    lines = np.arange(header_row + 1, header_row + 1 + len(rows), dtype=np.int64)
    return RawTable(headers, rows, lines, header_row, delimiter, encoding, torn, "\x00" in text)


def _sample(text: str) -> tuple[str, bool]:
    """The first records of the text, cut at a line end; the flag says whether that is the whole text."""
    if len(text) <= _SAMPLE_CHARS:
        return text, True
    cut = text.find("\n", _SAMPLE_CHARS)
    if cut < 0:
        return text, True
    return text[: cut + 1], False


def _field_counts(sample: str, delimiter: str, complete: bool) -> tuple[list[int], int]:
    """Cells per non-blank record of the sample for one delimiter (quotes respected), and how many cells
    hold a stray quote character: under the wrong delimiter a quoted "Dupont; Jean" is cut in two and
    its quotes end up inside cells."""
    counts: list[int] = []
    stray = 0
    _raise_field_limit()
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter, strict=False)
    try:
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue
            counts.append(len(record))
            stray += sum(1 for cell in record if '"' in cell)
            if len(counts) > _SAMPLE_RECORDS:
                break
    except csv.Error:
        pass  # a damaged sample: detection works on what was read, parsing will explain the damage
    if not complete and len(counts) > 1 and len(counts) <= _SAMPLE_RECORDS:
        counts.pop()  # the sample may cut the last record (a multi-line cell)
    return counts, stray


def _detect_delimiter(text: str, forced: str, path: Path) -> str:
    if forced != "auto":
        return forced
    sample, complete = _sample(text)
    parsed = {d: _field_counts(sample, d, complete) for d in CANDIDATE_DELIMITERS}
    counts = {d: parsed[d][0] for d in CANDIDATE_DELIMITERS}
    in_header = [d for d in CANDIDATE_DELIMITERS if counts[d] and counts[d][0] > 1]
    if not in_header:
        return ","  # one column: the missing-columns message shows the single header found
    if len(in_header) == 1:
        chosen = in_header[0]
    else:
        # The header holds several candidates: the right one gives every sampled row the header's width,
        # and (to break a tie) leaves no quote characters stranded inside cells.
        consistent = [d for d in in_header if all(n == counts[d][0] for n in counts[d][1:])]
        if len(consistent) > 1:
            clean = [d for d in consistent if parsed[d][1] == 0]
            if len(clean) == 1:
                consistent = clean
        if len(consistent) != 1:
            found = " and ".join(DELIMITER_NAMES[d] for d in in_header)
            raise ManifestError(
                f"{path.name}: cannot tell the delimiter: the header contains {found} and the rows do not "
                "settle it; set manifest.delimiter in config.yaml (',', ';' or tab)"
            )
        chosen = consistent[0]
    _refuse_mixed(counts, chosen, path)
    return chosen


def _refuse_mixed(counts: dict[str, list[int]], chosen: str, path: Path) -> None:
    """A row that has the header's width under another delimiter, but not under the chosen one, means the
    file mixes delimiters (two exports pasted together)."""
    width = counts[chosen][0]
    ours = counts[chosen]
    for other in CANDIDATE_DELIMITERS:
        if other == chosen:
            continue
        theirs = counts[other]
        for i in range(1, min(len(ours), len(theirs))):
            if ours[i] != width and ours[i] == 1 and theirs[i] == width:
                raise ManifestError(
                    f"{path.name}: mixed delimiters: the header uses {DELIMITER_NAMES[chosen]} but some rows "
                    f"use {DELIMITER_NAMES[other]}; save the whole file with one delimiter, or set "
                    "manifest.delimiter in config.yaml"
                )


def _raise_field_limit() -> None:
    # The csv module refuses cells over 128 KiB by default; a manifest may legitimately hold long notes,
    # and a hostile 10 MB cell must be read (then flagged), not crash the loader.
    if csv.field_size_limit() < sys.maxsize:
        try:
            csv.field_size_limit(sys.maxsize)
        except OverflowError:  # pragma: no cover - 32-bit C long
            csv.field_size_limit(2**31 - 1)


def _parse_csv(
    text: str, delimiter: str, header_row: int, path: Path
) -> tuple[pd.DataFrame, tuple[int, int] | None]:
    """All records (header first) as a frame of str with positional columns, plus (row, cells) of a torn
    last line (None when the file is whole)."""
    try:
        raw = _read_csv(text, delimiter)
    except (pd.errors.ParserError, ValueError, OverflowError, csv.Error) as exc:
        return _parse_with_csv_module(text, delimiter, header_row, path, str(exc))
    torn = None
    if len(raw) > 1 and not text.endswith("\n"):
        last = _last_record_width(text, delimiter)
        if last is not None and last < raw.shape[1]:
            torn = (header_row + len(raw) - 1, last)
    return raw, torn


def _read_csv(text: str, delimiter: str) -> pd.DataFrame:
    """pandas' C parser, every cell as str; the header is row 0 (header=None: no renaming of duplicates,
    the width comes from the header line, a longer row is an error)."""
    raw = pd.read_csv(
        io.StringIO(text),
        sep=delimiter,
        header=None,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=False,  # blank lines stay as (empty) rows so row numbers match the spreadsheet
        engine="c",
        quotechar='"',
        doublequote=True,
        index_col=False,
    )
    return raw.fillna("")


def _last_record_width(text: str, delimiter: str) -> int | None:
    start = text.rfind("\n") + 1
    last_line = text[start:]
    if last_line.count('"') % 2 == 0:
        records = list(csv.reader([last_line], delimiter=delimiter, strict=False))
        return len(records[0]) if records else None
    # The last physical line closes a multi-line cell: parse everything to find the last record.
    width = None
    _raise_field_limit()
    for record in csv.reader(io.StringIO(text), delimiter=delimiter, strict=False):
        width = len(record)
    return width


_EOF_IN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def _parse_with_csv_module(
    text: str, delimiter: str, header_row: int, path: Path, pandas_error: str
) -> tuple[pd.DataFrame, tuple[int, int] | None]:
    """The slow path: pandas refused the file. Read it record by record to say exactly which rows are wrong,
    or to recover the two damages that are safe to recover (a torn last line, trailing empty cells)."""
    _raise_field_limit()
    records: list[list[str]] = []
    starts: list[int] = []  # physical line where each record starts
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=False)
    line = 0
    try:
        for record in reader:
            starts.append(line + 1)
            line = reader.line_num
            records.append(record)
    except csv.Error as exc:
        raise ManifestError(
            f"{path.name}: cannot be read as CSV near row {header_row + len(records)}: {exc}"
        ) from None
    if not records:
        raise ManifestError(f"{path.name} is empty: it has no header line (and no rows)")
    torn: tuple[int, int] | None = None
    eof = _EOF_IN_QUOTE.search(pandas_error)
    if eof is not None:
        n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        last_start = starts[-1]
        if last_start >= n_lines and len(records) > 1:
            # The quote opened on the last line: a write cut short.
            torn = (header_row + len(records) - 1, len(records[-1]))
        else:
            opened = header_row + min(int(eof.group(1)), len(records) - 1)
            raise ManifestError(
                f"{path.name}: row {opened}: a quoted cell is opened but never closed, so the rest of the "
                'file would be read as one cell; fix the stray " character'
            )
    width = len(records[0])
    too_long: list[str] = []
    max_width = width
    for i, record in enumerate(records):
        if len(record) > width:
            if any(cell.strip() for cell in record[width:]):
                too_long.append(f"row {header_row + i} has {len(record)} cells")
            max_width = max(max_width, len(record))
    # A single-cell first line above wider rows is a title line ("Export des appels"): the rows are padded
    # and the header row is looked for below it (header.py).
    if too_long and width > 1:
        listed = "; ".join(too_long[:_MAX_LISTED]) + (
            f"; and {len(too_long) - _MAX_LISTED} more" if len(too_long) > _MAX_LISTED else ""
        )
        raise ManifestError(
            f"{path.name}: the header has {width} cells but {listed}: a cell contains the delimiter "
            f"{DELIMITER_NAMES.get(delimiter, repr(delimiter))} without quotes, or the file mixes delimiters "
            "(check manifest.delimiter in config.yaml)"
        )
    if torn is None and len(records) > 1 and not text.endswith("\n") and len(records[-1]) < width:
        torn = (header_row + len(records) - 1, len(records[-1]))
    # Every extra cell is empty (lines ending with a spare delimiter): pad the header with empty columns,
    # which are dropped later as empty unnamed columns.
    columns: list[list[str]] = [[] for _ in range(max_width)]
    for record in records:
        if len(record) < max_width:
            record = record + [""] * (max_width - len(record))
        for j in range(max_width):
            columns[j].append(record[j])
    return pd.DataFrame({j: pd.Series(col, dtype=str) for j, col in enumerate(columns)}), torn
