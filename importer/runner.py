"""The import run: agents first, then the calls through a bounded pool of workers.

Every row ends with exactly one outcome in the results CSV. The ledger is written before each request and
after it. Nothing here prints: progress goes through a `Progress` object the CLI supplies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from . import network, runinfo
from .admission import Admission
from .client import ApiClient, Attempted, RateLimiter
from .config import Config
from .errors import UsageError
from .guards import CampaignGuard, ReachabilityGuard
from .held import HeldRows
from .ledger import FAILED, UNKNOWN, UPLOADED, CallKey, LedgerBackend, LedgerUnavailable, open_ledger
from .manifest import CallRow, ValidatedManifest, manifest_bases
from .outage import Outage
from .paced import RunPacing
from .plan import UNKNOWN_HINT, Plan, call_key, make_plan
from .policy import Verdict, mentions_campaign
from .results import Outcome, ResultsFile, finished_now, writer_for
from .run_state import NoProgress, Progress, RunSummary, StopSignal
from .runinfo import RunInfo
from .safety import canonical_api
from .sources import Sources
from .twins import Twins

log = logging.getLogger("importer.run")

__all__ = ["ImportRun", "NoProgress", "Progress", "RunSummary", "StopSignal", "run_import"]

class ImportRun:
    def __init__(self, vm: ValidatedManifest, cfg: Config, *, api_url: str, api_key: str, ledger: LedgerBackend,
                 writer: ResultsFile, retry_unknown: bool, stop: StopSignal | None = None,
                 progress: Progress | None = None, allow_same_recording: bool = False) -> None:
        self.vm = vm
        self.allow_same_recording = allow_same_recording
        self.cfg = cfg
        self.ledger = ledger
        self.writer = writer
        self.retry_unknown = retry_unknown
        self.stop = stop or StopSignal()
        self.progress = progress or NoProgress()
        self.pacing = RunPacing(cfg, ledger, self.stop.event, self.progress)
        u = cfg.upload
        outage = Outage(u.ride_out_seconds)
        self.admission = Admission.for_workers(u.workers, u.max_workers, status=getattr(self.progress, "status", None),
                                               note=outage.note)
        # The client's stop event wakes retry waits on Ctrl-C and on an auth abort alike.
        self.client = ApiClient(
            api_url,
            api_key,
            timeout=cfg.upload.timeout_seconds,
            connect_timeout=cfg.upload.connect_timeout_seconds,
            max_attempts=cfg.upload.max_attempts,
            max_retry_after=cfg.upload.max_retry_after_seconds,
            # A shared ledger paces every run on it together; else this run paces itself.
            limiter=ledger.shared_limiter(cfg.upload.max_per_second) or RateLimiter(cfg.upload.max_per_second),
            stop=self.stop.event,
            bandwidth=self.pacing.bandwidth,
            ca_bundle=cfg.api.ca_bundle,
            sources=Sources(cfg.files),  # recordings stream from where they live (disk, S3, SFTP, https)
            observer=self.admission,
            outage=outage,
        )
        self.auth_error: str | None = None
        self.campaigns = CampaignGuard()
        self.reach = ReachabilityGuard(max(10, 2 * (u.workers if isinstance(u.workers, int) else 8)))
        self.halted: str | None = None
        self._reinvited: dict[str, bool] = {}
        self._reinvite_lock = threading.Lock()
        self._agent_locks: dict[str, threading.Lock] = {}
        self.summary = RunSummary(writer.path, writer.counts, writer.total)
        self._bytes_lock = threading.Lock()
        self.held = HeldRows(ledger, self._finish, lambda: self.progress.advance("uploads"))
        self.twins = Twins({})  # rows whose recording an earlier row sends (the plan's); they follow its outcome

    # --- the whole run ----------------------------------------------------------------------------

    def execute(self) -> RunSummary:
        started = time.monotonic()
        try:
            self.summary.recovered_unknown = self.ledger.recover()
            plan = make_plan(self.vm, self.ledger, retry_unknown=self.retry_unknown,
                             allow_same_recording=self.allow_same_recording, sources=self.client.sources)
            self.summary.same_recording, self.summary.file_word = plan.same_recording, plan.file_word
            self.twins = Twins(plan.twins)
            failed_agents = self._invite_agents(plan) if self.pacing.ready() else {}  # outside hours: nothing
            self._upload(plan, failed_agents)
        finally:
            self.client.close()
            self.summary.elapsed = time.monotonic() - started
            self.summary.auth_error = self.auth_error
            self.summary.halted = self.halted
            self.summary.setup_problem = self.reach.problem
            self.summary.campaigns_stopped = dict(self.campaigns.stopped)
            self.summary.api_url = self.client.base_url
            self.summary.pause = self.pacing.pause
            self.summary.interrupted = self.stop.requested and not self.auth_error and not self.halted
            self.summary.signum = self.stop.signum
        return self.summary

    # --- agents -----------------------------------------------------------------------------------

    def _invite_agents(self, plan: Plan) -> dict[str, str]:
        known = self.ledger.invited()
        todo = [(e, n) for e, n in plan.agents.items() if e not in known]
        self.summary.agents_needed = len(plan.agents)
        self.summary.agents_known = len(plan.agents) - len(todo)
        failed: dict[str, str] = {}
        if not todo:
            return failed
        self.progress.start("agents", len(todo))
        lock = threading.Lock()

        def invite(email: str, name: str) -> None:
            if self.stop.requested:
                return
            try:
                result = self.client.invite(email, name, role=self.cfg.agents.role,
                                            send_invite_email=self.cfg.agents.send_invite_email)
            except Exception:  # a bug must not end the run with no results: this agent's rows wait instead
                log.exception("inviting %s: unexpected error", email)
                with lock:
                    failed[email] = f"inviting agent {email} failed (internal error; see the log)"
                return
            with lock:
                if result.http_status is not None:
                    self.reach.answered()
                if result.verdict is Verdict.SUCCESS:
                    self.ledger.mark_invited(email)
                    self.summary.agents_invited += 1
                elif result.verdict is Verdict.AUTH:
                    self._abort(result)
                elif not result.interrupted:
                    self._unreachable(result)
                    if result.setup_problem is None:  # after a TLS or proxy stop, its rows wait as not_attempted
                        status = f"HTTP {result.http_status}: " if result.http_status else ""
                        failed[email] = f"inviting agent {email} failed ({status}{result.message})"
            self.progress.advance("agents")

        with ThreadPoolExecutor(self.cfg.agents.workers, thread_name_prefix="invite") as pool:
            for future in [pool.submit(invite, e, n) for e, n in todo]:
                future.result()
        self.progress.finish("agents")
        self.summary.agents_failed = failed
        return failed

    # --- uploads ----------------------------------------------------------------------------------

    def _upload(self, plan: Plan, failed_agents: dict[str, str]) -> None:
        gate = self.admission  # at most its limit in flight: a million rows are never a million futures
        calls = iter(plan.to_send)
        self.progress.start("uploads", len(plan.to_send))
        upload_started = time.monotonic()
        with ThreadPoolExecutor(gate.ceiling, thread_name_prefix="upload") as pool:
            for index in range(self.writer.total):
                settled = plan.settled.get(index)
                if settled is not None:
                    self._finish(index, settled)
                    continue
                if index in self.twins:  # written when the row it follows ends
                    continue
                call = next(calls)
                skipped = self._reason_not_to_send(call, failed_agents)
                if skipped is None and not gate.acquire(self.stop.event):
                    skipped = Outcome("not_attempted", error=self._stopped_reason())
                if skipped is not None:
                    self._finish(index, skipped)
                    if not self.stop.requested:  # after a stop the bar shows what was done, not 100%
                        self.progress.advance("uploads")
                    continue
                pool.submit(self._send_one, call).add_done_callback(_log_crash)
                self.held.poll()
        self.held.settle_all(min(10.0, self.cfg.ledger.lease_seconds / 2), self.stop.event)
        self.summary.upload_seconds = time.monotonic() - upload_started
        self.summary.concurrency = gate.usage()
        self.progress.finish("uploads")

    def _stopped_reason(self) -> str:
        if self.auth_error:
            return f"run stopped: the API refused the key ({self.auth_error})"
        if self.halted:
            return f"run stopped: {self.halted}"
        return f"run interrupted ({_signal_name(self.stop.signum)}) before this row was sent"

    def _reason_not_to_send(self, call: CallRow, failed_agents: dict[str, str]) -> Outcome | None:
        if self.stop.requested:
            return Outcome("not_attempted", error=self._stopped_reason())
        held = self.pacing.held()  # the quota or the hours stopped sending
        if held is not None:
            return held
        if call.agent_email in failed_agents:
            return Outcome("agent_failed", error=failed_agents[call.agent_email])
        reason = self.campaigns.stopped.get(call.campaign_id)
        return Outcome("not_attempted", error=reason) if reason else None

    def _send_one(self, call: CallRow) -> None:
        outcome: Outcome | None = None
        held = False
        try:
            outcome = self._reason_not_to_send(call, {}) or self.pacing.start(self._stopped_reason)
            if outcome is not None:
                return
            key = call_key(call)
            try:
                held = not self.held.take(call.index, key, retry_unknown=self.retry_unknown)
            except LedgerUnavailable as exc:  # a claim that cannot be recorded: the row is not sent
                outcome = Outcome("not_attempted", error=f"not sent: {exc}")
                self._halt(str(exc))
            if held or outcome is not None:  # held: another run has it; self.held writes its line
                return
            outcome = Outcome("unknown", error="internal error while sending; " + UNKNOWN_HINT)
            result = self.client.upload(call)
            while result.quota_seconds is not None:  # the API's own quota: stop, or (--wait) send after it
                self.ledger.mark(key, FAILED, http_status=result.http_status, error=result.message)  # not taken
                if not self.pacing.resend_after_quota(result):
                    break
                self.ledger.mark_sending(key)
                again = self.client.upload(call)
                result = replace(again, attempts=result.attempts + again.attempts)
            if self._agent_missing(result) and self._reinvite(call):
                again = self.client.upload(call)
                result = replace(again, attempts=result.attempts + again.attempts)
            outcome = self._record(call, result)
        except Exception:  # a bug must not lose the row: it stays `sending` in the ledger, `unknown` here
            log.exception("row %d: unexpected error", call.row)
        finally:
            self.pacing.end(outcome)
            self.admission.release()
            if not held:
                self._finish(call.index, outcome or Outcome("not_attempted", error="internal error before sending"))
            if not held and not (self.stop.requested and (outcome is None or outcome.status == "not_attempted")):
                self.progress.advance("uploads", nbytes=call.file_size if outcome and outcome.status == "uploaded" else 0)

    def _record(self, call: CallRow, result: Attempted) -> Outcome:
        key = call_key(call)
        common = {"http_status": result.http_status, "attempts": result.attempts}
        if result.http_status is not None:
            self.reach.answered()
        if result.verdict is Verdict.SUCCESS:
            self._mark(key, UPLOADED, call_id=result.call_id, http_status=result.http_status,
                       fingerprint=result.fingerprint)
            self.campaigns.record(call.campaign_id, result)
            with self._bytes_lock:
                self.summary.uploaded_bytes += call.file_size
            return Outcome("uploaded", call_id=result.call_id, **common)
        if result.verdict is Verdict.AMBIGUOUS:
            self._mark(key, UNKNOWN, http_status=result.http_status, error=result.message)
            return Outcome("unknown", error=f"{result.message}; {UNKNOWN_HINT}", **common)
        self._mark(key, FAILED, http_status=result.http_status, error=result.message)
        if result.quota_seconds is not None:  # the API's quota: this row did nothing wrong
            return self.pacing.quota_outcome(self._stopped_reason, **common)
        self._unreachable(result)
        if result.verdict is Verdict.AUTH:
            self._abort(result)
            return Outcome("failed", error=f"the API refused the key: {result.message}", **common)
        if result.interrupted or result.setup_problem:  # nothing was sent
            return Outcome("not_attempted", error=result.message, **common)
        self.campaigns.record(call.campaign_id, result)
        return Outcome("failed", error=result.message, **common)

    def _mark(self, key: CallKey, status: str, **details: str | int | None) -> None:
        """An outcome the ledger cannot take now stays in the results, and the ledger is given it later."""
        try:
            self.ledger.mark(key, status, **details)  # type: ignore[arg-type]
        except LedgerUnavailable as exc:
            log.error("%s: the outcome (%s) is in the results; the ledger gets it when it answers again", exc, status)
            self._halt(str(exc))

    def _agent_missing(self, result: Attempted) -> bool:
        return result.http_status == 404 and not mentions_campaign(result.message)

    def _reinvite(self, call: CallRow) -> bool:
        """The ledger said this agent was invited, but the API does not know it (removed since, or another
        organisation on the same URL): invite it again, once per run, and say whether it is ready now."""
        with self._reinvite_lock:  # one lock per agent: a slow invite holds up only that agent's rows
            agent_lock = self._agent_locks.setdefault(call.agent_email, threading.Lock())
        with agent_lock:
            if call.agent_email not in self._reinvited:
                name = self.vm.agents.get(call.agent_email, call.agent_name)
                result = self.client.invite(call.agent_email, name, role=self.cfg.agents.role,
                                            send_invite_email=self.cfg.agents.send_invite_email)
                ok = result.verdict is Verdict.SUCCESS
                if ok:
                    self.ledger.mark_invited(call.agent_email)
                    with self._bytes_lock:
                        self.summary.agents_reinvited += 1
                elif result.verdict is Verdict.AUTH:
                    self._abort(result)
                log.info("agent %s was unknown to the API; invited again: %s", call.agent_email,
                         "ready" if ok else result.message)
                self._reinvited[call.agent_email] = ok
            return self._reinvited[call.agent_email]

    def _unreachable(self, result: Attempted) -> bool:
        """Count requests that never got an answer; past the guard's limit the run stops itself rather than
        spend hours retrying every remaining row against an API that is down."""
        if (result.verdict is not Verdict.RETRY or result.http_status is not None or result.interrupted
                or result.from_source):
            return False
        reason = self.reach.failed(result.message, result.setup_problem)
        if reason:
            self._halt(reason)
        return True

    def _halt(self, reason: str) -> None:
        if self.halted is None:
            self.halted = reason
            log.error("%s; stopping the run", reason)
            self.stop.request()

    def _abort(self, result: Attempted) -> None:
        if self.auth_error is None:
            self.auth_error = f"HTTP {result.http_status}: {result.message}"
            log.error("the API refused the key (%s); stopping the run", self.auth_error)
        self.stop.request()

    def _finish(self, index: int, outcome: Outcome) -> None:
        if not outcome.finished_at:
            outcome = Outcome(outcome.status, outcome.http_status, outcome.error, outcome.attempts,
                              outcome.call_id, finished_now())
        self.writer.add(index, outcome)
        for twin in self.twins.follow(index, outcome):
            self._finish(twin.index, twin.outcome)
            if twin.not_sent:
                with self._bytes_lock:
                    self.summary.same_recording += 1
        if self.writer.error is not None and not self.stop.requested:
            # Without its results file the run cannot report what it did: nothing new starts.
            log.error("cannot write the results file (%s); stopping the run", self.writer.error)
            self.stop.request()


def _signal_name(signum: int | None) -> str:
    return {1: "SIGHUP", 15: "SIGTERM"}.get(signum or 2, "Ctrl-C")


def _log_crash(future: Future[None]) -> None:
    """A worker's own safety net failed (writing its row): say so loudly rather than lose it silently."""
    exc = future.exception()
    if exc is not None:
        log.error("a row could not be recorded: %r", exc)


def run_import(vm: ValidatedManifest, cfg: Config, *, api_url: str, api_key: str, state_dir: Path,
               results_path: Path, retry_unknown: bool, stop: StopSignal | None = None,
               progress: Progress | None = None,
               on_writer: Callable[[ResultsFile], None] | None = None,
               sandbox: bool = False, allow_same_recording: bool = False,
               summary_sheet: Callable[[RunSummary], list[tuple[str, str]]] | None = None) -> RunSummary:
    """The library entry point: open the ledger and the results file, run, close both.

    Beside the results file, a run-info file records the API, the folder relative paths resolve against,
    and whether every row was written (see runinfo.py); it says `complete` only once the run has ended.
    """
    # Before the ledger or the results file exist: a TLS or proxy failure ends the run here, in one line.
    network.preflight(api_url, ca_bundle=cfg.api.ca_bundle, timeout=cfg.upload.connect_timeout_seconds)
    loaded = vm.loaded
    rows = (list(r) for r in loaded.frame.itertuples(index=False, name=None))
    api = canonical_api(api_url)
    info = RunInfo(api=api, manifest=str(loaded.path.resolve()),
                   base_dir=loaded.base_dir or manifest_bases(loaded.path, loaded.is_results)[0],
                   rows=loaded.n_rows, complete=False, sandbox=sandbox, config=cfg.source,
                   settings=cfg.recorded())
    with open_ledger(cfg, api, state_dir=state_dir, manifest=info.manifest) as ledger:
        info = replace(info, ledger=ledger.ledger_id)
        writer = writer_for(results_path, loaded.headers, loaded.delimiter, rows, loaded.row_numbers(), vm.problems)
        summary: RunSummary | None = None
        try:
            runinfo.write(results_path, info)
            if on_writer:
                on_writer(writer)
            run = ImportRun(vm, cfg, api_url=api_url, api_key=api_key, ledger=ledger, writer=writer,
                            retry_unknown=retry_unknown, stop=stop, progress=progress,
                            allow_same_recording=allow_same_recording)
            summary = run.execute()
        finally:
            writer.close(summary_sheet(summary) if summary_sheet and summary else ())
            if writer.complete and writer.error is None:
                runinfo.write(results_path, replace(info, complete=True))
    if writer.error is not None:
        raise UsageError(
            f"cannot write the results file {results_path}: {writer.error}; the run stopped and the file is "
            "incomplete. Every call sent is in the ledger: free some space, then run the same manifest again "
            "(calls already sent become already_uploaded)"
        )
    return summary
