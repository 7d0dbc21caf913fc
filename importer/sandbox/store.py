"""What the sandbox remembers, in memory behind one lock: agents, stored calls and the request log.

Readers get deep copies, so a caller can never see (or change) a record while a request thread writes it.
"""

from __future__ import annotations

import copy
import secrets
import threading
from datetime import UTC, datetime
from typing import Any


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_id() -> str:
    return secrets.token_hex(12)


class SandboxStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agents: dict[str, dict[str, Any]] = {}  # lowercased email -> record
        self._calls: list[dict[str, Any]] = []
        self._log: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ snapshots

    def agents(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._agents.values()))

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._calls)

    def requests_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._log)

    # ------------------------------------------------------------------ agents

    def add_agent(self, email: str, name: str) -> None:
        """Seed an agent as if invited earlier; an existing one is left as it is."""
        with self._lock:
            self._agents.setdefault(email.lower(), _agent_record(email, name, "agent", False))

    def create_agent(
        self, email: str, name: str, role: str, send_invite_email: bool
    ) -> dict[str, Any] | None:
        """The new agent's record, or None when one with that email (in any case) exists."""
        with self._lock:
            if email.lower() in self._agents:
                return None
            record = _agent_record(email, name, role, send_invite_email)
            self._agents[email.lower()] = record
        return record

    def has_agent(self, email: str) -> bool:
        with self._lock:
            return email.lower() in self._agents

    # ------------------------------------------------------------------ calls and the request log

    def add_call(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(record)

    def log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def update_entry(self, entry: dict[str, Any], **fields: Any) -> None:
        """Change a logged entry (it is shared with requests_log readers, hence the lock)."""
        with self._lock:
            entry.update(fields)


def _agent_record(email: str, name: str, role: str, send_invite_email: bool) -> dict[str, Any]:
    return {
        "id": new_id(),
        "email": email,
        "name": name,
        "role": role,
        "send_invite_email": send_invite_email,
        "created_at": now(),
    }
