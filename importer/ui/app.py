"""The WSGI app: the gate first (Host, session, CSRF), then the step a URL names, rendered with Jinja.

Views live in steps.py (choose, columns, problems, plan) and running.py (run, progress, results); each takes
a `Page` and returns a Response. A library error (ImportToolError) becomes a readable page, never a traceback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from ..errors import ImportToolError
from . import i18n, running, steps
from .guard import Gate
from .page import Page

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .workspace import Workspace

MAX_UPLOAD = 1 << 30  # a manifest of a million rows is a few hundred MB
STATIC = {"style.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}

ROUTES = Map([
    Rule("/", endpoint=steps.choose, methods=["GET"]),
    Rule("/choose/upload", endpoint=steps.upload, methods=["POST"]),
    Rule("/choose/pick", endpoint=steps.pick, methods=["POST"]),
    Rule("/destination", endpoint=steps.destination, methods=["POST"]),
    Rule("/columns", endpoint=steps.columns, methods=["GET"]),
    Rule("/columns", endpoint=steps.save_columns, methods=["POST"]),
    Rule("/problems", endpoint=steps.problems, methods=["GET"]),
    Rule("/problems/workbook", endpoint=steps.workbook, methods=["GET"]),
    Rule("/plan", endpoint=steps.plan, methods=["GET"]),
    Rule("/run", endpoint=running.start, methods=["POST"]),
    Rule("/run/<int:number>", endpoint=running.run_page, methods=["GET"]),
    Rule("/run/<int:number>/events", endpoint=running.events, methods=["GET"]),
    Rule("/run/<int:number>/stop", endpoint=running.stop, methods=["POST"]),
    Rule("/results/<key>", endpoint=running.results, methods=["GET"]),
    Rule("/results/<key>/download/<fmt>", endpoint=running.download, methods=["GET"]),
    Rule("/results/<key>/rerun", endpoint=running.rerun, methods=["POST"]),
])


class UiApp:
    def __init__(self, ws: Workspace, gate: Gate, on_error: Callable[[str], None] | None = None) -> None:
        self.ws = ws
        self.gate = gate
        self.on_error = on_error
        self.closing = threading.Event()  # ends the event streams when the server stops
        self.env = Environment(loader=PackageLoader("importer.ui", "templates"),
                               autoescape=select_autoescape(default=True), undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["num"] = i18n.number

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_UPLOAD
        response = self.gate.harden(self.handle(request))
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        if not self.gate.host_ok(request):
            return _refuse(421, "This page answers only at 127.0.0.1 or localhost with its own port.")
        if request.path.startswith("/static/"):
            return _static(request.path.removeprefix("/static/"))
        csrf = self.gate.csrf_of(request)
        if csrf is None:
            return self._login(request)
        if request.method == "POST" and not (self.gate.origin_ok(request) and self.gate.csrf_ok(request, csrf)):
            return _refuse(403, "This form is stale or came from another page: reload the page and try again.")
        page = Page(self.ws, self.env, self.closing, request, csrf)
        try:
            endpoint, values = ROUTES.bind_to_environ(request.environ).match()
            return endpoint(page, **values)
        except HTTPException as exc:
            return exc.get_response(request.environ)  # type: ignore[return-value]
        except ImportToolError as exc:
            return page.render("error.html", "", http_status=400, message=str(exc))
        except Exception as exc:  # a bug: one line for the terminal, a readable page for the person
            line = f"unexpected error: {type(exc).__name__}: {exc}"
            if self.on_error:
                self.on_error(line)
            return page.render("error.html", "", http_status=500, message=line)

    def _login(self, request: Request) -> Response:
        token = request.args.get("token", "")
        sid = self.gate.spend(token) if token and request.method == "GET" else None
        if sid is None:
            return _refuse(403, "Open the link that `allobrain-import ui` printed in the terminal (each link "
                                "works once; start the command again for a new one).")
        response = redirect("/", code=303)
        self.gate.set_cookie(response, sid)
        return response


def _refuse(status: int, text: str) -> Response:
    html = (f"<!doctype html><html lang=en><meta charset=utf-8><title>allobrain-import</title>"
            f"<p>{text}</p></html>")
    return Response(html, status=status, mimetype="text/html")


def _static(name: str) -> Response:
    if name not in STATIC:
        raise_404 = NotFound()
        return raise_404.get_response()  # type: ignore[return-value]
    data = resources.files("importer.ui").joinpath("static", name).read_bytes()
    return Response(data, mimetype=STATIC[name], headers={"Cache-Control": "no-cache"})
