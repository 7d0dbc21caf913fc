"""A real https server for the tests: files from a folder, a trustme certificate, with or without Range
support (and If-Match), an optional required Authorization header, and a list of paths answered 403."""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sourcekit


def require() -> None:
    sourcekit.require("trustme")


class HttpsFiles:
    def __init__(self, folder: Path, *, ranges: bool, token: str | None = None) -> None:
        import trustme

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ranges = ranges
        self.token = token
        self.denied: set[str] = set()
        self.seen_auth: list[str | None] = []
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.seen_auth.append(self.headers.get("Authorization"))
                path = self.path.lstrip("/")
                target = outer.folder / path
                if outer.token and self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._answer(401, b"no")
                if path in outer.denied:
                    return self._answer(403, b"forbidden")
                if not target.is_file():
                    return self._answer(404, b"not found")
                body = target.read_bytes()
                etag = '"' + hashlib.md5(body).hexdigest() + '"'
                headers = {"ETag": etag, "Last-Modified": formatdate(target.stat().st_mtime, usegmt=True)}
                if outer.ranges:
                    if self.headers.get("If-Match") not in (None, etag):
                        return self._answer(412, b"precondition failed")
                    wanted = self.headers.get("Range", "")
                    if wanted.startswith("bytes="):
                        start, _, end = wanted[6:].partition("-")
                        first, last = int(start), min(int(end or len(body) - 1), len(body) - 1)
                        headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                        return self._answer(206, body[first:last + 1], headers)
                self._answer(200, body, headers)

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # the client may hang up after the first bytes (validation against a server without Range)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}"

    def trust(self, monkeypatch: pytest.MonkeyPatch, where: Path) -> None:
        """requests reads REQUESTS_CA_BUNDLE: how a company's private CA is trusted for https sources."""
        self.ca.cert_pem.write_to_path(str(where))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(where))

    def __enter__(self) -> HttpsFiles:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(params=["ranges", "no ranges"])
def https_files(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpsFiles]:
    require()
    with HttpsFiles(tmp_path / "served", ranges=request.param == "ranges", token="tok-123") as server:
        yield server
