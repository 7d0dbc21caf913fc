"""The steps before a run: choose a manifest, map its columns, see its problems, read the plan.

Each view calls the library (load, validate, plan) exactly as the CLI's `validate` and `run --dry-run` do.
"""

from __future__ import annotations

import filecmp
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.utils import secure_filename
from werkzeug.wrappers import Response

from .. import prepare
from ..errors import ImportToolError, ManifestError
from ..manifest import load_manifest, required_fields
from ..report import fmt_bytes, fmt_duration
from . import roundtrip, tables

if TYPE_CHECKING:
    from ..config import Config
    from .page import Page


def chosen_manifest(page: Page) -> Path:
    if page.ws.chosen is None:
        raise ChooseFirst("/")
    return page.ws.chosen


class ChooseFirst(ImportToolError):
    """Not an error: the step needs an earlier one first (a manifest chosen)."""


def needs_manifest(view):  # noqa: ANN001, ANN202 - a decorator
    def wrapper(page: Page, **kw: Any) -> Response:
        try:
            return view(page, **kw)
        except ChooseFirst as r:
            return page.redirect(str(r))
    wrapper.__name__ = view.__name__
    return wrapper


# --- choose ---------------------------------------------------------------------------------------


def choose(page: Page) -> Response:
    ws = page.ws
    files, more = tables.manifest_files(ws.folder)
    folders = [ws.folder] + ([ws.chosen.parent] if ws.chosen else [])
    seen = tables.results_files(folders + [j.results_path.parent for j in ws.jobs])
    past = []
    for path in seen[:20]:
        entry = tables.past_run(path)
        entry["key"] = ws.remember(path)
        past.append(entry)
    return page.render("choose.html", "choose", files=files, more_files=more, past=past, folder=str(ws.folder),
                       chosen=str(ws.chosen) if ws.chosen else "")


def upload(page: Page) -> Response:
    t = page.t
    sent = page.request.files.get("manifest")
    if sent is None or not sent.filename:
        page.flash("error", t["err_no_file"])
        return page.redirect("/")
    name = secure_filename(sent.filename) or "manifest.csv"
    if Path(name).suffix.lower() not in tables.MANIFEST_SUFFIXES:
        page.flash("error", t["err_suffix"].replace("{name}", sent.filename))
        return page.redirect("/")
    folder = Path(page.request.form.get("base", "").strip() or page.ws.folder).expanduser()
    if not folder.is_dir():
        page.flash("error", t["err_folder"].replace("{path}", str(folder)))
        return page.redirect("/")
    target = _save_upload(sent, folder.resolve(), name)
    page.ws.chosen = target
    page.flash("ok", t["uploaded_to"].replace("{path}", str(target)))
    return page.redirect("/columns")


def _save_upload(sent: Any, folder: Path, name: str) -> Path:
    """Save under `name` in `folder`; the same content already there is reused, other content is never
    overwritten (the upload takes the next free name: calls-2.csv)."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".upload-", delete=False) as tmp:
        sent.save(tmp)
    tmp_path = Path(tmp.name)
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = folder / name, 2
    while candidate.exists():
        if candidate.is_file() and filecmp.cmp(candidate, tmp_path, shallow=False):
            tmp_path.unlink()
            return candidate
        candidate, n = folder / f"{stem}-{n}{suffix}", n + 1
    tmp_path.replace(candidate)
    return candidate


def pick(page: Page) -> Response:
    ws = page.ws
    rel = page.request.form.get("path", "")
    target = (ws.folder / rel).resolve()
    if not (target.is_relative_to(ws.folder) and target.is_file()
            and target.suffix.lower() in tables.MANIFEST_SUFFIXES):
        page.flash("error", page.t["err_pick"].replace("{folder}", str(ws.folder)))
        return page.redirect("/")
    ws.chosen = target
    return page.redirect("/columns")


def destination(page: Page) -> Response:
    form = page.request.form
    ws = page.ws
    ws.sandbox_on = form.get("sandbox") == "on"
    if form.get("action") == "forget":
        ws.forget_key()
    elif form.get("api_key", "").strip():
        ws.set_key(form["api_key"])
    page.flash("ok", page.t["dest_saved"])
    back = form.get("back", "/")
    return page.redirect(back if back in ("/", "/plan") else "/")


# --- columns --------------------------------------------------------------------------------------


@needs_manifest
def columns(page: Page, errors: list[str] | None = None, chosen: dict[str, str] | None = None) -> Response:
    manifest = chosen_manifest(page)
    cfg = page.ws.config_for(manifest)
    context: dict[str, Any] = {"manifest_name": manifest.name, "errors": errors or [], "fatal": None,
                               "headers": [], "notes": [], "fields": [], "samples": {}, "preview": [],
                               "target": str(manifest.parent / "config.yaml"),
                               "config_flag": str(page.ws.config_flag) if page.ws.config_flag else ""}
    try:
        loaded = load_manifest(manifest, cfg, check_required=False)
    except ManifestError as exc:
        context["fatal"] = str(exc)
        return page.render("columns.html", "columns", **context)
    headers = list(loaded.headers)
    mapping, notes = roundtrip.guessed_mapping(manifest, cfg, loaded.headers)
    if chosen is not None:
        mapping = {f: chosen.get(f) or None for f in roundtrip.FIELDS}
    required = set(required_fields(cfg))
    frame = loaded.frame
    samples = {h: next((str(v) for v in frame[h].tolist() if str(v).strip()), "")[:60] for h in headers}
    context |= {
        "headers": headers, "notes": notes, "samples": samples,
        "preview": [[str(v)[:60] for v in row] for row in frame.head(5).itertuples(index=False, name=None)],
        "fields": [{"name": f, "label": page.t[f"f_{f}"], "meaning": page.t[f"m_{f}"], "required": f in required,
                    "selected": mapping.get(f)} for f in roundtrip.FIELDS],
    }
    return page.render("columns.html", "columns", **context)


@needs_manifest
def save_columns(page: Page) -> Response:
    manifest = chosen_manifest(page)
    cfg = page.ws.config_for(manifest)
    loaded = load_manifest(manifest, cfg, check_required=False)
    chosen = {f: page.request.form.get(f"col_{f}", "").strip() for f in roundtrip.FIELDS}
    errors = _mapping_errors(page, chosen, list(loaded.headers), set(required_fields(cfg)))
    if errors:
        return columns(page, errors=errors, chosen=chosen)
    path = page.ws.save_columns(manifest, {f: h for f, h in chosen.items() if h})
    page.flash("ok", page.t["columns_saved"].replace("{path}", str(path)))
    return page.redirect("/problems")


def _mapping_errors(page: Page, chosen: dict[str, str], headers: list[str], required: set[str]) -> list[str]:
    t = page.t
    by_key = {h.strip().casefold(): h for h in headers}
    errors = []
    used: dict[str, str] = {}
    for f, header in chosen.items():
        label = t[f"f_{f}"]
        if not header:
            if f in required:
                errors.append(t["err_required"].replace("{field}", label))
            elif f in by_key:  # the field's default header is in the file: it would be read anyway
                errors.append(t["err_named_like"].replace("{header}", by_key[f]).replace("{field}", label))
            continue
        if header not in headers:
            errors.append(t["err_unknown_header"].replace("{header}", header))
        elif header in used:
            errors.append(t["err_twice"].replace("{header}", header).replace("{a}", t[f"f_{used[header]}"])
                          .replace("{b}", label))
        used.setdefault(header, f)
    return errors


# --- problems -------------------------------------------------------------------------------------


@needs_manifest
def problems(page: Page) -> Response:
    manifest = chosen_manifest(page)
    cfg = page.ws.config_for(manifest)
    try:
        done = prepare.load_validated(manifest, cfg, with_durations=True)
    except ManifestError as exc:
        return page.render("problems.html", "problems", manifest_name=manifest.name, fatal=str(exc))
    vm = done.vm
    counts = {"rows": vm.n_rows, "valid": vm.n_valid, "invalid": vm.n_invalid, "carried": vm.n_carried,
              "warnings": vm.n_warnings, "agents": len(vm.agents), "audio": fmt_bytes(vm.total_bytes)}
    return page.render("problems.html", "problems", manifest_name=manifest.name, fatal=None, counts=counts,
                       notes=list(done.notes), table=tables.problem_table(vm))


@needs_manifest
def workbook(page: Page) -> Response:
    manifest = chosen_manifest(page)
    cfg = page.ws.config_for(manifest)
    # With durations, as the problems step and `validate --report`: the short-audio warnings are in it too.
    vm = prepare.load_validated(manifest, cfg, with_durations=True).vm
    with tempfile.TemporaryDirectory(prefix="allobrain-ui-") as tmp:
        # The configured sheet's name is kept, so the same config.yaml reads the fixed copy (as validate --report).
        written = roundtrip.write_workbook(vm, Path(tmp) / f"{manifest.stem}-problems.xlsx", cfg.manifest.sheet)
        data = written.read_bytes()
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{written.name}"'})


# --- plan -----------------------------------------------------------------------------------------


@needs_manifest
def plan(page: Page) -> Response:
    manifest = chosen_manifest(page)
    ws = page.ws
    cfg = ws.config_for(manifest)
    common = {"manifest_name": manifest.name,
              "default_format": "xlsx" if manifest.suffix.lower() in (".xlsx", ".xlsm") else "csv"}
    try:
        dest = ws.destination(cfg)
        done = prepare.load_validated(manifest, cfg, api=None if dest.sandbox else dest.api_url, check_trust=True,
                                      with_durations=True)
    except ImportToolError as exc:
        return page.render("plan.html", "plan", fatal=str(exc), **common)
    dry = prepare.dry_run_plan(done.vm, cfg, dest.state_dir, dest.api_url)
    p = dry.plan
    seconds = p.seconds_to_send
    figures = {
        "to_invite": len(dry.to_invite), "agents_known": len(p.agents) - len(dry.to_invite),
        "agents_list": [f"{e} ({p.agents[e]})" for e in dry.to_invite[:50]],
        "calls": len(p.to_send), "already": p.already_uploaded, "held": p.held_unknown, "invalid": p.invalid,
        "twins": len(p.twins),
        "bytes": fmt_bytes(p.bytes_to_send),
        "audio": _audio(page.t, seconds, len(p.to_send)),
        "finish": _finish(page.t, dry, cfg),
    }
    return page.render("plan.html", "plan", fatal=None, notes=list(done.notes), plan=figures,
                       can_start=dest.api_key is not None, **common)


def _audio(t: dict[str, str], seconds: float | None, calls: int) -> str:
    if calls == 0:
        return "—"
    if seconds is None:
        return t["audio_unknown"]
    return f"{fmt_duration(seconds)} ({t['hours'].replace('{h}', f'{seconds / 3600:.2f}')})"


def _finish(t: dict[str, str], dry: prepare.DryRun, cfg: Config) -> str:
    """A daily quota, a bandwidth cap or sending hours decide the finish: the library's estimate says how
    (the CLI's --dry-run prints the same); else the page's own wording of the rate limit."""
    u = cfg.upload
    paced = [line.split(":", 1)[1].strip() for line in dry.pace if line.strip().startswith("finish estimate:")]
    if paced and (u.max_per_day or u.max_mb_per_second or u.hours):
        return paced[0]
    return finish_estimate(t, len(dry.plan.to_send), u.max_per_second)


def finish_estimate(t: dict[str, str], calls: int, max_per_second: float, now: datetime | None = None) -> str:
    """What the configured limits imply; without one, the speed is the API's and no date is promised."""
    if calls == 0:
        return t["finish_nothing"]
    if max_per_second <= 0:
        return t["finish_no_limit"]
    seconds = calls / max_per_second
    when = (now or datetime.now()) + timedelta(seconds=seconds)
    return (t["finish_at"].replace("{rate}", f"{max_per_second:g}").replace("{duration}", fmt_duration(seconds))
            .replace("{when}", when.strftime("%Y-%m-%d %H:%M")))
