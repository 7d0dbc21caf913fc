"""Recordings on an SFTP server (Five9 and 3CX push their archives there), with paramiko.

Why paramiko and not fsspec + sshfs (asyncssh): sshfs runs an asyncio loop in a thread of its own and
shares one cached filesystem instance across threads (and that loop does not survive a fork); paramiko is
synchronous, so a worker thread reads its recording in its own channel with nothing in between. Reads are
requested 32 KiB at a time, so memory stays flat whatever the size; no prefetch (paramiko's prefetch keeps
what it fetched until it is read, the whole file for a slow consumer).

One SSH connection per server, at most `CHANNELS` SFTP channels on it (OpenSSH's MaxSessions is 10): a
thread borrows a channel for one stat or one upload and gives it back.

Host keys are checked against `files.sftp.known_hosts`; an unknown host is refused with its fingerprint (as
ssh prints it), a changed key is refused as a possible attack. The password, when there is one, comes from
the environment variable `files.sftp.password_env` names; else the key file, the SSH agent, ~/.ssh keys.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from ..errors import SourceError
from ..files_config import SftpConfig
from ..safety import clean_text
from .base import Checked, GuardedStream, Listed, PinnedLike, RangedReader, SourceProblem, changed

CHANNELS = 8
EXTRA = "pip install 'allobrain-import[sftp]'"


def fingerprint(key: Any) -> str:
    """As OpenSSH shows it: `ssh-ed25519 SHA256:...`."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _Server:
    """One SSH connection and its pool of SFTP channels."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.idle: list[Any] = []
        self.count = 0
        self.cond = threading.Condition()


class SftpBackend:
    def __init__(self, cfg: SftpConfig) -> None:
        try:
            import paramiko
        except ImportError:
            raise SourceError(f"the manifest has sftp:// recordings, but SFTP support is not installed: {EXTRA}") from None
        self._paramiko = paramiko
        self._cfg = cfg
        self._known_hosts = os.path.expanduser(cfg.known_hosts)
        self._password = None
        if cfg.password_env:
            self._password = os.environ.get(cfg.password_env) or None
            if self._password is None:
                raise SourceError(f"files.sftp.password_env: the environment variable {cfg.password_env} is not "
                                  "set; export it (the SFTP password) before the run")
        self._servers: dict[tuple[str, str, int], _Server] = {}
        self._lock = threading.Lock()

    # --- connections ----------------------------------------------------------------------------

    def _where(self, url: str) -> tuple[tuple[str, str, int], str]:
        parts = urlsplit(url)
        if parts.password is not None:
            raise SourceError(f"{parts.hostname}: an sftp:// URL must not carry a password; use "
                              "files.sftp.password_env (or a key)")
        user = unquote(parts.username or "") or self._cfg.username or getpass.getuser()
        return (user, parts.hostname or "", parts.port or 22), unquote(parts.path) or "/"

    def _server(self, where: tuple[str, str, int]) -> _Server:
        with self._lock:
            server = self._servers.get(where)
            if server is not None and not _alive(server):  # dropped by the server: a new connection
                server.client.close()
                server = None
            if server is None:
                server = self._servers[where] = _Server(self._connect(*where))
            return server

    def _connect(self, user: str, host: str, port: int) -> Any:
        paramiko = self._paramiko
        seen: list[Any] = []

        class Refuse(paramiko.MissingHostKeyPolicy):  # type: ignore[misc, name-defined]
            def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
                seen.append(key)
                raise paramiko.SSHException("unknown host key")

        client = paramiko.SSHClient()
        if not os.path.isfile(self._known_hosts):
            raise SourceError(f"files.sftp.known_hosts: {self._known_hosts} does not exist; host keys are checked, "
                              f"so add the server's: ssh-keyscan -p {port} {host} >> {self._known_hosts}")
        client.load_host_keys(self._known_hosts)
        client.set_missing_host_key_policy(Refuse())
        key_file = os.path.expanduser(self._cfg.key_file) if self._cfg.key_file else None
        try:
            client.connect(host, port, username=user, password=self._password, key_filename=key_file,
                           allow_agent=key_file is None, look_for_keys=key_file is None and self._password is None,
                           timeout=10, banner_timeout=10, auth_timeout=20)
        except paramiko.BadHostKeyException as exc:
            raise SourceError(f"sftp://{host}:{port}: the host key is NOT the one in {self._known_hosts} "
                              f"(now {fingerprint(exc.key)}): refused (someone may be intercepting); if the server "
                              "was reinstalled, remove its old line from known_hosts") from None
        except paramiko.AuthenticationException:
            raise SourceError(f"sftp://{user}@{host}:{port}: authentication failed; check files.sftp.username and "
                              "files.sftp.key_file / files.sftp.password_env (or the SSH agent)") from None
        except (TimeoutError, paramiko.SSHException, OSError) as exc:
            if seen:
                raise SourceError(
                    f"sftp://{host}:{port}: unknown host key {fingerprint(seen[0])}; if that is the server's key, "
                    f"add it to {self._known_hosts} (ssh-keyscan -p {port} {host} >> {self._known_hosts}) "
                    "and check the fingerprint with the server's administrator") from None
            raise SourceError(f"cannot reach the SFTP server {host}:{port} ({clean_text(exc, 120)}); check the URL "
                              "and the network") from None
        return client

    @contextmanager
    def _channel(self, where: tuple[str, str, int]) -> Iterator[Any]:
        server = self._server(where)
        sftp = self._borrow(server)
        try:
            yield sftp
        finally:
            self._give_back(server, sftp)

    def _borrow(self, server: _Server) -> Any:
        with server.cond:
            while not server.idle and server.count >= CHANNELS:
                server.cond.wait()
            if server.idle:
                return server.idle.pop()
            server.count += 1
        try:
            return server.client.open_sftp()
        except Exception as exc:
            with server.cond:
                server.count -= 1
                server.cond.notify()
            raise SourceProblem(f"cannot open an SFTP channel ({clean_text(exc, 120)})", retryable=True) from None

    def _give_back(self, server: _Server, sftp: Any, broken: bool = False) -> None:
        with server.cond:
            if broken or not _alive(server):
                server.count -= 1
            else:
                server.idle.append(sftp)
            server.cond.notify()

    # --- validation -----------------------------------------------------------------------------

    def stat_many(self, locations: Sequence[str]) -> list[Listed]:
        for url in locations:  # connect (and check the host key) once per server, before the pool
            self._server(self._where(url)[0])
        with ThreadPoolExecutor(max_workers=CHANNELS, thread_name_prefix="sftp-stat") as pool:
            return list(pool.map(self._stat, locations))

    def _stat(self, url: str) -> Listed:
        where, path = self._where(url)
        try:
            with self._channel(where) as sftp:
                st = sftp.stat(path)
        except SourceProblem as exc:
            return Listed(url, 0, 0, "", exc.message)
        except OSError as exc:
            return Listed(url, 0, 0, "", _missing(url, exc))
        if stat.S_ISDIR(st.st_mode or 0):
            return Listed(url, 0, 0, "", f"not a regular file (a folder): {url}")
        if not stat.S_ISREG(st.st_mode or 0):
            return Listed(url, 0, 0, "", f"not a regular file: {url}")
        return Listed(url, int(st.st_size or 0), int(st.st_mtime or 0) * 1_000_000_000, "", "")

    def read_head(self, item: Listed, n: int) -> bytes:
        where, path = self._where(item.location)
        try:
            with self._channel(where) as sftp, sftp.open(path, "rb") as fh:
                return fh.read(n)
        except OSError as exc:
            raise SourceProblem(_missing(item.location, exc), retryable=False) from None

    # --- upload and durations -------------------------------------------------------------------

    def open(self, pinned: PinnedLike) -> BinaryIO:
        url = str(pinned.file_path)
        fh, release = self._open(url)
        try:
            st = fh.stat()
            mtime_ns = int(st.st_mtime or 0) * 1_000_000_000
            if st.st_size != pinned.file_size:
                raise changed(url, f"size {pinned.file_size} -> {st.st_size} bytes")
            if pinned.file_mtime_ns and mtime_ns != pinned.file_mtime_ns:
                raise changed(url, "modification time differs")
        except BaseException:
            fh.close()
            release()
            raise
        return GuardedStream(fh, pinned.file_size, url, release)  # type: ignore[return-value]

    def _open(self, url: str) -> tuple[Any, Any]:
        where, path = self._where(url)
        server = self._server(where)
        sftp = self._borrow(server)
        try:
            fh = sftp.open(path, "rb")
        except FileNotFoundError:
            self._give_back(server, sftp)
            raise changed(url, "deleted") from None
        except PermissionError:
            self._give_back(server, sftp)
            raise SourceProblem(f"the SFTP server refused access to {url} (permission denied)", retryable=False) from None
        except (OSError, EOFError, self._paramiko.SSHException) as exc:
            self._give_back(server, sftp, broken=True)
            raise SourceProblem(f"cannot read {url} ({clean_text(exc, 120)})", retryable=True) from None
        return fh, lambda: self._give_back(server, sftp)

    def reader(self, checked: Checked, budget: int) -> BinaryIO | None:
        fh, release = self._open(str(checked.path))

        def fetch(start: int, length: int) -> bytes:
            fh.seek(start)
            return fh.read(length)

        def done() -> None:
            fh.close()
            release()

        return io.BufferedReader(RangedReader(fetch, checked.size, budget, done), 16 * 1024)  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.client.close()


def _alive(server: _Server) -> bool:
    transport = server.client.get_transport()
    return transport is not None and transport.is_active()


def _missing(url: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {url}"
    if isinstance(exc, PermissionError):
        return f"cannot read the file (permission denied): {url}"
    return f"cannot read the file: {url} ({clean_text(exc, 120)})"
