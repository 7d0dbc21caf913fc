"""Who may use the page: the person who started it, from this machine, through this page.

- The server listens on 127.0.0.1 only.
- Host: a request must name 127.0.0.1 or localhost with this port. A web page elsewhere that points its own
  name at 127.0.0.1 (DNS rebinding) sends its own name as Host, and is refused.
- The printed URL carries a one-time token; the first request with it gets a session cookie (HttpOnly: no
  script reads it; SameSite=Strict: no other site's page sends it) and the token is spent.
- Every state-changing request (POST) carries the session's CSRF token in its form, and an Origin header,
  when the browser sends one, must be this page's.
- Every answer forbids framing, inline scripts and anything not served by this page (Content-Security-Policy),
  is never cached, and sends a Referer only to this page (whose first URL, holding the token, redirects at once).
"""

from __future__ import annotations

import hmac
import secrets
import threading

from werkzeug.wrappers import Request, Response

COOKIE = "allobrain_ui"
HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Gate:
    def __init__(self) -> None:
        self.port = 0  # set once the server is bound
        self._token: str | None = secrets.token_urlsafe(32)
        self._sessions: dict[str, str] = {}  # session id -> its CSRF token
        self._lock = threading.Lock()

    @property
    def token(self) -> str:
        """The one-time token for the printed URL (empty once spent)."""
        return self._token or ""

    def host_ok(self, request: Request) -> bool:
        host = request.headers.get("Host", "")
        return host in (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    def origin_ok(self, request: Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not every client sends one; the CSRF token still decides
            return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
        return origin in (f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}")

    def spend(self, token: str) -> str | None:
        """Exchange the one-time token for a new session id; None when it is wrong or already spent."""
        with self._lock:
            if self._token is None or not hmac.compare_digest(token.encode(), self._token.encode()):
                return None
            self._token = None
            sid = secrets.token_urlsafe(32)
            self._sessions[sid] = secrets.token_urlsafe(32)
            return sid

    def csrf_of(self, request: Request) -> str | None:
        """The CSRF token of the request's session, or None when it has no valid session."""
        sid = request.cookies.get(COOKIE, "")
        with self._lock:
            for known, csrf in self._sessions.items():
                if sid and hmac.compare_digest(sid.encode(), known.encode()):
                    return csrf
        return None

    @staticmethod
    def csrf_ok(request: Request, csrf: str) -> bool:
        sent = request.form.get("csrf", "")
        return bool(sent) and hmac.compare_digest(sent.encode(), csrf.encode())

    @staticmethod
    def set_cookie(response: Response, sid: str) -> None:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")

    @staticmethod
    def harden(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
