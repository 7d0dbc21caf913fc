"""A run started from the page: `run_import` in a thread, its progress kept for the server-sent events, and
its StopSignal for the Stop button (the same signal Ctrl-C raises in the CLI)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ImportToolError
from ..results import STATUSES
from ..runner import StopSignal, run_import
from ..safety import redact

if TYPE_CHECKING:
    from ..config import Config
    from ..manifest import ValidatedManifest
    from ..results import ResultsWriter
    from ..runner import RunSummary


class WebProgress:
    """The runner's Progress, kept as numbers a page can poll; `wait` wakes on every change."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._phases: dict[str, dict[str, int]] = {}
        self.version = 0

    def start(self, phase: str, total: int) -> None:
        with self._changed:
            self._phases[phase] = {"done": 0, "total": total, "bytes": 0}
            self._bump()

    def advance(self, phase: str, n: int = 1, nbytes: int = 0) -> None:
        with self._changed:
            if phase in self._phases:
                self._phases[phase]["done"] += n
                self._phases[phase]["bytes"] += nbytes
                self._bump()

    def finish(self, phase: str) -> None:
        with self._changed:
            self._bump()

    def _bump(self) -> None:
        self.version += 1
        self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the version passes `seen` (or `timeout`); the current version."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen, timeout)
            return self.version

    def wake(self) -> None:
        with self._changed:
            self._bump()

    def phases(self) -> dict[str, dict[str, int]]:
        with self._changed:
            return {k: dict(v) for k, v in self._phases.items()}


@dataclass
class Job:
    """One run. `key` names its results file in the workspace's registry (for the results page)."""

    number: int
    manifest: Path
    results_path: Path
    sandbox: bool
    api: str
    key: str = ""
    started_at: datetime = field(default_factory=datetime.now)
    stop: StopSignal = field(default_factory=StopSignal)
    progress: WebProgress = field(default_factory=WebProgress)
    writer: ResultsWriter | None = None
    summary: RunSummary | None = None
    error: str | None = None
    thread: threading.Thread | None = None
    _t0: float = field(default_factory=time.monotonic)
    _t1: float | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def state(self) -> str:
        if self.running:
            return "stopping" if self.stop.requested else "running"
        return "failed" if self.error else "done"

    def start(self, vm: ValidatedManifest, cfg: Config, *, api_url: str, api_key: str, state_dir: Path,
              retry_unknown: bool) -> None:
        def work() -> None:
            try:
                self.summary = run_import(
                    vm, cfg, api_url=api_url, api_key=api_key, state_dir=state_dir,
                    results_path=self.results_path, retry_unknown=retry_unknown, stop=self.stop,
                    progress=self.progress, on_writer=self._writer_ready, sandbox=self.sandbox)
            except ImportToolError as exc:
                self.error = redact(str(exc), api_key)
            except Exception as exc:  # a bug: the page says so rather than spin forever
                self.error = redact(f"unexpected error: {type(exc).__name__}: {exc}", api_key)
            finally:
                self._t1 = time.monotonic()
                self.progress.wake()

        self.thread = threading.Thread(target=work, name=f"ui-run-{self.number}", daemon=True)
        self.thread.start()

    def _writer_ready(self, writer: ResultsWriter) -> None:
        self.writer = writer

    def counts(self) -> dict[str, int]:
        if self.summary is not None:
            source = self.summary.counts
        elif self.writer is not None:
            source = self.writer.counts
        else:
            source = {}
        return {s: int(source.get(s, 0)) for s in STATUSES}

    def snapshot(self) -> dict[str, Any]:
        """What the run page shows, as JSON for the event stream."""
        elapsed = (self._t1 or time.monotonic()) - self._t0
        s = self.summary
        return {
            "state": self.state,
            "phases": self.progress.phases(),
            "counts": self.counts(),
            "rows": self.writer.total if self.writer is not None else None,
            "written": self.writer.written if self.writer is not None else 0,
            "elapsed": round(elapsed, 1),
            "error": self.error,
            "stopped": _stopped(s) if s is not None else None,
            "exit_code": s.exit_code if s is not None else None,
        }


def _stopped(s: RunSummary) -> str | None:
    if s.auth_error:
        return f"the API refused the key ({s.auth_error})"
    if s.halted:
        return s.halted
    if s.interrupted:
        return "interrupted"
    return None
