"""Helpers for the reliability suite (tests/test_reliability_*.py).

- manifests with absolute file paths and distinct, tiny recordings, and a config with an isolated ledger;
- the CLI as a child process (for SIGKILL) and waiting for a condition with a generous deadline;
- what the server holds, as fingerprints (sha256 of the file + the fields) to prove "exactly once";
- `ScriptedServer`: a few dozen lines of socket code for the faults the sandbox cannot play (a server that
  never answers, a redirect, a reset after half the body, a port that counts its hits).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from conftest import make_wav
from runkit import CAMPAIGN, read_results

REPO = Path(__file__).resolve().parents[1]
HEADERS = ["file_path", "agent_email", "agent_name", "conversation_timestamp", "campaign_id", "site"]
BASE_TS = 1_750_000_000


# --- manifests, config -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One manifest row as the server should receive it."""

    row: int  # spreadsheet row number
    file: Path
    email: str
    ts: int
    sha256: str

    @property
    def fingerprint(self) -> tuple[str, str, str, str]:
        return (self.sha256, CAMPAIGN, self.email, str(self.ts))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(folder: Path, n: int, *, agents: int = 2, files: int | None = None, seconds: float = 0.05,
                   name: str = "calls.csv") -> tuple[Path, list[Row]]:
    """n valid rows with absolute file paths and distinct timestamps. `files` distinct recordings are
    shared round-robin (default: one per row)."""
    n_files = n if files is None else files
    audio = [make_wav(folder / "audio" / f"rec{i:05d}.wav", seconds=seconds, seed=i) for i in range(n_files)]
    digests = [sha256_of(p) for p in audio]
    rows: list[Row] = []
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        for i in range(n):
            k = i % n_files
            email = f"agent{i % agents}@example.com"
            ts = BASE_TS + i * 60
            w.writerow([str(audio[k]), email, f"Agent {i % agents}", ts, CAMPAIGN, "Lyon" if i % 2 else "Paris"])
            rows.append(Row(i + 2, audio[k], email, ts, digests[k]))
    return path, rows


def write_config(folder: Path, *, name: str = "reliability.yaml", agents: dict[str, Any] | None = None,
                 **upload: Any) -> Path:
    """A config whose ledger lives in folder/state; keyword arguments are `upload:` keys."""
    data: dict[str, Any] = {"state_dir": str(folder / "state"), "upload": {"max_attempts": 4, **upload}}
    if agents:
        data["agents"] = agents
    path = folder / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def make_big_wav(path: Path, nbytes: int) -> Path:
    """A valid WAV of about `nbytes` of noise (fast: no per-sample Python loop)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(os.urandom(nbytes - nbytes % 2))
    return path


# --- child processes and waiting -------------------------------------------------------------------


def child_env(key: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, ALLOBRAIN_API_KEY=key, PYTHONPATH=str(REPO), **extra)
    env.pop("PYTHONWARNINGS", None)
    return env


def spawn_run(manifest: Path, config: Path, api_url: str, key: str, results: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "importer", "run", str(manifest), "--config", str(config), "--api-url", api_url,
           "--quiet", "--results", str(results), *extra]
    return subprocess.Popen(cmd, env=child_env(key), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)


def wait_until(condition: Callable[[], object], timeout: float = 20.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


# --- what the server holds -------------------------------------------------------------------------


def server_fingerprints(calls: Iterable[dict[str, Any]]) -> Counter[tuple[str, str, str, str]]:
    """How many times each (sha256, campaign, agent, timestamp) reached the server's storage."""
    return Counter(
        (c["sha256"], c["campaign_id"], c["agent_email"], c["fields"]["conversation_timestamp"]) for c in calls
    )


def check_results_file(path: Path, rows: list[Row]) -> list[dict[str, str]]:
    """The results CSV has exactly one line per manifest row, in manifest order; returns its lines."""
    lines = read_results(path)
    assert [x["import_row"] for x in lines] == [str(r.row) for r in rows], "one line per row, in order"
    return lines


def assert_exactly_once(lines: list[dict[str, str]], rows: list[Row], calls: list[dict[str, Any]],
                        *, allowed: set[str] = frozenset({"uploaded", "already_uploaded", "unknown"})) -> dict:
    """Every row not `unknown` is on the server exactly once; an `unknown` row at most once; nothing else
    reached the server. Returns the rows grouped by status."""
    held = server_fingerprints(calls)
    by_status: dict[str, list[Row]] = {}
    for line, row in zip(lines, rows, strict=True):
        by_status.setdefault(line["import_status"], []).append(row)
    assert set(by_status) <= allowed, {k: len(v) for k, v in by_status.items()}
    for status, group in by_status.items():
        for row in group:
            n = held[row.fingerprint]
            if status in ("uploaded", "already_uploaded"):
                assert n == 1, f"row {row.row} is {status} but the server holds it {n} times"
            else:
                assert n <= 1, f"row {row.row} ({status}) reached the server {n} times"
    expected = {r.fingerprint for r in rows}
    assert set(held) <= expected, "the server holds a call no row describes"
    return by_status


# --- a scripted server -----------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on (the socket is closed again at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def length(self) -> int:
        return int(self.headers.get("content-length", "0") or 0)


class Conn:
    """One accepted connection with a read buffer; just enough HTTP/1.1 for scripted answers."""

    def __init__(self, sock: socket.socket, server: ScriptedServer) -> None:
        self.sock = sock
        self.server = server
        self.buf = b""

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(256 * 1024)
        except OSError:
            return False
        self.buf += chunk
        return bool(chunk)

    def read_request(self) -> Request | None:
        """The request line and headers (the body is left unread); None when the client went away."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Request(method, path, headers)

    def read_body(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                break
        body, self.buf = self.buf[:n], self.buf[n:]
        return body

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        lines = [f"HTTP/1.1 {status} Scripted", f"Content-Length: {len(body)}",
                 "Content-Type: application/json"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0), as a server or middlebox that gives up on a connection."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with contextlib.suppress(OSError):
            self.sock.close()

    def hang(self) -> None:
        """Hold the connection open, answering nothing, until the server stops."""
        self.server.stopping.wait()


class ScriptedServer:
    """A threaded TCP server on loopback. Each accepted connection runs `handler(conn)` in its own thread.
    `hits` counts accepted connections. `stop()` closes every socket and joins every thread it started."""

    def __init__(self, handler: Callable[[Conn], None], *, host: str = "127.0.0.1", rcvbuf: int | None = None) -> None:
        self.handler = handler
        self.stopping = threading.Event()
        self.hits = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # accepted sockets inherit it: the client cannot park a large body in our kernel buffer
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def __enter__(self) -> ScriptedServer:
        t = threading.Thread(target=self._accept, name="scripted-accept", daemon=True)
        self._threads.append(t)
        t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self.stopping.is_set():
                    sock.close()
                    return
                self.hits += 1
                self._socks.append(sock)
                t = threading.Thread(target=self._serve, args=(sock,), name="scripted-conn", daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handler(Conn(sock, self))
        with contextlib.suppress(OSError):
            sock.close()

    def track(self, sock: socket.socket) -> None:
        """Have stop() close a socket a handler opened (an upstream connection)."""
        with self._lock:
            self._socks.append(sock)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        for t in threads:
            t.join(5)
        assert not any(t.is_alive() for t in threads), "a scripted-server thread did not end"


def invite_then(upload: Callable[[Conn, Request], bool]) -> Callable[[Conn], None]:
    """A handler that answers every invite 201 and hands each upload to `upload(conn, request)`, which
    returns True to keep the connection for another request."""

    def handler(conn: Conn) -> None:
        while (req := conn.read_request()) is not None:
            if req.path == "/users/invite":
                conn.read_body(req.length)
                conn.answer(201, b'{"id": "agent"}')
                continue
            if not upload(conn, req):
                return

    return handler


def pump(src: socket.socket, dst: socket.socket, first: bytes = b"") -> None:
    """Copy bytes one way until either side closes."""
    with contextlib.suppress(OSError):
        if first:
            dst.sendall(first)
        while chunk := src.recv(256 * 1024):
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class ResetProxy(ScriptedServer):
    """Forwards to `target` (host, port). The first `resets` connections whose first request is an upload
    get half of their body forwarded, then an RST: a connection reset halfway through the body.

    Its small receive buffer (and the client's bounded send buffer) mean the client cannot have handed the
    whole of a body much larger than a few MB to its kernel when the reset comes: it sees the failure
    while still sending, which is the case under test."""

    def __init__(self, target: tuple[str, int], resets: int = 1) -> None:
        self.target = target
        self.resets = resets
        self.cut: list[int] = []  # body bytes forwarded before each reset
        super().__init__(self._handle, rcvbuf=64 * 1024)

    def _handle(self, conn: Conn) -> None:
        up = socket.create_connection(self.target)
        self.track(up)
        req = conn.read_request()
        if req is None:
            return
        head = f"{req.method} {req.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
        with self._lock:
            cut = req.path == "/calls/audio" and self.resets > 0
            self.resets -= cut
        if cut:
            half = conn.read_body(req.length // 2)
            up.sendall(head.encode("latin-1") + b"\r\n" + half)
            self.cut.append(len(half))
            conn.reset()
            up.close()
            return
        back = threading.Thread(target=pump, args=(up, conn.sock), daemon=True)
        back.start()
        pump(conn.sock, up, head.encode("latin-1") + b"\r\n" + conn.buf)
        back.join(10)


# --- the process's own system calls, through audit hooks --------------------------------------------


class Audit:
    """One audit hook for the whole test process (hooks cannot be removed), idle unless a test arms it:
    `sockets()` records every socket event; `deny_open(path)` makes opening that file fail as EACCES does."""

    _installed = False
    _lock = threading.Lock()
    _socket_events: list[tuple[str, tuple]] | None = None
    _denied: set[str] = set()

    @classmethod
    def _install(cls) -> None:
        with cls._lock:
            if not cls._installed:
                sys.addaudithook(cls._hook)
                cls._installed = True

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        if cls._socket_events is not None and event.startswith("socket."):
            cls._socket_events.append((event, args))
        elif event == "open" and cls._denied and args and isinstance(args[0], str | Path) \
                and os.fspath(args[0]) in cls._denied:
            raise PermissionError(13, "Permission denied", os.fspath(args[0]))

    @classmethod
    @contextlib.contextmanager
    def sockets(cls):  # noqa: ANN206 - yields the live list of events
        cls._install()
        events: list[tuple[str, tuple]] = []
        cls._socket_events = events
        try:
            yield events
        finally:
            cls._socket_events = None

    @classmethod
    def deny_open(cls, path: Path) -> None:
        cls._install()
        cls._denied.add(os.fspath(path))

    @classmethod
    def allow_all(cls) -> None:
        cls._denied.clear()
