"""The local disk (and whatever is mounted on it): today's checks, behind the sources interface.

A million-row manifest often reuses files, or points at a million different ones on a network share, so
checks run once per distinct resolved path, and in a few threads when the storage turns out to be slow.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..safety import clean_text
from .base import Checked, Judge, PinnedLike, SourceProblem, size_problem

T = TypeVar("T")
R = TypeVar("R")

_PROBE = 256  # files checked in this thread before deciding whether threads would help
_FIRST_PROBE = 16  # ...unless the first few are already very slow (a remote store: milliseconds each)
_SLOW_ITEM_SECONDS = 0.0005  # slower than this per file: the storage waits, so overlap the waits
_WORKERS = 16

# O_NONBLOCK: opening a named pipe listed by mistake must not hang validation (no effect on files).
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


def resolve_cell(cell: str, bases: Sequence[str]) -> str:
    """A file cell as an absolute, normalised path. A relative path is relative to the first of `bases`
    (absolute folders) where it exists, else to the first one.

    `~` is expanded. On POSIX a Windows-style relative path (`audio\\call.wav`, typed on Windows) is read
    with `/` when only that form exists.
    """
    path = os.path.expanduser(cell) if cell.startswith("~") else cell
    candidates = [os.path.normpath(os.path.join(base, path)) for base in bases]
    if len(candidates) > 1 or ("\\" in cell and os.sep == "/"):
        for candidate in candidates:
            if os.path.lexists(candidate):
                return candidate
        if "\\" in cell and os.sep == "/":
            for base in bases:
                alternative = os.path.normpath(os.path.join(base, path.replace("\\", "/")))
                if os.path.lexists(alternative):
                    return alternative
    return candidates[0]


def check_file(resolved: str, max_bytes: float, judge: Judge, head_bytes: int) -> Checked:
    """Every file rule of the spec, first failure wins: exists, regular, readable, not empty, not over the
    size limit, audio by content. One open, one fstat, one small read."""

    def fail(message: str, size: int = 0, mtime_ns: int = 0) -> Checked:
        path = Path(resolved)
        return Checked(path, path.name, size, mtime_ns, None, message)

    try:
        fd = os.open(resolved, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(resolved):
            try:
                target = os.readlink(resolved)
            except OSError:
                target = "?"
            return fail(f"broken link: {resolved} points to {target}, which does not exist")
        return fail(f"file not found: {resolved}")
    except IsADirectoryError:
        return fail(f"not a regular file (a folder): {resolved}")
    except PermissionError:
        if os.path.isdir(resolved):
            return fail(f"not a regular file (a folder): {resolved}")
        return fail(f"cannot read the file (permission denied): {resolved}")
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL in the path
        return fail(f"cannot read the file: {resolved} ({getattr(exc, 'strerror', None) or exc})")
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return fail(f"not a regular file (a folder): {resolved}")
        if not stat.S_ISREG(st.st_mode):
            return fail(f"not a regular file: {resolved}")
        size, mtime_ns = st.st_size, st.st_mtime_ns
        too = size_problem(resolved, size, max_bytes)
        if too:
            return fail(too, size, mtime_ns)
        try:
            head = os.read(fd, head_bytes)
        except OSError as exc:
            return fail(f"cannot read the file: {resolved} ({exc.strerror or exc})", size, mtime_ns)
    finally:
        os.close(fd)
    kind, error = judge(head)
    if error:
        return fail(f"{error}: {resolved}", size, mtime_ns)
    path = Path(resolved)
    return Checked(path, path.name, size, mtime_ns, kind, "")  # path.name: the same str object as in path


def map_adaptive(func: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`[func(x) for x in items]`, switching to a few threads when the storage is slow.

    On a local disk a check costs ~30 us of CPU and threads only add GIL contention; on a network share
    each one waits milliseconds for the server, and threads overlap those waits. So: time the first
    items in this thread, and hand the rest to a pool only when they were slow. Chunks, not one future per
    item: a million futures would cost more than the work.
    """
    started = time.perf_counter()
    out = [func(x) for x in items[:_FIRST_PROBE]]
    head = len(out)
    if (time.perf_counter() - started) / max(head, 1) < 20 * _SLOW_ITEM_SECONDS:
        out.extend(func(x) for x in items[head:_PROBE])
        head = len(out)
    if head == len(items):
        return out
    per_item = (time.perf_counter() - started) / max(head, 1)
    rest = items[head:]
    if per_item < _SLOW_ITEM_SECONDS:
        out.extend(func(x) for x in rest)
        return out
    size = max(16, len(rest) // (_WORKERS * 8))
    chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="manifest-files") as pool:
        for part in pool.map(lambda chunk: [func(x) for x in chunk], chunks):
            out.extend(part)
    return out


class LocalBackend:
    """Files on this machine. Pinned by size and modification time, checked again before every attempt."""

    def check_many(self, locations: Sequence[str], max_bytes: float, judge: Judge,
                   head_bytes: int) -> list[Checked]:
        return map_adaptive(lambda p: check_file(p, max_bytes, judge, head_bytes), locations)

    def open(self, pinned: PinnedLike) -> BinaryIO:
        path = pinned.file_path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise SourceProblem(f"file disappeared after validation: {path}", retryable=False) from None
        except OSError as exc:
            raise SourceProblem(f"file cannot be read: {clean_text(exc.strerror or exc, 120)}",
                                retryable=False) from None
        if st.st_size != pinned.file_size:
            raise SourceProblem(f"file changed after validation (size {pinned.file_size} -> {st.st_size} bytes); "
                                "validate and run again", retryable=False)
        if pinned.file_mtime_ns and st.st_mtime_ns != pinned.file_mtime_ns:
            raise SourceProblem("file was modified after validation; validate and run again", retryable=False)
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:  # unreadable since validation (permissions, a vanished share): nothing sent
            raise SourceProblem(f"file cannot be read: {clean_text(exc.strerror or exc, 120)}",
                                retryable=False) from None

    def reader(self, checked: Checked, budget: int) -> BinaryIO | None:
        try:
            return open(checked.path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError:
            return None

    def close(self) -> None:
        pass
