"""The page's server: Werkzeug's threaded WSGI server on 127.0.0.1 only, quiet (the CLI alone prints).

    server = UiServer(folder=Path("."), port=8421).start()
    print(server.url)   # http://127.0.0.1:8421/?token=...   (the token works once)
    ...
    server.stop()       # runs in progress stop as on Ctrl-C; their results are complete
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import UiApp
from .guard import Gate
from .workspace import Workspace

HOST = "127.0.0.1"  # never another: the page holds an API key and reads files


class _QuietHandler(WSGIRequestHandler):
    """No request lines on stderr (the first one would show the token) and no tracebacks: the app turns
    its errors into pages and hands the CLI one line."""

    def log(self, type: str, message: str, *args: object) -> None:  # noqa: A002 - Werkzeug's signature
        pass


class UiServer:
    def __init__(self, *, folder: Path, port: int = 8421, config: Path | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.workspace = Workspace(folder, config)
        self.gate = Gate()
        self.app = UiApp(self.workspace, self.gate, on_error)
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The URL to open: it carries the one-time token."""
        return f"http://{HOST}:{self.port}/?token={self.gate.token}"

    def start(self) -> UiServer:
        # Bound here rather than by Werkzeug, which prints and exits when the port is taken.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, self.port))
            listener.listen(64)
            self.port = listener.getsockname()[1]
            self._server = make_server(HOST, self.port, self.app, threaded=True, request_handler=_QuietHandler,
                                       fd=listener.fileno())
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {HOST}:{self.port}: {exc.strerror}") from exc
        finally:
            listener.close()  # the server holds its own duplicate
        self.gate.port = self.port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="ui-server", daemon=True)
        self._thread.start()
        return self

    def running_jobs(self) -> int:
        return sum(1 for j in self.workspace.jobs if j.running)

    def stop(self, timeout: float = 60.0) -> None:
        """Runs stop as on Ctrl-C (in-flight uploads finish, results complete), then the server."""
        self.app.closing.set()
        self.workspace.close(timeout)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> UiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
