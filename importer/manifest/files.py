"""The recordings a manifest points at: resolving cells to paths, and checking each distinct file once.

A million-row manifest often reuses files, or points at a million different ones on a network share, so
checks run once per distinct resolved path, and in a few threads when the storage turns out to be slow.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, TypeVar

from .audio import SNIFF_BYTES, describe_non_audio, duration_seconds, sniff

T = TypeVar("T")
R = TypeVar("R")

_PROBE = 256  # files checked in this thread before deciding whether threads would help
_SLOW_ITEM_SECONDS = 0.0005  # slower than this per file: the storage waits, so overlap the waits
_WORKERS = 16


class FileInfo(NamedTuple):
    """One distinct recording. `error` is "" when the file can be sent. (A NamedTuple: a million distinct
    files are a million of these, and a tuple is built three times faster than a frozen dataclass.)"""

    path: Path
    name: str  # base name, as curl sends it
    size: int
    mtime_ns: int
    kind: str | None  # what `audio.sniff` recognised
    error: str


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


_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def windows_path_problem(cell: str) -> str | None:
    """A Windows drive or network path (C:\\calls\\a.wav, \\\\server\\share\\a.wav) names a disk this machine
    does not have: say so, rather than 'file not found: <manifest folder>/C:\\calls\\a.wav'."""
    if os.sep == "\\" or not _WINDOWS_ABSOLUTE.match(cell):
        return None
    kind = "a network share path" if cell.startswith("\\\\") else f"a Windows path on drive {cell[0].upper()}:"
    return (f"{kind} ({cell}): this machine cannot see it; copy the recordings here and give their path "
            "relative to the manifest's folder (or an absolute path on this machine)")


def manifest_bases(manifest: Path, is_results: bool) -> tuple[str, ...]:
    """Where relative file paths of a manifest are looked for. A results CSV is written to `results/`
    below the manifest it came from (or beside the results CSV it reran) and repeats that manifest's
    cells verbatim, so its relative paths are relative to the folder above `results/`; both folders are
    tried, the likelier first."""
    folder = os.path.dirname(os.path.abspath(manifest))
    if not is_results:
        return (folder,)
    parent = os.path.dirname(folder)
    return (parent, folder) if os.path.basename(folder).lower() == "results" else (folder, parent)


# O_NONBLOCK: opening a named pipe listed by mistake must not hang validation (no effect on files).
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


def check_file(resolved: str, max_bytes: float) -> FileInfo:
    """Every file rule of the spec, first failure wins: exists, regular, readable, not empty, not over the
    size limit, audio by content. One open, one fstat, one 64-byte read."""

    def fail(message: str, size: int = 0, mtime_ns: int = 0) -> FileInfo:
        path = Path(resolved)
        return FileInfo(path, path.name, size, mtime_ns, None, message)

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
        if size == 0:
            return fail(f"file is empty: {resolved}", size, mtime_ns)
        if size > max_bytes:
            limit_mb = max_bytes / (1024 * 1024)
            return fail(
                f"file is too large: {size / (1024 * 1024):.1f} MB, over upload.max_file_mb ({limit_mb:g} MB): "
                f"{resolved}",
                size,
                mtime_ns,
            )
        try:
            head = os.read(fd, SNIFF_BYTES)
        except OSError as exc:
            return fail(f"cannot read the file: {resolved} ({exc.strerror or exc})", size, mtime_ns)
    finally:
        os.close(fd)
    kind = sniff(head)
    if kind is None:
        looks = describe_non_audio(head)
        what = f"content looks like {looks}" if looks else "unrecognised content"
        return fail(f"not an audio file ({what}): {resolved}", size, mtime_ns)
    path = Path(resolved)
    return FileInfo(path, path.name, size, mtime_ns, kind, "")  # path.name: the same str object as in path


def check_files(resolved: Sequence[str], max_bytes: float) -> list[FileInfo]:
    return map_adaptive(lambda p: check_file(p, max_bytes), resolved)


def durations(infos: Sequence[FileInfo]) -> list[float | None]:
    return map_adaptive(lambda info: duration_seconds(info.path, info.kind), infos)


def map_adaptive(func: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`[func(x) for x in items]`, switching to a few threads when the storage is slow.

    On a local disk a check costs ~30 us of CPU and threads only add GIL contention; on a network share
    each one waits milliseconds for the server, and threads overlap those waits. So: time the first
    items in this thread, and hand the rest to a pool only when they were slow. Chunks, not one future per
    item: a million futures would cost more than the work.
    """
    head = min(len(items), _PROBE)
    started = time.perf_counter()
    out = [func(x) for x in items[:head]]
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
