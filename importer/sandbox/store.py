"""What the sandbox remembers, in memory behind one lock: agents, stored calls and the request log.

Readers get deep copies, so a caller can never see (or change) a record while a request thread writes it.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


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
        self._journal: IO[str] | None = None

    def keep_in(self, path: Path) -> None:
        """Remember agents and calls in `path` (one JSON line each) and read back what an earlier sandbox
        left there: a restarted sandbox with the same --data-dir knows what it had, as the real API would.
        The request log stays in memory (it is about this process)."""
        with self._lock:
            if path.exists():
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        try:
                            kind, record = next(iter(json.loads(line).items()))
                        except (ValueError, StopIteration, AttributeError):
                            continue  # a line cut by a kill: the record was not acknowledged either
                        if kind == "agent":
                            self._agents.setdefault(str(record["email"]).lower(), record)
                        elif kind == "call":
                            self._calls.append(record)
            self._journal = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _remember(self, kind: str, record: dict[str, Any]) -> None:
        if self._journal is not None:  # under the lock, before the request is answered
            self._journal.write(json.dumps({kind: record}, default=str) + "\n")
            self._journal.flush()

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
            if email.lower() not in self._agents:
                self._agents[email.lower()] = record = _agent_record(email, name, "agent", False)
                self._remember("agent", record)

    def create_agent(
        self, email: str, name: str, role: str, send_invite_email: bool
    ) -> dict[str, Any] | None:
        """The new agent's record, or None when one with that email (in any case) exists."""
        with self._lock:
            if email.lower() in self._agents:
                return None
            record = _agent_record(email, name, role, send_invite_email)
            self._agents[email.lower()] = record
            self._remember("agent", record)
        return record

    def has_agent(self, email: str) -> bool:
        with self._lock:
            return email.lower() in self._agents

    # ------------------------------------------------------------------ calls and the request log

    def add_call(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(record)
            self._remember("call", record)

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
