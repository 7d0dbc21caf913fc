"""What a run will do with each row, decided before any request: send it, or settle it at once.

Shared by `run` and `run --dry-run`, so the plan a user reads is the plan that is carried out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ledger import SENDING, UNKNOWN, UPLOADED, CallKey, Ledger
from .manifest import CallRow, ValidatedManifest, total_bytes, total_duration
from .results import Outcome

UNKNOWN_HINT = "the server may already have this call; check it, then rerun with --retry-unknown to send it again"


def call_key(call: CallRow) -> CallKey:
    return CallKey(call.campaign_id, call.agent_email, call.timestamp, call.file_name, call.file_size)


@dataclass
class Plan:
    settled: dict[int, Outcome] = field(default_factory=dict)  # row index -> outcome known without a request
    to_send: list[CallRow] = field(default_factory=list)  # in manifest order
    agents: dict[str, str] = field(default_factory=dict)  # email -> invite name, for the rows to send
    already_uploaded: int = 0
    held_unknown: int = 0
    invalid: int = 0

    @property
    def bytes_to_send(self) -> int:
        return total_bytes(self.to_send)

    @property
    def seconds_to_send(self) -> float | None:
        return total_duration(self.to_send)


def make_plan(vm: ValidatedManifest, ledger: Ledger | None, *, retry_unknown: bool) -> Plan:
    plan = Plan()
    for index, reasons in vm.invalid.items():
        plan.settled[index] = Outcome("invalid", error=reasons)
    plan.invalid = len(vm.invalid)
    for index, (_status, call_id) in vm.carried.items():
        plan.settled[index] = Outcome("already_uploaded", call_id=call_id or None)
    plan.already_uploaded = len(vm.carried)
    for call in vm.calls:
        entry = ledger.get(call_key(call)) if ledger is not None else None
        if entry is not None and entry.status == UPLOADED:
            plan.settled[call.index] = Outcome("already_uploaded", call_id=entry.call_id)
            plan.already_uploaded += 1
            continue
        held = (entry is not None and entry.status in (UNKNOWN, SENDING)) or (
            entry is None and call.prior_status == "unknown"
        )
        if held and not retry_unknown:
            plan.settled[call.index] = Outcome("unknown", http_status=entry.http_status if entry else None,
                                               error=UNKNOWN_HINT)
            plan.held_unknown += 1
            continue
        plan.to_send.append(call)
        plan.agents.setdefault(call.agent_email, vm.agents.get(call.agent_email, call.agent_name))
    return plan
