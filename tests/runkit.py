"""Helpers for end-to-end tests: a manifest with real audio files, a config with an isolated ledger,
and the CLI run in-process (its exit code and what it printed)."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from conftest import make_wav

from importer.cli import main

CAMPAIGN = "665dc5c57275b74ce35c03ab"
HEADERS = ["file_path", "agent_email", "agent_name", "conversation_timestamp", "campaign_id", "site"]


def write_config(folder: Path, max_attempts: int = 4, **extra: object) -> Path:
    """A config whose ledger lives in `folder/state` (tests never touch the user's real ledger)."""
    lines = [f"state_dir: {folder / 'state'}", "upload:", f"  max_attempts: {max_attempts}"]
    for key, value in extra.items():
        lines.append(f"{key}: {value}")
    path = folder / "test-config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_manifest(folder: Path, n: int = 6, agents: int = 2, *, name: str = "calls.csv",
                   extra_rows: list[dict[str, str]] | None = None, seconds: float = 0.5) -> Path:
    """n valid rows over `agents` agents, each with its own small WAV file under folder/audio."""
    rows = []
    for i in range(n):
        a = i % agents
        make_wav(folder / "audio" / f"call{i:04d}.wav", seconds=seconds, seed=i)
        rows.append({
            "file_path": f"audio/call{i:04d}.wav",
            "agent_email": f"agent{a}@example.com",
            "agent_name": f"Agent {a}",
            "conversation_timestamp": str(1_750_000_000 + i * 60),
            "campaign_id": CAMPAIGN,
            "site": "Lyon" if i % 2 else "Paris",
        })
    rows += extra_rows or []
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=HEADERS)
        w.writeheader()
        w.writerows(rows)
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str | Path) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def read_results(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


REPO = Path(__file__).resolve().parents[1]


def child_env(key: str) -> dict[str, str]:
    """The environment of a CLI run as a child process: the key, and this checkout on the path."""
    env = dict(os.environ, ALLOBRAIN_API_KEY=key, PYTHONPATH=str(REPO))
    env.pop("PYTHONWARNINGS", None)
    return env


def child_run_cmd(manifest: Path, config: Path, url: str, results: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "importer", "run", str(manifest), "--config", str(config), "--api-url", url,
            "--quiet", "--workers", str(workers), "--results", str(results)]


def stop_child_after_calls(sb, cmd: list[str], calls: int, sig: int = signal.SIGKILL,
                           capture: bool = False) -> subprocess.Popen:
    """Start the CLI as a child process, send it `sig` once the sandbox holds `calls` calls, and return it
    (already waited for unless `capture`, in which case the caller reads its output)."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    child = subprocess.Popen(cmd, env=child_env(sb.api_key), stdout=out, stderr=out, text=True)
    deadline = time.monotonic() + 30
    while len(sb.calls()) < calls and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(sig)
    if not capture:
        child.wait()
    return child
