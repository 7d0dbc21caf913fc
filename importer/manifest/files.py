"""The recordings a manifest points at: resolving cells, and checking each distinct recording once.

Where a recording lives (a local path, s3://, sftp://, https://) is the sources wing's business: this module
hands it the distinct locations and the audio sniff, and never looks at a scheme.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ..sources import NOT_MEASURED, Checked, Sources, map_adaptive, resolve_cell
from ..sources import check_file as _check_local
from .audio import SNIFF_BYTES, describe_non_audio, duration_from, sniff

FileInfo = Checked  # one distinct recording; `error` is "" when it can be sent

DURATION_BUDGET = 256 * 1024  # bytes read at most per remote recording for its duration (headers, frames)

__all__ = ["FileInfo", "check_file", "check_files", "durations", "judge_audio", "manifest_bases", "resolve_cell",
           "windows_path_problem"]

_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def windows_path_problem(cell: str) -> str | None:
    """A Windows drive or network path (C:\\calls\\a.wav, \\\\server\\share\\a.wav) names a disk this machine
    does not have: say so, rather than 'file not found: <manifest folder>/C:\\calls\\a.wav'."""
    if os.sep == "\\" or not _WINDOWS_ABSOLUTE.match(cell):
        return None
    kind = "a network share path" if cell.startswith("\\\\") else f"a Windows path on drive {cell[0].upper()}:"
    return (f"{kind} ({cell}): this machine cannot see it; copy the recordings here and give their path "
            "relative to the manifest's folder (or an absolute path on this machine)")


def judge_audio(head: bytes) -> tuple[str | None, str]:
    """The audio rule on a recording's first bytes: (its kind, "") or (None, why it is refused)."""
    kind = sniff(head)
    if kind is not None:
        return kind, ""
    looks = describe_non_audio(head)
    return None, f"not an audio file ({f'content looks like {looks}' if looks else 'unrecognised content'})"


def check_file(resolved: str, max_bytes: float) -> FileInfo:
    """A local file, checked by every rule (one open, one fstat, one small read)."""
    return _check_local(resolved, max_bytes, judge_audio, SNIFF_BYTES)


def check_files(resolved: Sequence[str], max_bytes: float, sources: Sources,
                with_durations: bool = False) -> list[FileInfo]:
    """With `with_durations`, a remote recording's duration comes with its sniff (one ranged read)."""
    measure = duration_from if with_durations else None
    return sources.check_many(resolved, max_bytes, judge_audio, SNIFF_BYTES, measure, DURATION_BUDGET)


def durations(infos: Sequence[FileInfo], sources: Sources) -> list[float | None]:
    def one(info: FileInfo) -> float | None:
        if info.seconds != NOT_MEASURED:
            return info.seconds  # read with the sniff
        try:
            fh = sources.reader(info, DURATION_BUDGET)
        except Exception:  # a duration is a nicety of the plan: unknown, never a failure
            return None
        if fh is None:
            return None
        with fh:
            return duration_from(fh, info.size, info.kind)

    return map_adaptive(one, infos)


def manifest_bases(manifest: os.PathLike[str] | str, is_results: bool) -> tuple[str, ...]:
    """Where relative file paths of a manifest are looked for. A results CSV is written to `results/`
    below the manifest it came from (or beside the results CSV it reran) and repeats that manifest's
    cells verbatim, so its relative paths are relative to the folder above `results/`; both folders are
    tried, the likelier first."""
    folder = os.path.dirname(os.path.abspath(manifest))
    if not is_results:
        return (folder,)
    parent = os.path.dirname(folder)
    return (parent, folder) if os.path.basename(folder).lower() == "results" else (folder, parent)
