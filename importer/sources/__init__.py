"""The sources wing: where recordings live (a local path, s3://, sftp://, https://) behind one interface.

In: a file cell, the `files:` config. Out: the checked recording (size, version, audio kind) and, for each
upload attempt, a stream of its bytes pinned to what validation saw. Callers never branch on a scheme:

    with Sources(cfg.files) as sources:
        location = sources.resolve(cell, bases)
        [checked] = sources.check_many([location], max_bytes, judge, head_bytes)  # measure: durations too
        stream = sources.open(call)      # SourceProblem: failed (changed, gone, refused) or retryable

A store that cannot be used at all (extra missing, no credentials, unreachable, unknown host key) raises
`errors.SourceError`: one error for the whole manifest.
"""

from __future__ import annotations

from .base import NOT_MEASURED, Checked, GuardedStream, Judge, Measure, PinnedLike, SourceProblem
from .local import check_file, map_adaptive, resolve_cell
from .registry import Sources, scheme_of

__all__ = [
    "NOT_MEASURED",
    "Checked",
    "GuardedStream",
    "Judge",
    "Measure",
    "PinnedLike",
    "SourceProblem",
    "Sources",
    "check_file",
    "map_adaptive",
    "resolve_cell",
    "scheme_of",
]
