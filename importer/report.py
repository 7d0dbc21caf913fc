"""What the CLI tells people, as text: validation and run summaries, the dry-run plan, next steps.

Pure functions returning lines, so the wording is tested without running anything; cli.py prints them.
"""

from __future__ import annotations

from typing import Any

from .manifest import ValidatedManifest
from .plan import Plan
from .results import STATUSES
from .runner import RunSummary

MAX_AGENTS_LISTED = 20


def validation_summary(vm: ValidatedManifest) -> str:
    parts = [f"{vm.n_rows} rows: {len(vm.calls)} valid, {len(vm.invalid)} invalid"]
    if vm.carried:
        parts.append(f"{len(vm.carried)} already uploaded")
    parts += [f"{vm.n_warnings} warnings", f"{len(vm.agents)} agents", f"{fmt_bytes(vm.total_bytes)} of audio"]
    return ", ".join(parts)


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
        lines.append("INTERRUPTED: rows not sent are marked not_attempted.")
    lines.append(f"{s.total_rows} rows in {fmt_duration(s.elapsed)}:")
    lines += [f"  {status:<17} {s.counts[status]}" for status in STATUSES if s.counts.get(status)]
    if s.agents_needed:
        lines.append(f"agents: {s.agents_invited} invited, {s.agents_known} already known, "
                     f"{len(s.agents_failed)} failed")
    lines += [f"  {message}" for message in list(s.agents_failed.values())[:10]]
    uploaded = s.counts.get("uploaded", 0)
    if uploaded and s.upload_seconds > 0:
        lines.append(f"throughput: {uploaded / s.upload_seconds:.1f} calls/s, "
                     f"{s.uploaded_bytes / s.upload_seconds / 1e6:.2f} MB/s")
    if s.recovered_unknown:
        lines.append(f"note: {s.recovered_unknown} calls were cut off by an earlier run that stopped abruptly: "
                     "they are unknown (the server may have them)")
    lines.append(f"results: {s.results_path}")
    return lines + next_steps(s, rerun)


def next_steps(s: RunSummary, rerun: str) -> list[str]:
    c = s.counts
    to_fix = sum(c.get(k, 0) for k in ("invalid", "failed", "agent_failed"))
    lines = []
    if to_fix:
        lines.append(f"next: fix what import_error says in the results file, then rerun what is left: {rerun}")
    elif c.get("not_attempted"):
        lines.append(f"next: rerun what is left: {rerun}")
    if c.get("unknown"):
        lines.append(f"{c['unknown']} rows are unknown (the server may have them). Check them in AlloBrain QM, "
                     f"then resend them with: {rerun} --retry-unknown")
    if not lines:
        lines.append("nothing left to do: every row is uploaded.")
    return lines


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
                   "failed": len(s.agents_failed)},
        "recovered_unknown": s.recovered_unknown,
        "auth_error": s.auth_error,
        "halted": s.halted,
        "interrupted": s.interrupted,
    }


def fmt_bytes(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB"


def fmt_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
