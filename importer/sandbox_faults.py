"""The sandbox's fault model and its connection plumbing.

Two concerns live here so that `sandbox.py` can read as the API contract alone:

- faults: scripted actions (`Sandbox.inject`), random 500/503 and drops, and the token-bucket rate limit;
- transport: a Werkzeug request handler that keeps HTTP/1.1 connections alive, can drop a connection
  without answering, and never writes to stderr; plus the readers that bound and hash request bodies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any

from werkzeug.serving import WSGIRequestHandler

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

logger = logging.getLogger("importer.sandbox")

RETRY_AFTER_DEFAULT = "1"
# Statuses whose answers carry Retry-After unless the injected action sets it.
RETRY_AFTER_STATUSES = frozenset({429, 503})

# Kinds of Fault.kind
STATUS = "status"
STORE_THEN_DROP = "store_then_drop"
STORE_THEN_STATUS = "store_then_status"
RESET_MID_BODY = "reset_mid_body"
HANG = "hang"

_STORE_THEN_STATUS_RE = re.compile(r"store_then_(5\d\d)")


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one request; `label` is what `requests_log()` shows under "fault"."""

    kind: str
    label: str
    status: int | None = None
    retry_after: str | None = None
    # Set only for ("status", code, body): the raw body, sent verbatim.
    body: bytes | None = None


def _check_status(code: object, *, lowest: int = 400) -> int:
    if isinstance(code, bool) or not isinstance(code, int) or not lowest <= code <= 599:
        raise ValueError(f"fault status must be an int from {lowest} to 599, got {code!r}")
    return code


def parse_action(action: object) -> Fault:
    """Turn one `inject` action into a Fault; a typo raises ValueError now rather than misbehaving later."""
    if isinstance(action, int) and not isinstance(action, bool):
        code = _check_status(action)
        retry = RETRY_AFTER_DEFAULT if code in RETRY_AFTER_STATUSES else None
        return Fault(STATUS, f"inject:{code}", status=code, retry_after=retry)
    if isinstance(action, str):
        if action in (STORE_THEN_DROP, RESET_MID_BODY, HANG):
            return Fault(action, f"inject:{action}")
        match = _STORE_THEN_STATUS_RE.fullmatch(action)
        if match:
            return Fault(STORE_THEN_STATUS, f"inject:{action}", status=int(match.group(1)))
    if isinstance(action, tuple):
        if len(action) == 2 and isinstance(action[1], str):
            code = _check_status(action[0])
            return Fault(STATUS, f"inject:{code}", status=code, retry_after=action[1])
        if len(action) == 3 and action[0] == "status" and isinstance(action[2], str | bytes):
            code = _check_status(action[1], lowest=200)
            body = action[2].encode("utf-8") if isinstance(action[2], str) else action[2]
            return Fault(STATUS, f"inject:status:{code}", status=code, body=body)
    raise ValueError(
        f"unknown fault action {action!r}: use a status int, (429|503, 'Retry-After'), ('status', code, body), "
        "'store_then_drop', 'store_then_500|502|504', 'reset_mid_body' or 'hang'"
    )


def default_detail(code: int) -> Any:
    """The FastAPI-style `detail` of an injected status without a custom body."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = f"HTTP {code}"
    if code == 422:
        return [{"loc": ["body"], "msg": phrase, "type": "value_error"}]
    return phrase


class FaultPlan:
    """Scripted faults (FIFO per path) first, then random ones; thread-safe and reproducible with a seed."""

    def __init__(
        self, *, paths: Collection[str], fail_rate: float, drop_rate: float, seed: int | None
    ) -> None:
        for name, rate in (("fail_rate", fail_rate), ("drop_rate", drop_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate!r}")
        self._paths = frozenset(paths)
        self._fail_rate = fail_rate
        self._drop_rate = drop_rate
        self._rng = random.Random(seed)
        self._queues: dict[str, deque[Fault]] = {path: deque() for path in self._paths}
        self._lock = threading.Lock()

    def inject(self, path: str, actions: Iterable[object]) -> None:
        if path not in self._paths:
            raise ValueError(f"faults can be injected on {sorted(self._paths)}, not {path!r}")
        # Parse everything before queueing anything, so a bad action leaves the plan unchanged.
        faults = [parse_action(action) for action in actions]
        with self._lock:
            self._queues[path].extend(faults)

    def pending(self, path: str) -> int:
        with self._lock:
            return len(self._queues.get(path, ()))

    def next_fault(self, path: str, *, droppable: bool) -> Fault | None:
        with self._lock:
            queue = self._queues.get(path)
            if queue:
                return queue.popleft()
            if self._fail_rate and self._rng.random() < self._fail_rate:
                code = 500 if self._rng.random() < 0.5 else 503
                retry = RETRY_AFTER_DEFAULT if code in RETRY_AFTER_STATUSES else None
                return Fault(STATUS, f"random:{code}", status=code, retry_after=retry)
            if droppable and self._drop_rate and self._rng.random() < self._drop_rate:
                return Fault(STORE_THEN_DROP, "random:store_then_drop")
        return None


class TokenBucket:
    """`rate` requests per second with a burst of one second's worth, so an evenly paced client never trips it."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate


def retry_after_seconds(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


# --------------------------------------------------------------------------------------------- transport


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

    def add(self, handler: SandboxRequestHandler) -> None:
        with self._lock:
            self._live[handler] = threading.current_thread()
            closed = self._closed
        if closed:
            _shutdown_quietly(handler.connection)

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
