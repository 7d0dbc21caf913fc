"""A real, throwaway PostgreSQL for the tests: initdb in a temporary folder, a password, fsync off, listening
on 127.0.0.1 at a free port (its unix socket in the same folder), stopped at the end of the session.

Debian's `postgresql` package puts the server binaries in /usr/lib/postgresql/<version>/bin; .ci/run installs
it when they are missing. The server refuses to run as root, so as root it runs as the `postgres` user
(`runuser -u postgres --`). Under CI=true a missing server is a failure, never a skip.

Also a TCP proxy in front of it whose connections can be cut and restored: the network to the database
failing, without touching the machine's firewall.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path


def server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    USER = "postgres"

    def __init__(self, bindir: Path, *, fsync: bool = False) -> None:
        self.bindir = bindir
        self.fsync = fsync  # off for the tests; on for benchmarks that want a database as deployed
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as `postgres`.
        self.base = Path(tempfile.mkdtemp(prefix="allobrain-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.password = "pw-" + secrets.token_hex(12)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PgCluster:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.as_root:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.USER, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync", "--no-instructions")
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.base}'\nmax_connections = 200\nlog_min_messages = warning\n")
            if not self.fsync:
                conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        self.pg_ctl("start")
        return self

    def pg_ctl(self, action: str, *extra: str) -> None:
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "60",
                           action, *extra, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed: {result.stdout}{result.stderr}\n{self.log_tail()}")

    def restart(self) -> None:
        """Every connection is cut (as by a server restart); the server is back when this returns."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return (self.base / "server.log").read_text()[-3000:]
        except OSError:
            return ""

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), password=self.password, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class CuttableProxy:
    """127.0.0.1:port -> the database. `cut()` closes every connection and refuses new ones (the network
    gone); `restore()` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
