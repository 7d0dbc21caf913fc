"""A real CONNECT proxy on loopback for the HTTPS tests: it tunnels bytes, counts CONNECTs, and can ask for
credentials (407) the way a company proxy does. A thread per connection; a few dozen lines of sockets.
With `forward=True` it also forwards plain-http requests sent to it with an absolute URL (`forwarded`).

    with ConnectProxy(credentials=("alice", "s3cret")) as proxy:
        env = {"HTTPS_PROXY": proxy.url_with("alice", "s3cret")}
        ...
        proxy.connects      # CONNECT requests seen, e.g. [("127.0.0.1:41234", True)]  (target, allowed)
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from urllib.parse import quote


class ConnectProxy:
    def __init__(self, credentials: tuple[str, str] | None = None, refuse_status: int | None = None,
                 refuse_after: int | None = None, forward: bool = False) -> None:
        self.credentials = credentials
        self.forward = forward
        self.forwarded: list[tuple[str, str]] = []  # (method, absolute URL) of the plain-http requests
        self.refuse_status = refuse_status  # answer every CONNECT with this status (e.g. 403)...
        self.refuse_after = refuse_after  # ... or only those after the first N (a proxy whose policy changes)
        self.connects: list[tuple[str, bool]] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._sock.settimeout(0.1)  # so the accept loop notices the stop
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{self.address}"

    def __enter__(self) -> ConnectProxy:
        t = threading.Thread(target=self._serve, name="test-proxy", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        for t in self._threads:
            t.join(2)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            # Tunnels are not joined at exit: they end when either side closes.
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _allowed(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        want = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        return headers.get("proxy-authorization") == want

    def _handle(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            if method != "CONNECT" and self.forward and target.startswith("http://"):
                self._forward(client, head, method, target)
                return
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            with self._lock:
                refusing = self.refuse_status is not None and len(self.connects) >= (self.refuse_after or 0)
                allowed = self._allowed(headers) and not refusing
                self.connects.append((target, allowed))
            if not allowed:
                status = 407 if not self._allowed(headers) else self.refuse_status
                reason = "Proxy Authentication Required" if status == 407 else "Forbidden"
                client.sendall(f"HTTP/1.1 {status} {reason}\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
                return
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            with upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pipe_both(client, upstream)


    def _forward(self, client: socket.socket, head: bytes, method: str, target: str) -> None:
        """One request to its origin, the request line made relative and the connection closed after the
        answer (so the client never sends a second request down a connection made for the first)."""
        with self._lock:
            self.forwarded.append((method, target))
        hostport, _, path = target[len("http://"):].partition("/")
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
        first, _, rest = head.partition(b"\r\n")
        version = first.rsplit(b" ", 1)[-1]
        lines = [ln for ln in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                 if not ln.lower().startswith((b"proxy-", b"connection:", b"keep-alive:"))]
        body = rest.split(b"\r\n\r\n", 1)[1]
        request = b"\r\n".join([f"{method} /{path} ".encode() + version, *lines, b"Connection: close", b"", b""])
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        with upstream:
            upstream.sendall(request + body)
            _pipe_both(client, upstream)


def _pipe_both(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    a.settimeout(None)
    b.settimeout(None)
    other = threading.Thread(target=pump, args=(b, a), daemon=True)
    other.start()
    pump(a, b)
    other.join(30)
