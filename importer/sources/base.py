"""What every source (local disk, S3, SFTP, https) answers, and the rules they share.

A backend does three things: `stat_many` (existence, kind, size, version of many objects at once, so S3 can
list prefixes instead of asking once per object), `read_head` (the first bytes, by a ranged read, for the
audio sniff) and `open` (a stream of the whole object, refusing one that changed since validation). The
size rules and their wording live here so that a missing S3 object reads like a missing file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

from ..safety import clean_text

# head -> (audio kind or None, error or ""): the manifest wing's audio sniff, handed in so that this wing
# never imports the manifest wing.
Judge = Callable[[bytes], tuple[str | None, str]]
# (a seekable stream, its size, the audio kind) -> seconds or None: the manifest wing's duration reader, for
# validation that wants durations too (the plan, `validate`).
Measure = Callable[[BinaryIO, int, str | None], float | None]

NOT_MEASURED = -1.0  # Checked.seconds when validation did not read the duration
MEASURE_HEAD = 16 * 1024  # the first read when the duration is wanted too: the sniff and most headers at once

SNIFF_POOL = 16  # concurrent ranged reads while validating (each waits on the store, not on the CPU)


class Checked(NamedTuple):
    """One distinct recording as validation saw it. `error` is "" when it can be sent. (A NamedTuple: a
    million distinct files are a million of these, and a tuple is built three times faster than a frozen
    dataclass.)"""

    path: Path | str  # a local Path, or the URL as resolved
    name: str  # base name, as curl sends it
    size: int
    mtime_ns: int
    kind: str | None  # what the audio sniff recognised
    error: str
    version: str = ""  # what pins a remote object: S3 ETag, an https ETag; "" when size and mtime do
    seconds: float | None = NOT_MEASURED  # the duration read with the sniff (None: unreadable)


class Listed(NamedTuple):
    """What `stat_many` learnt of one object: `error` is "" when it exists and is a regular object."""

    location: str
    size: int
    mtime_ns: int
    version: str
    error: str


class PinnedLike(Protocol):
    """What opening a recording for upload needs (a validated manifest row satisfies it)."""

    file_path: Path | str
    file_size: int
    file_mtime_ns: int
    file_version: str


class SourceProblem(Exception):
    """Opening or reading one object failed. `retryable`: the store failed (the next attempt may work);
    otherwise the row is failed (gone, refused, changed since validation)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class SourceReadError(OSError):
    """Raised from inside a streamed body when the store fails mid-object. An OSError, so that requests
    reports it as a connection error before the whole body left (retryable), never as a bug."""


class Backend(Protocol):
    def stat_many(self, locations: Sequence[str]) -> list[Listed]: ...
    def read_head(self, item: Listed, n: int) -> bytes: ...
    def open(self, pinned: PinnedLike) -> BinaryIO: ...
    def reader(self, checked: Checked, budget: int) -> BinaryIO | None: ...
    def close(self) -> None: ...


def base_name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def size_problem(location: str, size: int, max_bytes: float) -> str:
    """The size rules, worded as for local files; "" when the size is fine."""
    if size == 0:
        return f"file is empty: {location}"
    if size > max_bytes:
        limit_mb = max_bytes / (1024 * 1024)
        return (
            f"file is too large: {size / (1024 * 1024):.1f} MB, over upload.max_file_mb ({limit_mb:g} MB): "
            f"{location}"
        )
    return ""


def check_listed(backend: Backend, locations: Sequence[str], max_bytes: float, judge: Judge,
                 head_bytes: int, measure: Measure | None = None, budget: int = 0) -> list[Checked]:
    """The shared validation of a remote store: one bulk stat, then the ranged head reads of the objects
    that passed, concurrently in a bounded pool. With `measure`, the same read is longer (MEASURE_HEAD) and
    gives the duration too, so that a WAV or MP3 header costs no second request."""
    listed = backend.stat_many(locations)

    def one(item: Listed) -> Checked:
        name = base_name(item.location)
        error = item.error or size_problem(item.location, item.size, max_bytes)
        if error:
            return Checked(item.location, name, item.size, item.mtime_ns, None, error, item.version)
        try:
            head = backend.read_head(item, head_bytes if measure is None else max(head_bytes, MEASURE_HEAD))
        except SourceProblem as exc:
            return Checked(item.location, name, item.size, item.mtime_ns, None, exc.message, item.version)
        kind, error = judge(head[:head_bytes])
        error = f"{error}: {item.location}" if error else ""
        checked = Checked(item.location, name, item.size, item.mtime_ns, kind, error, item.version)
        if measure is None or error:
            return checked
        return checked._replace(seconds=measure_from_head(backend, checked, head, measure, budget))

    if len(listed) <= 1:
        return [one(item) for item in listed]
    with ThreadPoolExecutor(max_workers=SNIFF_POOL, thread_name_prefix="source-sniff") as pool:
        return list(pool.map(one, listed))


def measure_from_head(backend: Backend, checked: Checked, head: bytes, measure: Measure,
                      budget: int) -> float | None:
    """The duration of a remote recording, read from the `head` already fetched; the store is asked (through
    the backend's own reader, at most `budget` bytes) only for bytes past it."""
    opened: list[BinaryIO] = []

    def fetch(start: int, length: int) -> bytes:
        if start < len(head):
            return head[start : start + length]  # a short read is allowed: the buffer asks again past it
        if not opened:
            rest = backend.reader(checked, budget)
            if rest is None:
                raise OSError("the store cannot read past the first bytes")
            opened.append(rest)
        opened[0].seek(start)
        return opened[0].read(length)

    def done() -> None:
        for fh in opened:
            fh.close()

    try:
        with io.BufferedReader(RangedReader(fetch, checked.size, budget + len(head), done), 16 * 1024) as fh:
            return measure(fh, checked.size, checked.kind)  # type: ignore[arg-type]
    except Exception:  # a duration is a nicety of the plan: unknown, never a failure
        return None


def changed(location: str, what: str) -> SourceProblem:
    return SourceProblem(f"changed since validation ({what}): {location}; validate and run again",
                         retryable=False)


class GuardedStream:
    """The body of one upload, read from a store: exactly `size` bytes, or a SourceReadError.

    `len` (what requests-toolbelt asks) is what is left, so the multipart encoder stops at the end; a store
    that ends early or fails raises instead of handing over a short body (the encoder would loop on it, or
    the server would wait for bytes that never come). `failure` keeps the store's own words for the row.
    A plain object, not an io class: toolbelt wraps anything with `fileno` and then asks it for `tell`.
    """

    def __init__(self, raw: Any, size: int, location: str, on_close: Callable[[], None] | None = None):
        self._raw = raw
        self._left = size
        self._size = size
        self._location = location
        self._on_close = on_close
        self.closed = False
        self.failure: SourceProblem | None = None

    @property
    def len(self) -> int:
        return self._left

    def read(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        try:
            data = self._raw.read(want)
        except Exception as exc:  # botocore, paramiko and urllib3 each raise their own types mid-stream
            raise self._fail(f"{type(exc).__name__}: {exc}") from None
        if not data:
            raise self._fail(f"the object ended after {self._size - self._left} of {self._size} bytes")
        self._left -= len(data)
        return data

    def _fail(self, why: str) -> SourceReadError:
        self.failure = SourceProblem(
            f"the store failed while sending {self._location} ({clean_text(why, 160)}), before the call was "
            "fully sent", retryable=True)
        return SourceReadError(self.failure.message)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._raw.close()
        finally:
            if self._on_close:
                self._on_close()

    def __enter__(self) -> GuardedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RangedReader(io.RawIOBase):
    """A seekable view of a remote object built on ranged reads, for the duration readers (WAV headers,
    mutagen): at most `budget` bytes are fetched in all, after which reads fail and the duration is unknown.
    That bound is what keeps `--dry-run` over a million remote recordings cheap."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, budget: int,
                 on_close: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._fetch = fetch  # (start, length) -> bytes
        self._on_close = on_close
        self._size = size
        self._pos = 0
        self._budget = budget

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed and self._on_close:
            self._on_close()
        super().close()

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        length = min(len(buffer), self._size - self._pos)
        if length <= 0:
            return 0
        if length > self._budget:
            raise OSError("read budget for the duration spent")
        data = self._fetch(self._pos, length)
        self._budget -= len(data)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
