"""The same recording twice in one manifest: sent once.

"A recording is uploaded once per campaign, whatever else changes" holds inside one run too. Two rows to
send whose recordings have the same bytes (the same file named twice, or a copy under another name, agent
or timestamp), to the same campaign, are twins: the first in manifest order is sent, the later ones follow
its outcome without a request of their own. Decided in the plan, so --dry-run shows it, and deterministic:
with eight workers in flight the ledger's same-recording rule alone would catch some twins and not others.

A file is hashed only when another row to send has the same size in the same campaign, and a file named by
several rows is hashed once, so the common case costs one dictionary pass. A remote recording (s3://,
sftp://, https://) is never downloaded for this before the uploads start: rows naming the same URL, or
S3 objects of one size with the same ETag, are twins; a copy under another URL with another ETag is not seen
here (the ledger's same-recording rule still sees it on a later run, from the fingerprint its upload stored).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import ImportToolError
from .manifest import CallRow
from .results import Outcome
from .sources import SourceProblem, scheme_of

ALLOW = "--allow-same-recording sends it anyway"


class Fingerprints:
    """sha256 of each recording, computed at most once per file; None when it cannot be read now (the
    upload will say why)."""

    def __init__(self, fingerprint: Callable[[CallRow], str]) -> None:
        self._fingerprint = fingerprint
        self._known: dict[str, str | None] = {}

    def of(self, call: CallRow) -> str | None:
        path = str(call.file_path)
        if path not in self._known:
            try:
                self._known[path] = self._fingerprint(call)
            except (OSError, SourceProblem, ImportToolError):
                self._known[path] = None
        return self._known[path]


def find_twins(calls: Sequence[CallRow], prints: Fingerprints,
               held: Sequence[CallRow] = ()) -> tuple[dict[int, CallRow], dict[int, CallRow]]:
    """Among the rows to send (`calls`) and the rows held back as unknown (`held`), by recording and campaign:
    each later row to send -> the first row to send with its recording (its twin), and each row to send
    whose recording a held row has -> that held row (the server may have it already: not sent either)."""
    held_at = {c.index for c in held}
    by_size: dict[tuple[str, int], list[CallRow]] = {}
    for call in sorted([*calls, *held], key=lambda c: c.index):
        by_size.setdefault((call.campaign_id, call.file_size), []).append(call)
    twins: dict[int, CallRow] = {}
    behind_unknown: dict[int, CallRow] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        same: dict[str, list[CallRow]] = {}
        for call in group:
            digest = _identity(call, prints)
            if digest is not None:
                same.setdefault(digest, []).append(call)
        for rows in same.values():
            unknown = next((c for c in rows if c.index in held_at), None)
            to_send = [c for c in rows if c.index not in held_at]
            if unknown is not None:
                behind_unknown.update((c.index, unknown) for c in to_send)
            else:
                twins.update((c.index, to_send[0]) for c in to_send[1:])
    return twins, behind_unknown


def behind_unknown_note(held: CallRow) -> str:
    return (f"not sent: same recording as row {held.row} ({held.file_name}), whose outcome is unknown (the server "
            f"may have it); check that row, then rerun with --retry-unknown (this row then goes with it), or {ALLOW}")


def _identity(call: CallRow, prints: Fingerprints) -> str | None:
    """What makes two recordings of one size the same here: a local file's sha256; a remote object's ETag
    (what pins it), else its URL, so that nothing is downloaded twice."""
    where = str(call.file_path)
    scheme = scheme_of(where)
    if scheme == "file":
        return prints.of(call)
    # An S3 ETag is a digest of the content (MD5, per part for a multipart upload; random per object under
    # SSE-KMS, which only hides twins). An https ETag or date is the server's own (nginx makes it from the
    # modification time and the size), so there only the URL says two rows name one recording.
    if scheme == "s3" and call.file_version:
        return f"etag {call.file_version}"
    return f"url {where}"


@dataclass(frozen=True)
class Followed:
    index: int
    outcome: Outcome
    not_sent: bool  # already uploaded through its first twin (counted with the same-recording rule)


class Twins:
    """Holds the later twins until their first row has its outcome, then gives theirs."""

    def __init__(self, twin_of: dict[int, CallRow]) -> None:
        self._first = twin_of
        self._waiting: dict[int, list[int]] = {}
        for later, first in twin_of.items():
            self._waiting.setdefault(first.index, []).append(later)
        self._lock = threading.Lock()

    def __contains__(self, index: int) -> bool:
        return index in self._first

    def follow(self, index: int, outcome: Outcome) -> list[Followed]:
        """The outcomes of the rows waiting on row `index`, now that it has `outcome`."""
        with self._lock:
            later = self._waiting.pop(index, [])
        return [_followed(i, self._first[i], outcome) for i in later]


def _followed(index: int, first: CallRow, outcome: Outcome) -> Followed:
    where = f"row {first.row} ({first.file_name})"
    if outcome.status in ("uploaded", "already_uploaded"):
        by = "by this run" if outcome.status == "uploaded" else "already"
        return Followed(index, Outcome("already_uploaded", call_id=outcome.call_id,
                                       error=f"same recording as {where}, uploaded to this campaign {by}; {ALLOW}"),
                        True)
    if outcome.status == "unknown":
        return Followed(index, Outcome("not_attempted", error=behind_unknown_note(first)), False)
    return Followed(index, Outcome("not_attempted", error=(
        f"not sent: same recording as {where}, which was not uploaded ({outcome.status}); it goes with that row "
        f"when that row is sent again, or {ALLOW}")), False)
