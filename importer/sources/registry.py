"""One object for all the places recordings live: it resolves a cell, and hands each location to the
backend of its scheme, so that the manifest checks and the HTTP client never branch on schemes.

Backends are made on first use (an `s3://` cell without the extra is one error, raised when the manifest
needs it, not at import), once per Sources, and are shared by the threads that use it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, BinaryIO

from ..files_config import FilesConfig
from ..safety import is_loopback_host
from .base import Backend, Checked, Judge, Measure, PinnedLike, SourceProblem, base_name, check_listed
from .local import LocalBackend, resolve_cell

REMOTE = ("s3", "sftp", "https", "http")
LOCAL = "file"


def scheme_of(location: str) -> str:
    """"s3", "sftp", "https", "http", another scheme's name, or "file" for a local path."""
    head, sep, _ = location.partition("://")
    if not sep or not head.isascii() or not head.isalnum() or not head[0].isalpha() or len(head) < 2:
        return LOCAL  # `C:\\x` and `./a://b` are paths, not URLs
    return head.lower()


class Sources:
    def __init__(self, files: FilesConfig | None = None, *, pool: int = 32, remote: bool = True) -> None:
        self.files = files or FilesConfig()
        self._pool = pool
        self._remote = remote  # False: local files only (a caller without the config must not guess a store)
        self._backends: dict[str, Any] = {LOCAL: LocalBackend()}
        self._lock = threading.Lock()

    def __enter__(self) -> Sources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- where a cell points --------------------------------------------------------------------

    def resolve(self, cell: str, bases: Sequence[str]) -> str:
        """A URL cell as it is; a relative cell against `files.root` when set (a URL or a folder), else
        against `bases` (the manifest's folder); an absolute path as it is."""
        if scheme_of(cell) != LOCAL:
            return cell
        root = self.files.root
        if root and scheme_of(root) != LOCAL and not os.path.isabs(cell) and not cell.startswith("~"):
            relative = cell.replace("\\", "/")
            while relative.startswith("./"):
                relative = relative[2:]
            return root + relative
        if root:
            bases = (os.path.abspath(os.path.expanduser(root)), *bases)
        return resolve_cell(cell, bases)

    def is_remote(self, location: str) -> bool:
        return scheme_of(location) != LOCAL

    # --- validation -----------------------------------------------------------------------------

    def check_many(self, locations: Sequence[str], max_bytes: float, judge: Judge, head_bytes: int,
                   measure: Measure | None = None, budget: int = 0) -> list[Checked]:
        """Check every location, in order; each scheme's locations together (one listing per S3 folder).
        With `measure`, a remote recording's duration is read with its sniff (`Checked.seconds`, at most
        `budget` bytes more); a local file's is left to `reader` (it costs no request)."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, location in enumerate(locations):
            groups[scheme_of(location)].append(i)
        out: list[Checked | None] = [None] * len(locations)
        for scheme, indexes in groups.items():
            chosen = [locations[i] for i in indexes]
            refusal = _refusal(scheme)
            if refusal:
                checked = [Checked(loc, base_name(loc), 0, 0, None, f"{refusal}: {loc}") for loc in chosen]
            elif scheme == "http":
                checked = self._check_http(chosen, max_bytes, judge, head_bytes, measure, budget)
            elif scheme == LOCAL:
                checked = self._backends[LOCAL].check_many(chosen, max_bytes, judge, head_bytes)
            else:
                checked = check_listed(self.backend(scheme), chosen, max_bytes, judge, head_bytes, measure, budget)
            for i, c in zip(indexes, checked, strict=True):
                out[i] = c
        return out  # type: ignore[return-value]

    def _check_http(self, chosen: list[str], max_bytes: float, judge: Judge, head_bytes: int,
                    measure: Measure | None, budget: int) -> list[Checked]:
        """http:// only for loopback hosts, as for the API; the others are refused row by row."""
        from urllib.parse import urlsplit

        good = [loc for loc in chosen if is_loopback_host(urlsplit(loc).hostname)]
        checked = iter(check_listed(self.backend("https"), good, max_bytes, judge, head_bytes, measure, budget)
                       if good else ())
        return [
            next(checked) if is_loopback_host(urlsplit(loc).hostname)
            else Checked(loc, base_name(loc), 0, 0, None,
                         f"http:// is only allowed for loopback hosts; use https://: {loc}")
            for loc in chosen
        ]

    # --- upload and durations -------------------------------------------------------------------

    def open(self, pinned: PinnedLike) -> BinaryIO:
        """A stream of the whole recording for one upload attempt (a new one every attempt), or a
        SourceProblem: gone, refused, changed since validation (permanent), or the store failing (retry)."""
        return self.backend(scheme_of(str(pinned.file_path))).open(pinned)

    def fingerprint(self, pinned: PinnedLike) -> str:
        """sha256 of the recording's bytes, as an upload records it (the same-recording rule), read through
        the same pinned stream as an upload."""
        digest = hashlib.sha256()
        with self.open(pinned) as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def reader(self, checked: Checked, budget: int) -> BinaryIO | None:
        """A seekable stream for reading a duration, fetching at most `budget` bytes of a remote object;
        None when the store cannot seek (an https server without Range support)."""
        return self.backend(scheme_of(str(checked.path))).reader(checked, budget)

    def backend(self, scheme: str) -> Backend:
        key = "https" if scheme == "http" else scheme
        with self._lock:
            found = self._backends.get(key)
            if found is None:
                found = self._backends[key] = self._make(key)
            return found

    def _make(self, scheme: str) -> Backend:
        if not self._remote:
            raise SourceProblem(f"{scheme}:// is not read here (no files: config given)", retryable=False)
        if scheme == "s3":
            from .s3 import S3Backend

            return S3Backend(self.files.s3, self._pool)
        if scheme == "sftp":
            from .sftp import SftpBackend

            return SftpBackend(self.files.sftp)
        from .https import HttpsBackend

        return HttpsBackend(self.files.https)

    def close(self) -> None:
        with self._lock:
            backends, self._backends = list(self._backends.values()), {LOCAL: LocalBackend()}
        for backend in backends:
            backend.close()


def _refusal(scheme: str) -> str:
    if scheme == LOCAL or scheme in REMOTE:
        return ""
    return f"{scheme}:// is not a place recordings can be read from (use s3://, sftp://, https:// or a path)"
