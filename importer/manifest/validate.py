"""Validating a loaded manifest: every rule of the spec, every problem at once, by spreadsheet row.

Columns are checked as whole vectors (fields, timestamps, phones); files once per distinct path (files.py); only
the final assembly of `CallRow`s loops over rows. Rows a results CSV calls uploaded are validated too (the
ledger decides from their key); only those that no longer validate are carried over on the file's word.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

from ..config import Config
from ..safety import FORMULA_PREFIXES
from ..sources import Sources
from ..statuses import CARRIED_STATUSES, STATUSES
from .columns import ColumnMap, resolve_columns
from .fields import as_text, explicit_names, name_from_email, normalize_emails, show
from .files import FileInfo, check_files, durations, manifest_bases, windows_path_problem
from .issues import Issues, first_names_by_email, flag_duplicates
from .load import field_header
from .model import CallRow, LoadedManifest, ValidatedManifest
from .phones import normalize_phones
from .timestamps import parse_timestamps

LONG_METADATA_CHARS = 1000
SHORT_AUDIO_SECONDS = 1.0
MISSING = "missing (required)"


def validate_manifest(
    loaded: LoadedManifest,
    cfg: Config,
    *,
    now: dt.datetime | None = None,
    with_durations: bool = False,
) -> ValidatedManifest:
    """Check every row, collect every problem; no network. `now` (default: the current time) bounds "in
    the future"; `with_durations` also reads each file's duration (for the plan and the short-audio
    warning)."""
    frame = loaded.frame
    n = len(frame)
    lines = np.asarray(loaded.line_numbers, dtype=np.int64)
    cols = resolve_columns(loaded, cfg)
    shown = {label: label.strip() for label in loaded.headers}
    issues = Issues(lines, {label.strip(): i for i, label in enumerate(loaded.headers)})

    def raw(field: str) -> pd.Series | None:
        label = cols.fields[field]
        return None if label is None else frame[label]

    def column_of(field: str) -> str:
        label = cols.fields[field]
        return shown[label] if label is not None else field_header(cfg, field)

    # Rerun: every row is validated, those a previous run uploaded too (the ledger, not the file, decides
    # whether they were: it needs their key). One that no longer validates (its recording archived since)
    # is carried over on the file's word instead of being called invalid.
    prior = _prior_status(loaded, n)
    carried_mask = np.isin(prior, list(CARRIED_STATUSES))
    unknown_status = (prior != "") & ~np.isin(prior, list(STATUSES))
    if unknown_status.any():
        texts = np.full(n, "", dtype=object)
        texts[unknown_status] = [
            f"{show(v)} is not a status this tool writes ({', '.join(STATUSES)}): the column belongs to the "
            "tool; clear the cell, or rename the column if it is yours"
            for v in prior[unknown_status].tolist()
        ]
        issues.add(unknown_status, "import_status", texts)
    for index, column, message in loaded.row_errors:
        issues.add(np.arange(n) == index, column, message)

    # Required fields. fields.py trims what it is given, so it gets the raw columns.
    file_v = as_text(frame[cols.fields["file_path"]]).to_numpy(dtype=object)
    issues.add(file_v == "", column_of("file_path"), MISSING)
    email, email_err = normalize_emails(raw("agent_email"))
    issues.add(email == "", column_of("agent_email"), MISSING)
    issues.add(email_err != "", column_of("agent_email"), email_err)
    timestamps, ts_err = parse_timestamps(
        raw("conversation_timestamp"), timezone=cfg.manifest.timezone, dayfirst=cfg.manifest.dayfirst, now=now
    )
    ts_missing = (timestamps == 0) & (ts_err == "")  # a parsed time is never 0 (it is after 2000)
    issues.add(ts_missing, column_of("conversation_timestamp"), MISSING)
    issues.add(ts_err != "", column_of("conversation_timestamp"), ts_err)
    campaign = _campaigns(raw("campaign_id"), cfg, n)
    issues.add(
        campaign == "",
        column_of("campaign_id"),
        MISSING + ": fill the cell, or set campaign_id in config.yaml (or --campaign-id)",
    )
    _check_campaign_ids(campaign, issues, column_of("campaign_id"))

    sources = Sources(cfg.files)
    try:
        path_code, infos = _check_files(loaded, file_v, cfg, sources, issues, column_of("file_path"),
                                        with_durations)
        durations_by_path: dict[int, float | None] = {}
        if with_durations:
            durations_by_path = _read_durations(
                infos, path_code, file_v != "", issues, column_of("file_path"), sources
            )
    finally:
        sources.close()
    meta_values = _check_metadata(frame, cols, cfg, issues, shown)

    # Duplicates: same campaign, agent, timestamp and file as an earlier row (rows a results file calls
    # uploaded count as earlier rows: a copy of an uploaded row must not be sent again). "Same file" is what the ledger's key holds,
    # name and size, so a copy of a recording in another folder is caught too (else both would be sent).
    keyed = (
        (campaign != "") & (email_err == "") & (email != "") & (ts_err == "") & ~ts_missing & (file_v != "")
    )
    file_key, _ = pd.factorize(np.array(
        [f"{i.name}\0{i.size}" if i is not None and not i.error else f"\0path{k}" for k, i in enumerate(infos)],
        dtype=object,
    ))
    same_file = file_key[path_code] if n else path_code
    flag_duplicates(
        issues, keyed, campaign, email, timestamps, same_file, lines, column_of("file_path")
    )

    # Names: the first name given for an email wins; a different one later is a warning.
    names = explicit_names(raw("agent_name"), raw("agent_first_name"), raw("agent_last_name"), n)
    name_label = (
        cols.fields["agent_name"] or cols.fields["agent_first_name"] or cols.fields["agent_last_name"]
    )
    name_column = shown[name_label] if name_label is not None else field_header(cfg, "agent_name")
    good_email = (email != "") & (email_err == "")
    first_names = first_names_by_email(issues, good_email, email, names, lines, name_column)

    bad = issues.error_mask(n)
    file_word = carried_mask & bad
    problems, invalid = issues.build(loaded.warnings + cols.warnings)
    if file_word.any():  # not sendable, and uploaded by the file's account: neither invalid nor a problem
        gone = set(lines[file_word].tolist())
        problems = [p for p in problems if p.row not in gone]
        invalid = {i: v for i, v in invalid.items() if not file_word[i]}
    valid_idx = np.flatnonzero(~bad)
    calls, agents = _assemble(
        valid_idx,
        lines,
        infos,
        path_code,
        email,
        first_names,
        timestamps,
        campaign,
        [key for _, key in cols.metadata],
        meta_values,
        prior,
        prior_ids := _prior_call_ids(loaded, n),
        durations_by_path,
    )
    carried = {int(i): (prior[i], prior_ids[i]) for i in np.flatnonzero(file_word).tolist()}
    return ValidatedManifest(loaded, calls, carried, invalid, problems, agents, with_durations)


def _campaigns(cells: pd.Series | None, cfg: Config, n: int) -> np.ndarray:
    """Each row's campaign: a non-empty cell wins over the configured default. One object per distinct id."""
    default = (cfg.campaign_id or "").strip()
    if cells is None:
        return np.full(n, default, dtype=object)
    codes, uniques = pd.factorize(as_text(cells).to_numpy(dtype=object))
    campaign = np.asarray(uniques, dtype=object)[codes] if n else np.zeros(0, dtype=object)
    if default:
        campaign[campaign == ""] = default
    return campaign


_CAMPAIGN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_VENDOR_ID = re.compile(r"[0-9a-f]{24}")


def campaign_id_problem(value: str) -> tuple[str, str] | None:
    """(severity, message) for a campaign id no campaign has (an error) or one unlike the vendor's ids (24
    hexadecimal characters such as 665dc5c57275b74ce35c03ab: a warning); None when it looks right."""
    if _CAMPAIGN_CHARS.fullmatch(value) is None:
        return "error", (f"{show(value)} is not a campaign id: ids are letters and digits (like "
                         "665dc5c57275b74ce35c03ab), without spaces, slashes or other signs")
    if _VENDOR_ID.fullmatch(value) is None:
        return "warning", (f"{show(value)} does not look like an AlloBrain campaign id (24 hexadecimal characters, "
                           "like 665dc5c57275b74ce35c03ab): check it, or the API will answer not found")
    return None


def _check_campaign_ids(campaign: np.ndarray, issues: Issues, column: str) -> None:
    """Checked once per distinct id."""
    codes, uniques = pd.factorize(campaign)
    for k, value in enumerate(uniques.tolist()):
        found = campaign_id_problem(value) if value else None
        if found:
            issues.add(codes == k, column, found[1], found[0])  # type: ignore[arg-type]


def _check_files(
    loaded: LoadedManifest,
    file_v: np.ndarray,
    cfg: Config,
    sources: Sources,
    issues: Issues,
    column: str,
    with_durations: bool = False,
) -> tuple[np.ndarray, list[FileInfo | None]]:
    """Resolve each distinct cell, check each distinct resolved path once. Returns each row's path code and
    the FileInfo of each distinct path (None when unchecked: an empty cell, a Windows path)."""
    n = len(file_v)
    bases = manifest_bases(loaded.path, loaded.is_results)
    if loaded.base_dir:
        bases = (loaded.base_dir, *(b for b in bases if b != loaded.base_dir))
    cell_codes, cell_uniques = pd.factorize(file_v)
    resolved = [sources.resolve(str(c), bases) if c else "" for c in cell_uniques]
    path_of_cell, path_uniques = pd.factorize(np.asarray(resolved, dtype=object))
    path_code = path_of_cell[cell_codes] if n else np.zeros(0, dtype=np.int64)
    present = file_v != ""
    windows = np.array([windows_path_problem(str(c)) or "" for c in cell_uniques], dtype=object)
    if (windows != "").any():
        on_row = windows[cell_codes]
        issues.add(present & (on_row != ""), column, on_row)
        present &= on_row == ""
    needed = np.zeros(len(path_uniques), dtype=bool)
    needed[path_code[present]] = True
    to_check = np.flatnonzero(needed).tolist()
    infos: list[FileInfo | None] = [None] * len(path_uniques)
    checked = check_files([path_uniques[k] for k in to_check], cfg.upload.max_file_mb * 1024 * 1024, sources,
                          with_durations)
    for k, info in zip(to_check, checked, strict=True):
        infos[k] = info
    file_errors = np.array([info.error if info is not None else "" for info in infos], dtype=object)
    row_errors = file_errors[path_code] if n else np.zeros(0, dtype=object)
    issues.add(present & (row_errors != ""), column, row_errors)
    return path_code, infos


def _check_metadata(
    frame: pd.DataFrame,
    cols: ColumnMap,
    cfg: Config,
    issues: Issues,
    shown: dict[str, str],
) -> list[np.ndarray]:
    """Each metadata column's values: trimmed, phone columns in E.164; long values are warnings."""
    out: list[np.ndarray] = []
    for label, _key in cols.metadata:
        if label in cols.phones:
            values, errors = normalize_phones(frame[label], cfg.metadata.default_region)
            issues.add(errors != "", shown[label], errors)
        else:
            values = as_text(frame[label]).to_numpy(dtype=object)
        out.append(values)
        long = pd.Series(values, dtype=object).str.len().to_numpy() > LONG_METADATA_CHARS
        if long.any():
            texts = np.empty(len(values), dtype=object)
            texts[long] = [
                f"value is {len(v):,} characters long (over 1,000); it is sent anyway" for v in values[long]
            ]
            issues.add(long, shown[label], texts, "warning")
    return out


def _read_durations(
    infos: list[FileInfo | None], path_code: np.ndarray, rows: np.ndarray, issues: Issues, column: str,
    sources: Sources,
) -> dict[int, float | None]:
    """The duration of each distinct good file (path code -> seconds), and the short-audio warnings."""
    good = [(k, info) for k, info in enumerate(infos) if info is not None and not info.error]
    found = durations([info for _, info in good], sources)
    by_path = {k: seconds for (k, _), seconds in zip(good, found, strict=True)}
    short = {k for k, seconds in by_path.items() if seconds is not None and seconds < SHORT_AUDIO_SECONDS}
    if short:
        mask = rows & np.isin(path_code, list(short))
        texts = np.empty(len(rows), dtype=object)
        for i in np.flatnonzero(mask):
            texts[i] = f"audio is only {by_path[int(path_code[i])]:.2f} s long"
        issues.add(mask, column, texts, "warning")
    return by_path


def _prior_status(loaded: LoadedManifest, n: int) -> np.ndarray:
    imports = loaded.import_columns
    if imports is None or "import_status" not in imports.columns:
        return np.full(n, "", dtype=object)
    return imports["import_status"].fillna("").astype(str).str.strip().str.lower().to_numpy(dtype=object)


def _prior_call_ids(loaded: LoadedManifest, n: int) -> np.ndarray:
    imports = loaded.import_columns
    if imports is None or "import_call_id" not in imports.columns:
        return np.full(n, "", dtype=object)
    ids = imports["import_call_id"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
    # The results CSV prefixes risky values with ' against formula injection: undo it.
    risky = np.array([len(v) > 1 and v[0] == "'" and v[1] in FORMULA_PREFIXES for v in ids.tolist()], dtype=bool)
    if risky.any():
        ids[risky] = [v[1:] for v in ids[risky].tolist()]
    return ids


def _assemble(
    valid_idx: np.ndarray,
    lines: np.ndarray,
    infos: list[FileInfo | None],
    path_code: np.ndarray,
    email: np.ndarray,
    first_names: dict[str, str],
    timestamps: np.ndarray,
    campaign: np.ndarray,
    keys: list[str],
    meta_values: list[np.ndarray],
    prior: np.ndarray,
    prior_ids: np.ndarray,
    durations_by_path: dict[int, float | None],
) -> tuple[list[CallRow], dict[str, str]]:
    """The one loop over rows: build the CallRows (sharing objects where rows repeat a value)."""
    agents: dict[str, str] = {}
    for e in pd.unique(email[valid_idx]).tolist():
        agents[e] = first_names.get(e) or name_from_email(e)
    # Each metadata column becomes a list of (key, value) pairs, None for an empty cell. Pairs of
    # low-cardinality columns are shared between rows (a million rows, five sites: five tuples).
    pair_columns: list[list[tuple[str, str] | None]] = []
    any_empty = np.zeros(len(valid_idx), dtype=bool)
    for key, values in zip(keys, meta_values, strict=True):
        chosen = values[valid_idx]
        any_empty |= chosen == ""
        distinct = pd.unique(chosen) if len(chosen) else []
        if len(distinct) * 2 < len(chosen):
            shared: dict[str, tuple[str, str] | None] = {v: (key, v) for v in distinct if v}
            shared[""] = None
            pair_columns.append([shared[v] for v in chosen.tolist()])
        else:
            pair_columns.append([(key, v) if v else None for v in chosen.tolist()])
    meta_rows = zip(*pair_columns, strict=True) if pair_columns else iter(tuple, None)
    calls: list[CallRow] = []
    for index, row, code, stamp, mail, camp, prev, prev_id, pairs, gaps in zip(
        valid_idx.tolist(),
        lines[valid_idx].tolist(),
        path_code[valid_idx].tolist(),
        timestamps[valid_idx].tolist(),
        email[valid_idx].tolist(),
        campaign[valid_idx].tolist(),
        prior[valid_idx].tolist(),
        prior_ids[valid_idx].tolist(),
        meta_rows,
        any_empty.tolist(),
        strict=False,
    ):
        info = infos[code]
        assert info is not None
        metadata = tuple(p for p in pairs if p is not None) if gaps else pairs
        calls.append(
            CallRow(
                index,
                row,
                info.path,
                info.name,
                info.size,
                info.mtime_ns,
                mail,
                agents[mail],
                stamp,
                camp,
                metadata,
                prev or None,
                durations_by_path.get(code),
                prev_id or None,
                info.version,
            )
        )
    return calls, agents
