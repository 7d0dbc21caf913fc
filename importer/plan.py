"""What a run will do with each row, decided before any request: send it, or settle it at once.

Shared by `run` and `run --dry-run`, so the plan a user reads is the plan that is carried out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from .ledger import UNKNOWN, UPLOADED, CallKey, Entry, LedgerBackend, Upload
from .manifest import CallRow, ValidatedManifest, total_bytes, total_duration
from .results import Outcome
from .sources import Sources
from .statuses import CARRIED_STATUSES
from .twins import Fingerprints, behind_unknown_note, find_twins

UNKNOWN_HINT = "the server may already have this call; check it, then rerun with --retry-unknown to send it again"


def call_key(call: CallRow) -> CallKey:
    return CallKey(call.campaign_id, call.agent_email, call.timestamp, call.file_name, call.file_size)


@dataclass
class Plan:
    settled: dict[int, Outcome] = field(default_factory=dict)  # row index -> outcome known without a request
    to_send: list[CallRow] = field(default_factory=list)  # in manifest order
    twins: dict[int, CallRow] = field(default_factory=dict)  # row index -> the earlier row sent for its recording
    agents: dict[str, str] = field(default_factory=dict)  # email -> invite name, for the rows to send
    already_uploaded: int = 0
    held_unknown: int = 0
    invalid: int = 0
    same_recording: int = 0  # already uploaded to the campaign under another key (the same-recording rule)
    file_word: int = 0  # called uploaded by the results file, unknown to this ledger: skipped on its word

    @property
    def bytes_to_send(self) -> int:
        return total_bytes(self.to_send)

    @property
    def seconds_to_send(self) -> float | None:
        return total_duration(self.to_send)


def make_plan(vm: ValidatedManifest, ledger: LedgerBackend | None, *, retry_unknown: bool,
              allow_same_recording: bool = False, sources: Sources | None = None) -> Plan:
    plan = Plan()
    for index, reasons in vm.invalid.items():
        plan.settled[index] = Outcome("invalid", error=reasons)
    plan.invalid = len(vm.invalid)
    for index, (_status, call_id) in vm.carried.items():
        plan.settled[index] = Outcome("already_uploaded", call_id=call_id or None, error=FILE_WORD)
    plan.already_uploaded = plan.file_word = len(vm.carried)
    # The results file's `uploaded` claims are checked against the ledger its run used; when that is this
    # ledger, a claim it does not know is an edited or reused row, and is sent.
    own_file = ledger is not None and vm.loaded.results_ledger is not None and (
        vm.loaded.results_ledger == ledger.ledger_id)
    prints = Fingerprints((sources or Sources(remote=False)).fingerprint)
    same = _SameRecording(ledger, prints) if ledger is not None and not allow_same_recording else None
    held_back: list[CallRow] = []  # unknown rows not resent: a row with the same recording waits for them
    for call, entry in _with_entries(vm.calls, ledger):
        if entry is not None and entry.status == UPLOADED:
            plan.settled[call.index] = Outcome("already_uploaded", call_id=entry.call_id)
            plan.already_uploaded += 1
            continue
        if entry is None and call.prior_status in CARRIED_STATUSES and not own_file:
            plan.settled[call.index] = Outcome("already_uploaded", call_id=call.prior_call_id, error=FILE_WORD)
            plan.already_uploaded += 1
            plan.file_word += 1
            continue
        # `sending` is another live run's row in flight (a shared ledger): the claim decides, not the plan.
        held = (entry is not None and entry.status == UNKNOWN) or (entry is None and call.prior_status == "unknown")
        if held and not retry_unknown:
            plan.settled[call.index] = Outcome("unknown", http_status=entry.http_status if entry else None,
                                               error=UNKNOWN_HINT)
            plan.held_unknown += 1
            held_back.append(call)
            continue
        earlier = same.find(call) if same is not None else None
        if earlier is not None and _is_own(earlier, call):  # another run uploaded this very row since the lookup
            plan.settled[call.index] = Outcome("already_uploaded", call_id=earlier.call_id)
            plan.already_uploaded += 1
            continue
        if earlier is not None:
            plan.settled[call.index] = Outcome("already_uploaded", call_id=earlier.call_id,
                                               error=same_recording_note(earlier))
            plan.already_uploaded += 1
            plan.same_recording += 1
            continue
        plan.to_send.append(call)
    if not allow_same_recording:  # the same recording twice in this manifest: the first row is sent
        plan.twins, behind = find_twins(plan.to_send, prints, held_back)
        for index, unknown in behind.items():
            plan.settled[index] = Outcome("not_attempted", error=behind_unknown_note(unknown))
        plan.to_send = [c for c in plan.to_send if c.index not in plan.twins and c.index not in behind]
    for call in plan.to_send:
        plan.agents.setdefault(call.agent_email, vm.agents.get(call.agent_email, call.agent_name))
    return plan


def _with_entries(calls: list[CallRow], ledger: LedgerBackend | None,
                  chunk: int = 2000) -> Iterator[tuple[CallRow, Entry | None]]:
    """Each call with what the ledger holds for its key, looked up a chunk at a time (one round trip per
    chunk on a database server, instead of one per row)."""
    for start in range(0, len(calls), chunk):
        part = calls[start:start + chunk]
        found = ledger.get_many([call_key(c) for c in part]) if ledger is not None else {}
        for call in part:
            yield call, found.get(call_key(call))


FILE_WORD = ("not checked: the results file says it was uploaded, and this ledger has no record of it (the file "
             "was written with another ledger); clear import_status to send it")


def same_recording_note(earlier: Upload) -> str:
    when = earlier.updated_at.replace("+00:00", "Z")
    stamp = dt.datetime.fromtimestamp(earlier.timestamp, dt.UTC).isoformat().replace("+00:00", "Z")
    return (f"same recording already uploaded to this campaign on {when} as {earlier.file_name} with timestamp "
            f"{stamp} (agent {earlier.agent_email}); --allow-same-recording sends it anyway")


def _is_own(upload: Upload, call: CallRow) -> bool:
    return (upload.agent_email, upload.timestamp, upload.file_name) == (call.agent_email, call.timestamp,
                                                                          call.file_name)


class _SameRecording:
    """A row's recording uploaded to its campaign under another key. A file is hashed only when the ledger
    holds an upload of the same size in that campaign, so the common case costs one set lookup.

    The uploads of one (campaign, size) are read once per plan, not once per row: with many rows of one size
    (fixed-length clips, or a shared ledger that other runs are filling right now) reading them per row made
    the plan cost rows x uploads, and a run starting beside others sat in its plan until they had sent
    everything. A plan is a snapshot; the claim of each row still decides at send time."""

    def __init__(self, ledger: LedgerBackend, prints: Fingerprints) -> None:
        self.ledger = ledger
        self.prints = prints  # where the recordings live (a remote one is read through, pinned)
        self.sizes = ledger.uploaded_sizes()
        self._groups: dict[tuple[str, int], _Group] = {}

    def find(self, call: CallRow) -> Upload | None:
        """The earliest upload of this row's recording, or an upload of this row's own key (the ledger
        learned of it after the plan's lookup): the caller tells the two apart."""
        where = (call.campaign_id, call.file_size)
        if where not in self.sizes:
            return None
        group = self._groups.get(where)
        if group is None:
            group = self._groups[where] = _Group(self.ledger.uploads_of_size(*where))
        own = group.by_key.get((call.agent_email, call.timestamp, call.file_name))
        if own is not None:
            return own
        if not group.by_fingerprint:
            return None
        mine = self.prints.of(call)
        return group.by_fingerprint.get(mine) if mine else None


class _Group:
    """The uploads of one (campaign, size), oldest first: by fingerprint (the earliest of each) and by key."""

    def __init__(self, uploads: list[Upload]) -> None:
        self.by_fingerprint: dict[str, Upload] = {}
        self.by_key: dict[tuple[str, int, str], Upload] = {}
        for u in uploads:
            if u.fingerprint:
                self.by_fingerprint.setdefault(u.fingerprint, u)
            self.by_key[(u.agent_email, u.timestamp, u.file_name)] = u
