"""Loading a manifest (CSV or XLSX) into a frame of text cells that keeps each row's spreadsheet number.

Decisions worth knowing:
- Every cell is text. Nothing is converted to numbers, so leading zeros and long phone numbers survive.
- Row numbers are the ones Excel shows: the header is row 1 (or lower when blank lines precede it), each
  record is one row, a blank line is a row that is skipped (later rows keep their number), and a quoted
  cell spanning several lines is still one row, exactly as Excel displays it. A text editor's line number
  can therefore be higher than the row number after a multi-line cell.
- Headers are matched trimmed and ignoring case; two headers equal that way are refused. A column with
  no header is dropped when empty (Excel's trailing delimiters) and refused when it holds values.
- `import_*` columns (a results CSV fed back in) are kept apart from the original columns.
Reading the bytes is read_csv.py's and read_xlsx.py's job; the rules shared by both live here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config
from ..errors import ManifestError
from .header import find_header
from .model import LoadedManifest, Problem, header_key
from .names import match_headers
from .read_csv import RawTable, read_csv_table
from .read_xlsx import read_xlsx_table
from .sheet_checks import sheet_problems

XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
_MAX_LISTED = 10  # NUL warnings listed per column
TORN_LINE = (
    "the last line stops before this column and has no line end: the file was probably cut off while being "
    "written; the row is read as far as it goes"
)

# Fields whose column must exist; campaign_id only when no default campaign is configured.
REQUIRED_FIELDS = ("file_path", "agent_email", "conversation_timestamp", "campaign_id")
FIELD_MEANINGS = {
    "file_path": "the recording",
    "agent_email": "the agent's email",
    "conversation_timestamp": "when the call took place",
    "campaign_id": "the campaign",
}

def field_header(cfg: Config, field: str) -> str:
    return str(getattr(cfg.columns, field)).strip()


def required_fields(cfg: Config) -> tuple[str, ...]:
    if cfg.campaign_id:
        return tuple(f for f in REQUIRED_FIELDS if f != "campaign_id")
    return REQUIRED_FIELDS


# --- entry point ---------------------------------------------------------------------------------


def load_manifest(path: Path, cfg: Config, *, check_required: bool = True) -> LoadedManifest:
    """Read a CSV or XLSX manifest. Raises ManifestError when the file cannot be used as a whole.
    `check_required=False` reads a file whose required columns are not mapped yet (to choose the mapping)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    if not path.is_file():
        raise ManifestError(f"manifest is not a file: {path}")
    return _finish(path, read_table(path, cfg), cfg, check_required)


def read_table(path: Path, cfg: Config) -> RawTable:
    """The sheet as read (encoding, delimiter, every cell text; the first non-empty row as the header, before
    `manifest.header_row` is applied), before any column check: what `init` guesses a config from."""
    suffix = path.suffix.lower()
    if suffix in XLSX_SUFFIXES:
        return read_xlsx_table(path, cfg.manifest.sheet)
    if suffix == ".xls":
        raise ManifestError(
            f"{path.name}: the old Excel .xls format is not supported; save it as .xlsx or CSV"
        )
    if suffix == ".ods":
        raise ManifestError(
            f"{path.name}: OpenDocument spreadsheets are not supported; save it as .xlsx or CSV"
        )
    return read_csv_table(path, cfg.manifest.encoding, cfg.manifest.delimiter)


# --- common --------------------------------------------------------------------------------------


def _column_name(position: int) -> str:
    """Excel's column letter for a 0-based position (0 -> A, 26 -> AA)."""
    letters = ""
    n = position + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _finish(path: Path, table: RawTable, cfg: Config, check_required: bool = True) -> LoadedManifest:
    """Shared by CSV and XLSX: header checks, blank rows, import_* columns, required columns."""
    table, header_note = find_header(table, cfg, required_fields(cfg), path.name)
    lines, header_row = table.lines, table.header_row
    where = f"{path.name}, {table.sheet}" if table.sheet else path.name
    warnings: list[Problem] = []
    if table.torn is not None:
        # Named after the first column the torn line does not reach.
        torn_row, cells = table.torn
        reached = table.headers[cells].strip() if cells < len(table.headers) else ""
        warnings.append(Problem(torn_row, reached or _column_name(cells), TORN_LINE, "warning"))
    data = table.data.reset_index(drop=True)
    data.columns = range(data.shape[1])
    headers = [h.replace("\x00", "") for h in table.headers]
    if table.has_nul:
        data = _strip_nul(data, headers, lines, warnings)
    by_position = list(headers)  # every column's header, by position (the sheet's layout speaks in positions)
    # Columns without a header: dropped when empty (Excel's trailing delimiters), refused when not.
    keep: list[int] = []
    for j, header in enumerate(headers):
        if header.strip():
            keep.append(j)
            continue
        filled = np.flatnonzero(_non_blank(data[j])) if len(data) else np.array([], dtype=np.int64)
        if len(filled):
            raise ManifestError(
                f"{where}: column {_column_name(j)} has values but no header (first at row "
                f"{int(lines[filled[0]])}); give it a header (it becomes a metadata key) or delete the column"
                + ("" if header_row > 1 or cfg.manifest.header_row != "auto" else
                   "; if the headers are not on the first row, set manifest.header_row")
            )
    data = data[keep]
    headers = [headers[j] for j in keep]
    # Duplicate headers (after trimming and ignoring case) would make a column ambiguous.
    seen: dict[str, int] = {}
    duplicates: list[str] = []
    for j, header in enumerate(headers):
        key = header_key(header)
        if key in seen:
            duplicates.append(
                f"{header.strip()!r} (columns {_column_name(keep[seen[key]])} and {_column_name(keep[j])})"
            )
        else:
            seen[key] = j
    if duplicates:
        raise ManifestError(
            f"{where}: duplicate column headers (compared ignoring case and spaces): "
            + ", ".join(duplicates)
            + "; rename or delete one of each"
        )
    data.columns = headers
    # Blank rows (every cell empty or spaces) are skipped; the others keep their spreadsheet number.
    if len(data) and data.shape[1]:
        filled_rows = ~_blank_rows(data)
        if not filled_rows.all():
            data = data[filled_rows].reset_index(drop=True)
            lines = lines[filled_rows]
    is_import = [header_key(h).startswith("import_") for h in headers]
    import_headers = [h for h, imp in zip(headers, is_import, strict=True) if imp]
    original = [h for h, imp in zip(headers, is_import, strict=True) if not imp]
    import_columns = None
    if import_headers:
        import_columns = data[import_headers].copy()
        import_columns.columns = [header_key(h) for h in import_headers]
    row_errors: tuple[tuple[int, str, str], ...] = ()
    if import_columns is not None and table.torn is not None and len(lines) and lines[-1] == table.torn[0]:
        import_columns, row_errors = _distrust_torn_row(import_columns, headers, is_import, table.torn[1])
    frame = data[original] if import_headers else data
    if check_required:
        _check_required(where, original, cfg)
    if table.layout is not None:
        more_warnings, more_errors = sheet_problems(table.layout, table.sheet_name or "", lines, header_row,
                                                    by_position, set(keep))
        warnings += more_warnings
        row_errors += more_errors
    if warnings:
        kept_rows = set(lines.tolist())  # a row that was blank apart from NULs is skipped: so is its warning
        warnings = [w for w in warnings if w.row in kept_rows or w.row <= header_row]
    return LoadedManifest(
        path=path,
        frame=frame,
        headers=tuple(original),
        line_numbers=np.asarray(lines, dtype=np.int64),
        import_columns=import_columns,
        delimiter=table.delimiter,
        encoding=table.encoding,
        is_results=import_columns is not None and "import_status" in import_columns.columns,
        warnings=tuple(warnings),
        header_row=header_row,
        row_errors=row_errors,
        notes=(header_note,) if header_note else (),
    )


TORN_ORIGINAL = (
    "this line of the results file was cut off while being written, so its cells cannot be trusted; "
    "copy the row from the original manifest (or rerun the original manifest: the ledger knows what was sent)"
)


def _distrust_torn_row(
    imports: pd.DataFrame, headers: list[str], is_import: list[bool], cells: int
) -> tuple[pd.DataFrame, tuple[tuple[int, str, str], ...]]:
    """A results CSV we wrote always ends its lines, so a torn last line is a crash artefact. Its import_*
    cells are dropped (the ledger, not a half-written status or call id, decides what was sent); when the
    cut fell inside an original cell, the row is an error rather than a new call built from a half value."""
    imports = imports.copy()
    imports.iloc[-1, :] = ""
    cut_original = any(not is_import[j] for j in range(min(cells, len(headers)) - 1, len(headers)))
    if not cut_original:
        return imports, ()
    column = headers[cells - 1].strip() if 0 < cells <= len(headers) else headers[0].strip()
    return imports, ((len(imports) - 1, column, TORN_ORIGINAL),)


def _non_blank(column: pd.Series) -> np.ndarray:
    """True where a cell holds something other than whitespace."""
    return np.fromiter(
        (bool(v) and not v.isspace() for v in column.to_numpy(dtype=object)), bool, len(column)
    )


def _blank_rows(data: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is empty or whitespace. Column by column, only for rows not yet proven filled:
    after the first column almost every row is decided, so this costs about one pass over one column."""
    undecided = np.ones(len(data), dtype=bool)
    for label in data.columns:
        idx = np.flatnonzero(undecided)
        if not len(idx):
            break
        values = data[label].to_numpy(dtype=object)[idx]
        proven = np.fromiter((bool(v) and not v.isspace() for v in values), bool, len(values))
        undecided[idx[proven]] = False
    return undecided


def _strip_nul(
    data: pd.DataFrame, headers: list[str], lines: np.ndarray, warnings: list[Problem]
) -> pd.DataFrame:
    """NUL characters are never meaningful in a cell (a damaged file): remove them and say where."""
    for j in data.columns:
        column = data[j]
        has = column.str.contains("\x00", regex=False).to_numpy(dtype=bool)
        if not has.any():
            continue
        data[j] = column.str.replace("\x00", "", regex=False)
        name = headers[j].strip() if j < len(headers) and headers[j].strip() else _column_name(j)
        for i in np.flatnonzero(has)[:_MAX_LISTED]:
            warnings.append(
                Problem(
                    int(lines[i]),
                    name,
                    "NUL characters removed from this cell (the file may be damaged)",
                    "warning",
                )
            )
    return data


def _check_required(where: str, headers: list[str], cfg: Config) -> None:
    present = {header_key(h) for h in headers}
    missing = [f for f in required_fields(cfg) if header_key(field_header(cfg, f)) not in present]
    if not missing:
        return
    parts = []
    for f in missing:
        wanted = field_header(cfg, f)
        hint = f"columns.{f}" + (" or campaign_id / --campaign-id" if f == "campaign_id" else "")
        parts.append(f"'{wanted}' ({FIELD_MEANINGS[f]}; set {hint})")
    found = ", ".join(repr(h.strip()) for h in headers[:50]) or "none"
    if len(headers) > 50:
        found += f", ... ({len(headers)} in all)"
    hint = ""
    if len(headers) == 1 and any(c in headers[0] for c in "|,;\t"):
        hint = " The header reads as a single column: set manifest.delimiter if the file uses another one."
    raise ManifestError(
        f"{where}: missing required column(s): {', '.join(parts)}. Headers found: {found}. "
        "Rename the column in the file, or map it in config.yaml under columns: (e.g. columns.file_path: "
        f"<your header>).{hint}" + "".join(f"\n  {line}" for line in _closest_lines(missing, headers, cfg))
    )


def _closest_lines(missing: list[str], headers: list[str], cfg: Config) -> list[str]:
    """For each missing field whose column is there under another name: the config line that maps it."""
    taken = {header_key(field_header(cfg, f)) for f in REQUIRED_FIELDS if f not in missing}
    free = [h for h in headers if header_key(h) not in taken]
    guessed = match_headers(free)
    lines = []
    for f in missing:
        if f in guessed:
            header = guessed[f][0].strip()
            lines.append(f"no column for {f}; closest: {header!r} -> set columns.{f}: {header!r} "
                         "(or run allobrain-import init)")
    return lines
