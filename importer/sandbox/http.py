"""The sandbox's HTTP transport: the listening socket, the body readers and a Werkzeug request handler.

The handler keeps HTTP/1.1 connections alive, turns Nagle off, can drop a connection without answering,
and never writes to stderr; the readers bound and hash request bodies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import socket
import ssl
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

logger = logging.getLogger("importer.sandbox")


def server_tls_context(cert: str | None, key: str | None) -> ssl.SSLContext:
    """The context of an HTTPS sandbox, from a PEM certificate (chain) and its private key."""
    if not (cert and key):
        raise ValueError("--tls-cert and --tls-key go together: give both (PEM files)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ValueError(f"TLS certificate or key not found: {exc.filename or cert}") from None
    except (ssl.SSLError, OSError) as exc:
        why = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ValueError(f"cannot load the TLS certificate {cert} with the key {key} ({why}); "
                         "--tls-cert takes a PEM certificate, --tls-key its PEM private key") from None
    return ctx


def listen(host: str, port: int, app: WSGIApplication, registry: ConnectionRegistry,
           tls: ssl.SSLContext | None = None) -> BaseWSGIServer:
    """A threaded Werkzeug server on host:port whose connections are tracked by `registry`; HTTPS with `tls`."""
    # Werkzeug prints to stderr and calls sys.exit(1) when it cannot bind; bind here instead so
    # the caller gets an OSError it can report, and hand Werkzeug the listening socket.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    handler = type("BoundSandboxRequestHandler", (SandboxRequestHandler,), {"registry": registry})
    try:
        server = make_server(
            host,
            listener.getsockname()[1],
            app,
            threaded=True,
            request_handler=handler,
            fd=listener.fileno(),
        )
    finally:
        listener.close()  # the server holds its own duplicate of the descriptor
    if tls is not None:
        # Not make_server(ssl_context=): that shakes hands inside accept(), on the one thread that accepts, so
        # a client that never finishes its handshake would block every other. Here each connection's
        # handshake runs on its own thread (SandboxRequestHandler.handle), and is counted.
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        server.ssl_context = tls  # Werkzeug then says https in the WSGI environ
    return server


class HashingReader(io.RawIOBase):
    """Counts and hashes every body byte the app reads, so tests can prove two sends were byte-identical."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self._sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        readinto = getattr(self._inner, "readinto", None)
        if readinto is not None:
            n = readinto(view) or 0
        else:
            data = self._inner.read(len(view))
            n = len(data)
            view[:n] = data
        if n:
            self._sha.update(view[:n])
            self.size += n
        return n

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class _BoundedReader(io.RawIOBase):
    """The handler's view of one request body: never reads past Content-Length, so after the response
    Werkzeug's leftover-drain cannot swallow the next request line of a kept-alive connection."""

    def __init__(self, raw: IO[bytes], limit: int, handler: SandboxRequestHandler) -> None:
        self._raw = raw
        self.remaining = limit
        self._handler = handler

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        # Werkzeug drains with read(10_000_000); RawIOBase would allocate that much even for 0 bytes left.
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if size <= 0 or self._handler.dropped:
            return b""
        return super().read(size) or b""

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0 or self._handler.dropped:
            return 0
        view = memoryview(buffer).cast("B")[: self.remaining]
        # readinto1 returns what has arrived instead of blocking until the whole buffer is full.
        reader = getattr(self._raw, "readinto1", None) or self._raw.readinto  # type: ignore[attr-defined]
        n = reader(view) or 0
        self.remaining -= n
        return n


class ConnectionRegistry:
    """Live connections and their threads, so stop() can end idle keep-alive sockets and join everything."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[SandboxRequestHandler, threading.Thread] = {}
        self._closed = False
        self.handshakes = 0  # TLS handshakes begun (succeeded or not), so tests can see a retry storm

    def add(self, handler: SandboxRequestHandler) -> None:
        with self._lock:
            self._live[handler] = threading.current_thread()
            closed = self._closed
        if closed:
            _shutdown_quietly(handler.connection)

    def count_handshake(self) -> None:
        with self._lock:
            self.handshakes += 1

    def discard(self, handler: SandboxRequestHandler) -> None:
        with self._lock:
            self._live.pop(handler, None)

    def close_all(self, timeout: float) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live.items())
        for handler, _thread in live:
            _shutdown_quietly(handler.connection)
        deadline = time.monotonic() + timeout
        for _handler, thread in live:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))


def _shutdown_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def drop_connection(environ: WSGIEnvironment) -> None:
    """End the TCP connection without any response.

    shutdown() is what the client sees (FIN, or RST when unread data remains); close() only marks the
    socket, because the handler's rfile still holds it: the descriptor is released when the handler
    finishes, so it can never be reused by another connection while this thread still writes to it.
    """
    handler = environ.get("sandbox.handler")
    if isinstance(handler, SandboxRequestHandler):
        handler.dropped = True
        handler.close_connection = True
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        _shutdown_quietly(sock)
        sock.close()


def force_close(environ: WSGIEnvironment) -> None:
    """Answer with `Connection: close` (the body was not read to its end, so the stream is out of step)."""
    handler = environ.get("sandbox.handler")
    if isinstance(handler, SandboxRequestHandler):
        handler.close_after = True


def drain(stream: IO[bytes]) -> None:
    """Read the rest of the body so the kept-alive connection is in step and its hash is complete."""
    while stream.read(64 * 1024):
        pass


class SandboxRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with keep-alive restored, a drop switch and no per-request output.

    Werkzeug 3.1 sends `Connection: close` on every response because http.server cannot tell where an
    unread body ends. Here every body is read through a Content-Length bound, so the connection can stay
    open; only chunked or malformed bodies, and answers given before the body was read, close it.
    """

    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections hold a thread each; this bounds how long.
    timeout = 120
    # Headers and body go out in separate writes; with Nagle on, the second waits ~40 ms for the
    # client's delayed ACK on every response.
    disable_nagle_algorithm = True
    registry: ConnectionRegistry  # set on the per-Sandbox subclass

    dropped: bool = False
    close_after: bool = False

    def setup(self) -> None:
        super().setup()
        self.registry.add(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.registry.discard(self)

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.registry.count_handshake()
                self.connection.do_handshake()  # a client refusing our certificate ends here, quietly
            super().handle()
        except Exception:
            # socketserver would print this traceback to stderr; a dropped or stopped connection is routine.
            logger.debug("sandbox connection ended with an error", exc_info=True)

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        environ["sandbox.handler"] = self
        return environ

    def run_wsgi(self) -> None:
        self.close_after = False
        raw = self.rfile
        bounded: _BoundedReader | None = None
        if self.headers.get("Transfer-Encoding"):
            # Werkzeug dechunks from the raw stream; where the body ends is only known to it, so close.
            self.close_after = True
        else:
            length_header = self.headers.get("Content-Length")
            try:
                limit = int(length_header) if length_header is not None else 0
            except ValueError:
                limit = -1
            if limit < 0:
                self.close_after = True
                limit = 0
            bounded = _BoundedReader(raw, limit, self)
            self.rfile = bounded  # type: ignore[assignment]
        try:
            super().run_wsgi()
        finally:
            self.rfile = raw
        if self.close_after or self.dropped or (bounded is not None and bounded.remaining > 0):
            self.close_connection = True

    def send_header(self, keyword: str, value: str) -> None:
        closing = keyword.lower() == "connection" and value.strip().lower() == "close"
        if closing and not (self.close_after or self.close_connection):
            return
        super().send_header(keyword, value)

    # Werkzeug logs every request (and any error) to stderr through the "werkzeug" logger, adding a
    # handler if none exists; the CLI owns the terminal, so everything goes to our logger at debug level.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("sandbox %s %s -> %s", self.command, self.path, code)

    def log_error(self, format: str, *args: Any) -> None:
        logger.debug("sandbox: " + format, *args)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox: " + format, *args)

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("sandbox %s: " + message, type, *args)
