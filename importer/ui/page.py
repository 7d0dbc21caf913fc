"""One request as a view sees it (`Page`), and what every page shows around its step: the steps bar and
where the runs go (the sandbox or the API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from ..config import Config
from ..errors import ImportToolError
from . import i18n

if TYPE_CHECKING:
    import threading

    from jinja2 import Environment

    from .workspace import Workspace


class Page:
    """One request as a view sees it: the workspace, the labels in the reader's language, and rendering."""

    def __init__(self, ws: Workspace, env: Environment, closing: threading.Event, request: Request,
                 csrf: str) -> None:
        self.ws = ws
        self.env = env
        self.closing = closing  # set when the server stops: event streams end
        self.request = request
        self.csrf = csrf
        self.lang = request.accept_languages.best_match(i18n.LANGUAGES, default=i18n.LANGUAGES[0])
        self.t = i18n.labels(self.lang)

    def render(self, template: str, step: str, http_status: int = 200, **context: Any) -> Response:
        html = self.env.get_template(template).render(
            t=self.t, lang=self.lang, csrf=self.csrf, step=step, steps=nav(self),
            dest=destination_badge(self), flashes=self.ws.take_flashes(), **context)
        return Response(html, status=http_status, mimetype="text/html")

    def redirect(self, url: str) -> Response:
        return redirect(url, code=303)

    def flash(self, kind: str, text: str) -> None:
        self.ws.flash(kind, text)


STEPS = ("choose", "columns", "problems", "plan", "run", "results")


def nav(page: Page) -> list[tuple[str, str, str | None]]:
    ws = page.ws
    last = ws.jobs[-1] if ws.jobs else None
    links = {"choose": "/"}
    if ws.chosen is not None:
        links |= {"columns": "/columns", "problems": "/problems", "plan": "/plan"}
    if last is not None:
        links |= {"run": f"/run/{last.number}", "results": f"/results/{last.key}"}
    return [(s, page.t[f"step_{s}"], links.get(s)) for s in STEPS]


def destination_badge(page: Page) -> dict[str, Any]:
    ws = page.ws
    cfg = _config_or_default(page)
    var = cfg.api.api_key_env
    if ws.sandbox_on:
        return {"sandbox": True, "label": page.t["badge_sandbox"], "api": page.t["where_sandbox"],
                "key_source": "sandbox", "key_var": var}
    return {"sandbox": False, "label": page.t["badge_api"].replace("{api}", cfg.api.base_url),
            "api": cfg.api.base_url, "key_source": ws.key_source(cfg), "key_var": var}


def _config_or_default(page: Page) -> Config:
    try:
        return page.ws.config_for(page.ws.chosen) if page.ws.chosen else Config()
    except ImportToolError:
        return Config()
