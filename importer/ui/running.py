"""The run and what follows: start it, follow it (server-sent events), stop it (as Ctrl-C), read the results,
download them, rerun what is left. The run itself is `run_import`, exactly as the CLI calls it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from werkzeug.exceptions import NotFound
from werkzeug.utils import send_file
from werkzeug.wrappers import Response

from .. import prepare
from ..errors import ManifestError
from ..manifest import load_manifest
from ..results import STATUSES, default_results_path
from . import tables
from .jobs import Job
from .steps import chosen_manifest, needs_manifest

if TYPE_CHECKING:
    from .page import Page

EVENT_INTERVAL = 0.25  # at most four updates a second, however fast rows finish
KEEPALIVE = 10.0


@needs_manifest
def start(page: Page) -> Response:
    ws = page.ws
    with ws.lock:
        busy = ws.running_job()
        if busy is not None:
            page.flash("error", page.t["run_busy"])
            return page.redirect(f"/run/{busy.number}")
        manifest = chosen_manifest(page)
        cfg = ws.config_for(manifest)
        dest = ws.destination(cfg)
        if dest.api_key is None:
            page.flash("error", page.t["p_no_key"].replace("{var}", cfg.api.api_key_env))
            return page.redirect("/plan")
        form = page.request.form
        retry_unknown = form.get("retry_unknown") == "on" or cfg.upload.retry_unknown
        # As `run` does: validated again (the files may have changed since the plan), without durations.
        vm = prepare.load_validated(manifest, cfg, api=None if dest.sandbox else dest.api_url, check_trust=True).vm
        suffix = ".xlsx" if form.get("format") == "xlsx" else ".csv"  # the plan step's choice
        results_path = default_results_path(vm.loaded.path, vm.loaded.is_results, suffix=suffix).absolute()
        job = Job(number=len(ws.jobs) + 1, manifest=manifest, results_path=results_path, sandbox=dest.sandbox,
                  api=dest.api_url)
        job.key = ws.remember(results_path)
        ws.jobs.append(job)
        job.start(vm, cfg, api_url=dest.api_url, api_key=dest.api_key, state_dir=dest.state_dir,
                  retry_unknown=retry_unknown)
    return page.redirect(f"/run/{job.number}")


def _job(page: Page, number: int) -> Job:
    job = page.ws.job(number)
    if job is None:
        raise NotFound()
    return job


def run_page(page: Page, number: int) -> Response:
    job = _job(page, number)
    return page.render("run.html", "run", job=job, snap=job.snapshot(), statuses=STATUSES)


def events(page: Page, number: int) -> Response:
    job = _job(page, number)
    closing = page.closing

    def stream() -> Iterator[bytes]:
        seen, last_sent = -1, 0.0
        while not closing.is_set():
            snap = job.snapshot()
            yield f"event: progress\ndata: {json.dumps(snap)}\n\n".encode()
            last_sent = time.monotonic()
            if snap["state"] in ("done", "failed"):
                yield b"event: end\ndata: {}\n\n"
                return
            seen = job.progress.wait(seen, KEEPALIVE)
            time.sleep(max(0.0, EVENT_INTERVAL - (time.monotonic() - last_sent)))

    return Response(stream(), mimetype="text/event-stream", direct_passthrough=True,
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def stop(page: Page, number: int) -> Response:
    _job(page, number).stop.request()
    return page.redirect(f"/run/{number}")


def _results_path(page: Page, key: str) -> Path:
    path = page.ws.results.get(key)
    if path is None:
        raise NotFound()
    return path


def results(page: Page, key: str) -> Response:
    ws = page.ws
    path = _results_path(page, key)
    job = next((j for j in ws.jobs if j.key == key), None)
    if job is not None and job.running:
        return page.redirect(f"/run/{job.number}")
    status = page.request.args.get("status") or None
    status = status if status in STATUSES else None
    context = {"path": str(path), "key": key, "status": status, "job_note": _job_note(page, job), "fatal": None}
    try:
        cfg = ws.config_for(path)
        loaded = load_manifest(path, cfg, check_required=False)
    except (ManifestError, OSError) as exc:
        return page.render("results.html", "results", **(context | {"fatal": str(exc)}))
    table = tables.results_table(loaded, cfg, status)
    downloads = [(page.t[f"download_{fmt}"], f"/results/{key}/download/{fmt}") for fmt in _formats(path)]
    return page.render("results.html", "results", counts=table.counts, total=table.total, rows=table.rows,
                       shown=len(table.rows), matching=table.matching, left=table.left, downloads=downloads,
                       **context)


def _job_note(page: Page, job: Job | None) -> dict[str, str] | None:
    if job is None:
        return None
    snap = job.snapshot()
    if snap["error"]:
        return {"kind": "error", "text": snap["error"]}
    if snap["stopped"]:
        why = page.t["run_interrupted"] if snap["stopped"] == "interrupted" else snap["stopped"]
        return {"kind": "error", "text": f"{page.t['run_stopped']} {why}"}
    return None


def _formats(path: Path) -> list[str]:
    """The results formats on disk: the file itself, and its twin in the other format when there is one."""
    found = []
    for fmt in ("csv", "xlsx"):
        if path.with_suffix(f".{fmt}").is_file():
            found.append(fmt)
    return found


def download(page: Page, key: str, fmt: str) -> Response:
    path = _results_path(page, key)
    if fmt not in _formats(path):
        raise NotFound()
    target = path.with_suffix(f".{fmt}")
    return send_file(target, page.request.environ, as_attachment=True, download_name=target.name,
                     max_age=0, conditional=False)


def rerun(page: Page, key: str) -> Response:
    path = _results_path(page, key)
    page.ws.chosen = path
    return page.redirect("/plan")
