"""The seven outcomes a row can have, as the results file's `import_status` writes them (the contract)."""

from __future__ import annotations

STATUSES = ("uploaded", "already_uploaded", "invalid", "agent_failed", "failed", "unknown", "not_attempted")
# What a results file fed back in may claim as already sent (the ledger checks the claim).
CARRIED_STATUSES = frozenset({"uploaded", "already_uploaded"})
