"""A manifest's rows as the ledger knows them, whichever run (on whichever machine) had each one.

For `allobrain-import status MANIFEST` (rows per status) and `allobrain-import results MANIFEST` (a results
file written from the ledger alone, without sending anything). Works the same on both backends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from . import runinfo
from .errors import UsageError
from .ledger import FAILED, SENDING, UNKNOWN, UPLOADED, Holder, LedgerBackend
from .manifest import ValidatedManifest, manifest_bases
from .plan import UNKNOWN_HINT, call_key
from .results import Outcome, ResultsWriter
from .runinfo import RunInfo

NOT_SENT = "not sent yet: no run has claimed it"


def outcome_from(holder: Holder | None) -> Outcome:
    """A row's latest outcome in the ledger, as a results line."""
    if holder is None:
        return Outcome("not_attempted", error=NOT_SENT)
    e = holder.entry
    at = (holder.updated_at or "").replace("+00:00", "Z")
    if e.status == UPLOADED:
        return Outcome("uploaded", http_status=e.http_status, call_id=e.call_id, finished_at=at,
                       error=f"by {holder.who}")
    if e.status == SENDING:
        return Outcome("not_attempted", error=f"being sent by {holder.who} (since {at})", finished_at=at)
    if e.status == UNKNOWN:
        return Outcome("unknown", http_status=e.http_status, error=f"{e.error or 'unknown'}; {UNKNOWN_HINT}",
                       finished_at=at)
    status = "failed" if e.status == FAILED and e.http_status else "not_attempted"
    return Outcome(status, http_status=e.http_status, error=e.error or "", finished_at=at)


def manifest_outcomes(vm: ValidatedManifest, ledger: LedgerBackend) -> Iterator[tuple[int, Outcome]]:
    """(row index, outcome) for every data row, in manifest order."""
    calls = {call.index: call for call in vm.calls}
    for index in range(vm.loaded.n_rows):
        if index in vm.invalid:
            yield index, Outcome("invalid", error=vm.invalid[index])
        elif index in calls:
            yield index, outcome_from(ledger.holder(call_key(calls[index])))
        elif index in vm.carried:  # a results file's uploaded row whose key the plan does not send again
            yield index, Outcome("already_uploaded", call_id=vm.carried[index][1] or None,
                                 error="on the word of the results file this manifest is")
        else:  # pragma: no cover - every row is one of the three
            yield index, Outcome("not_attempted", error=NOT_SENT)


def row_counts(vm: ValidatedManifest, ledger: LedgerBackend) -> tuple[Counter[str], Counter[str]]:
    """Rows per results status, and who is sending the rows in flight ("run R on host H" -> rows)."""
    statuses: Counter[str] = Counter()
    senders: Counter[str] = Counter()
    for _index, outcome in manifest_outcomes(vm, ledger):
        label = outcome.status
        if outcome.error == NOT_SENT:
            label = "not sent yet"
        elif outcome.error.startswith("being sent by "):
            label = "sending"
            senders[outcome.error.removeprefix("being sent by ").split(" (since")[0]] += 1
        statuses[label] += 1
    return statuses, senders


def write_results(vm: ValidatedManifest, ledger: LedgerBackend, path: Path) -> dict[str, int]:
    """The results file of `vm` from the ledger; with its run-info, so it can be rerun like any other."""
    loaded = vm.loaded
    rows = (list(r) for r in loaded.frame.itertuples(index=False, name=None))
    writer = ResultsWriter(path, loaded.headers, loaded.delimiter, rows, list(loaded.line_numbers))
    try:
        for index, outcome in manifest_outcomes(vm, ledger):
            writer.add(index, outcome)
    finally:
        writer.close()
    if writer.error is not None:
        raise UsageError(f"cannot write {path}: {writer.error}")
    runinfo.write(path, RunInfo(api=ledger.api, manifest=str(loaded.path.resolve()),
                                base_dir=loaded.base_dir or manifest_bases(loaded.path, loaded.is_results)[0],
                                rows=loaded.n_rows, complete=True))
    return {k: v for k, v in writer.counts.items() if v}
