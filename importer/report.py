"""What the CLI tells people, as text: validation and run summaries, the dry-run plan, next steps.

Pure functions returning lines, so the wording is tested without running anything; cli.py prints them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from .concurrency import Usage
from .manifest import CallRow, ValidatedManifest
from .plan import Plan
from .results import STATUSES
from .run_state import RunSummary

MAX_AGENTS_LISTED = 20


MAX_FAILED_AGENTS_LISTED = 10


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 row`, `2 rows`: counts read as people write them."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def validation_summary(vm: ValidatedManifest) -> str:
    parts = [f"{plural(vm.n_rows, 'row')}: {len(vm.calls):,} valid, {len(vm.invalid):,} invalid"]
    if vm.carried:
        parts.append(f"{len(vm.carried):,} already uploaded")
    parts += [plural(vm.n_warnings, "warning"), plural(len(vm.agents), "agent"),
              f"{fmt_bytes(vm.total_bytes)} of audio"]
    return ", ".join(parts)


def time_span(calls: Iterable[CallRow], zone: str) -> str:
    """`2025-11-24 08:30 to 2025-11-28 17:45 (Europe/Paris)`: the range of call times, in the zone they
    were read in, so a wrong zone shows at a glance."""
    stamps = [c.timestamp for c in calls]
    tz = ZoneInfo(zone)

    def show(ts: int) -> str:
        return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")

    return f"{show(min(stamps))} to {show(max(stamps))} ({zone})"


def plan_lines(plan: Plan, to_invite: list[str], api_url: str | None) -> list[str]:
    seconds = plan.seconds_to_send
    lines = [
        "Plan (dry run: nothing is sent)",
        f"  API:                {api_url or 'built-in sandbox'}",
        f"  agents to invite:   {len(to_invite)} (already invited: {len(plan.agents) - len(to_invite)})",
    ]
    lines += [f"    {email} ({plan.agents[email]})" for email in to_invite[:MAX_AGENTS_LISTED]]
    if len(to_invite) > MAX_AGENTS_LISTED:
        lines.append(f"    ... and {len(to_invite) - MAX_AGENTS_LISTED} more")
    lines += [
        f"  calls to send:      {len(plan.to_send)}",
        f"  already uploaded:   {plan.already_uploaded}",
    ]
    if plan.twins:
        lines.append(f"  same recording as an earlier row: {len(plan.twins)} (sent once, with that row)")
    if plan.held_unknown:
        lines.append(f"  unknown, held back: {plan.held_unknown} (add --retry-unknown to resend)")
    lines += [
        f"  invalid rows:       {plan.invalid}",
        f"  bytes to send:      {fmt_bytes(plan.bytes_to_send)}",
        f"  audio duration:     {fmt_duration(seconds) if seconds is not None else 'unknown'}",
    ]
    return lines


def summary_lines(s: RunSummary, rerun: str) -> list[str]:
    """The end-of-run summary; `rerun` is the command that runs the results file again."""
    lines = [""]
    if s.auth_error:
        lines.append(f"STOPPED: the API refused the key ({s.auth_error}). Check the key, then rerun.")
    elif s.halted:
        lines.append(f"STOPPED: {s.halted}.")
    elif s.interrupted:
        by = {1: "SIGHUP", 15: "SIGTERM"}.get(s.signum or 2, "Ctrl-C")
        lines.append(f"INTERRUPTED ({by}): in-flight uploads finished; rows not sent are marked not_attempted.")
    elif s.pause:
        lines.append(f"STOPPED SENDING: {s.pause.reason}.")
    lines.append(f"{plural(s.total_rows, 'row')} in {fmt_duration(s.elapsed)}:")
    lines += [f"  {status:<17} {s.counts[status]}" for status in STATUSES if s.counts.get(status)]
    if s.agents_needed:
        lines.append(f"agents: {s.agents_invited} invited, {s.agents_known} already known, "
                     f"{len(s.agents_failed)} failed")
    if s.agents_reinvited:
        lines.append(f"agents: {s.agents_reinvited} invited again (the API no longer knew them)")
    failed = list(s.agents_failed.values())
    lines += [f"  {message}" for message in failed[:MAX_FAILED_AGENTS_LISTED]]
    if len(failed) > MAX_FAILED_AGENTS_LISTED:
        lines.append(f"  ... and {len(failed) - MAX_FAILED_AGENTS_LISTED} more (each row's import_error names its agent)")
    if s.same_recording:
        lines.append(f"note: {plural(s.same_recording, 'row')} not sent: the same recording is already uploaded to "
                     "the campaign under another timestamp, name or agent, earlier or by another row of this "
                     "manifest (import_error says when; "
                     "--allow-same-recording sends them anyway)")
    if s.file_word:
        lines.append(f"note: {plural(s.file_word, 'row')} skipped on the results file's word alone: it says uploaded, "
                     "and this ledger has no record of them (clear import_status to send one)")
    uploaded = s.counts.get("uploaded", 0)
    if uploaded and s.upload_seconds > 0:
        lines.append(f"throughput: {uploaded / s.upload_seconds:.1f} calls/s, "
                     f"{s.uploaded_bytes / s.upload_seconds / 1e6:.2f} MB/s")
    if s.concurrency is not None and uploaded:
        lines.append(concurrency_line(s.concurrency))
    if s.recovered_unknown:
        lines.append(f"note: {s.recovered_unknown} calls were cut off by an earlier run that stopped abruptly: "
                     "they are unknown (the server may have them)")
    lines.append(f"results: {s.results_path}")
    return lines + next_steps(s, rerun)


def concurrency_line(u: Usage) -> str:
    if not u.adaptive:
        return f"uploads at once: {u.settled} (upload.workers)"
    if u.lowest == u.highest:
        return f"uploads at once: {u.settled} (auto; no change)"
    return (f"uploads at once: auto, {u.lowest} to {u.highest}, settled at {u.settled} "
            f"({u.changes} changes; -v logs each and why)")


def next_steps(s: RunSummary, rerun: str) -> list[str]:
    """What to do next, matched to the cause: a refused key, an API that did not answer or a missing campaign
    is not fixed in the results file; only row problems send people to import_error."""
    c = s.counts
    host = urlsplit(s.api_url).netloc or s.api_url or "the API"
    lines = []
    if s.auth_error:
        lines.append(f"next: check the API key ({host} refused it), then rerun what is left: {rerun}")
    elif s.setup_problem is not None:  # a certificate or a proxy: the fix is a setting, not the rows
        lines.append(f"next ({s.setup_problem.host}): {s.setup_problem.fix}; then rerun what is left: {rerun}")
    elif s.halted:
        lines.append(f"next: {host} did not answer; check the network, the proxy and api.base_url, then rerun what is "
                     f"left: {rerun}")
    for campaign in s.campaigns_stopped:
        lines.append(f"next: campaign {campaign} answered not found at {host}: check the campaign id (the campaign_id "
                     "column, campaign_id in config.yaml or --campaign-id), then rerun what is left")
    to_fix = sum(c.get(k, 0) for k in ("invalid", "failed", "agent_failed"))
    if to_fix and not s.auth_error and s.setup_problem is None:
        lines.append(f"next: fix what import_error says in the results file, then rerun what is left: {rerun}")
    elif c.get("not_attempted") and s.pause and not lines:
        lines.append(f"next: rerun what is left at or after {s.pause.when}: {rerun}")
        lines.append("      (or add --wait to wait for the slot; README, \"Quotas and sending hours\": a cron example)")
    elif c.get("not_attempted") and not lines:
        lines.append(f"next: rerun what is left: {rerun}")
    if c.get("unknown"):
        lines.append(f"{plural(c['unknown'], 'row is', 'rows are')} unknown (the server may have them). Check them in "
                     f"AlloBrain QM, then resend them with: {rerun} --retry-unknown")
    if not lines:
        lines.append("nothing left to do: every row is uploaded.")
    return lines


def summary_sheet(s: RunSummary, rerun: str, api: str, config: str | None) -> list[tuple[str, str]]:
    """The XLSX results' Summary sheet beyond the counts (which the writer adds): where the rows went, with
    which settings, how it ended and what to do next, as (label, value) pairs."""
    pairs = [("API", api), ("config", config or "built-in defaults (no config.yaml)")]
    if s.auth_error:
        pairs.append(("stopped", f"the API refused the key ({s.auth_error}); check the key, then rerun"))
    elif s.halted:
        pairs.append(("stopped", s.halted))
    elif s.interrupted:
        pairs.append(("stopped", "interrupted: rows not sent are marked not_attempted"))
    uploaded = s.counts.get("uploaded", 0)
    if uploaded and s.upload_seconds > 0:
        pairs.append(("throughput", f"{uploaded / s.upload_seconds:.1f} calls/s, "
                                    f"{s.uploaded_bytes / s.upload_seconds / 1e6:.2f} MB/s"))
    if s.agents_needed:
        pairs.append(("agents", f"{s.agents_invited} invited, {s.agents_known} already known, "
                                f"{len(s.agents_failed)} failed"))
    return pairs + [("next", line.removeprefix("next: ")) for line in next_steps(s, rerun)]


def summary_dict(s: RunSummary) -> dict[str, Any]:
    """--summary-json: stable keys for scripts and schedulers."""
    return {
        "results": str(s.results_path.absolute()),
        "rows": s.total_rows,
        "counts": s.counts,
        "exit_code": s.exit_code,
        "elapsed_seconds": round(s.elapsed, 3),
        "upload_seconds": round(s.upload_seconds, 3),
        "uploaded_bytes": s.uploaded_bytes,
        "agents": {"needed": s.agents_needed, "invited": s.agents_invited, "already_known": s.agents_known,
                   "failed": len(s.agents_failed), "reinvited": s.agents_reinvited},
        "concurrency": None if s.concurrency is None else {
            "mode": "auto" if s.concurrency.adaptive else "fixed", "lowest": s.concurrency.lowest,
            "highest": s.concurrency.highest, "settled": s.concurrency.settled, "changes": s.concurrency.changes},
        "recovered_unknown": s.recovered_unknown,
        "same_recording": s.same_recording,
        "file_word": s.file_word,
        "campaigns_not_found": sorted(s.campaigns_stopped),
        "auth_error": s.auth_error,
        "halted": s.halted,
        "setup_problem": s.setup_problem.kind if s.setup_problem else None,
        "interrupted": s.interrupted,
        "signal": s.signum if s.interrupted else None,
        # Quota or sending hours: why sending stopped, and the next slot (ISO 8601 with offset) for schedulers.
        "paused": s.pause.reason if s.pause else None,
        "next_slot": s.pause.iso if s.pause else None,
    }


def fmt_bytes(n: int) -> str:
    """Decimal units throughout (as the MB/s figures): kB, MB, GB."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB"


def fmt_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
