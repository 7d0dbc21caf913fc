"""Shared helpers for the benchmark scripts (not a benchmark itself).

- `generate_manifest`: a CSV manifest whose files exist (K distinct small WAVs reused round-robin, every row
  with its own timestamp so no two rows are duplicates);
- `write_config`: a config with an isolated `state_dir` (a benchmark never touches the user's ledger);
- `SandboxProcess`: the sandbox API in a separate process, so that only the client is measured; on exit it
  reports what it saw (requests per path and status, 429s, calls stored, its own CPU);
- `measure`: run a command as a child process and return wall time, CPU (user + sys) and peak RSS of that
  child, read from `wait4` (the same counters `/usr/bin/time -v` prints);
- `time_v`: the same through `/usr/bin/time -v`, for the figures the issue asks to measure with it.

The sandbox child is started with `python benchmarks/benchkit.py serve ...`.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CAMPAIGN = "665dc5c57275b74ce35c03ab"
START_TS = 1_600_000_000  # 2020-09-13: a million rows one minute apart still end in 2022
HEADERS = ("file_path", "agent_email", "agent_name", "conversation_timestamp", "campaign_id", "site")
SITES = ("Lyon", "Paris", "Lille", "Nantes", "Marseille")


def sandbox_key() -> str:
    from importer.sandbox import SANDBOX_API_KEY

    return SANDBOX_API_KEY


# --- the machine --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "?"

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": sh(["nproc"]),
        "mem_total": sh(["free", "-h"]).splitlines()[1].split()[1] if sh(["free", "-h"]) else "?",
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?",
        "python": platform.python_version(),
    }


def print_machine() -> None:
    m = machine()
    print(f"machine: {m['nproc']} cores, {m['mem_total']} RAM, Python {m['python']}, "
          f"load average {m['loadavg']}, {m['date']}")


# --- manifests and config -----------------------------------------------------------------------------


def wav_bytes(seconds: float, rate: int = 8000, seed: int = 0) -> bytes:
    """An 8-bit mono WAV of `seconds`; `seed` changes the samples so files differ (every seed: the first
    samples hold it, since the pattern alone repeats every 256 seeds and the same-recording rule would then
    rightly skip a file uploaded under another name)."""
    buf = io.BytesIO()
    frames = bytearray(bytes([(128 + seed + i) % 256 for i in range(256)]) * (int(seconds * rate) // 256 + 1))
    frames[:8] = seed.to_bytes(8, "little")
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def generate_manifest(folder: Path, rows: int, *, distinct: int | None = None, agents: int = 20,
                      seconds: float = 0.5, name: str = "manifest.csv") -> Path:
    """`rows` valid rows over `agents` agents; files audio/fNNNNNNN.wav, `distinct` of them (default: one per
    row) reused round-robin; timestamps one minute apart from 2020-09-13, so every row is distinct.
    Reuses an existing folder generated with the same parameters."""
    distinct = distinct or rows
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / name
    params = {"rows": rows, "distinct": distinct, "agents": agents, "seconds": seconds, "name": name}
    marker = folder / f"{name}.params.json"
    if manifest.exists() and marker.exists() and json.loads(marker.read_text()) == params:
        return manifest
    audio = folder / "audio"
    audio.mkdir(exist_ok=True)
    for k in range(distinct):
        path = audio / f"f{k:07d}.wav"
        if not path.exists():
            path.write_bytes(wav_bytes(seconds, seed=k))
    with open(manifest, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(HEADERS) + "\n")
        for i in range(rows):
            a = i % agents
            fh.write(f"audio/f{i % distinct:07d}.wav,agent{a}@example.com,Agent {a},{START_TS + i * 60},"
                     f"{CAMPAIGN},{SITES[i % 5]}\n")
    marker.write_text(json.dumps(params))
    return manifest


def write_config(folder: Path, state_dir: Path, name: str = "bench-config.yaml", **upload: object) -> Path:
    lines = [f"state_dir: {state_dir}", "manifest:", "  timezone: UTC", "upload:"]
    lines += [f"  {k}: {v}" for k, v in upload.items()] or ["  workers: 8"]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(*args: object) -> list[str]:
    words = [str(a) for a in args]
    if words[:1] == ["run"] and "--allow-same-recording" not in words:
        # Benchmark manifests reuse a set of recordings over many rows (generate_manifest's `distinct`): here
        # each row is a call of its own, as in the figures recorded before the same-recording rule.
        words.append("--allow-same-recording")
    return [sys.executable, "-m", "importer", *words]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ALLOBRAIN_API_KEY"] = sandbox_key()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --- measuring a child process ------------------------------------------------------------------------


@dataclass
class Measured:
    code: int
    wall: float
    user: float
    sys: float
    max_rss_mb: float
    out: str
    err: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def measure(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 900) -> Measured:
    """Run `cmd`, return its wall time, CPU and peak RSS (from wait4: this child only)."""
    out_f = io.BytesIO()
    err_f = io.BytesIO()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env or cli_env(), cwd=cwd or ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def pump(src: io.BufferedReader, dst: io.BytesIO) -> None:
        for chunk in iter(lambda: src.read(65536), b""):
            dst.write(chunk)

    threads = [threading.Thread(target=pump, args=(proc.stdout, out_f), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err_f), daemon=True)]
    for t in threads:
        t.start()
    deadline = t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    return Measured(proc.returncode, wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024,
                    out_f.getvalue().decode(errors="replace"), err_f.getvalue().decode(errors="replace"))


@dataclass
class TimeV:
    code: int
    wall: float
    user: float
    sys: float
    max_rss_kb: int
    out: str
    err: str
    samples: list[tuple[float, float]] = field(default_factory=list)


def time_v(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 900,
           sample_every: float = 0.0) -> TimeV:
    """Run `cmd` under `/usr/bin/time -v` and read its report. With `sample_every`, also record the
    command's resident memory (VmRSS) every that many seconds in `.samples`: [(seconds, MiB)]."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], env=env or cli_env(), cwd=ROOT, stdout=out,
                                stderr=err, text=True)
        samples: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        child = None
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                break
            if sample_every:
                child = child or _first_child(proc.pid)
                rss = _rss_mb(child) if child else None
                if rss is not None:
                    samples.append((time.perf_counter() - t0, rss))
            time.sleep(sample_every or 0.05)
        proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, report = out.read(), err.read()

    def value(label: str) -> str:
        m = re.search(rf"^\s*{re.escape(label)}: (.+)$", report, re.M)
        return m.group(1).strip() if m else "0"

    wall_text = value("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    wall = 0.0
    for part in wall_text.split(":"):
        wall = wall * 60 + float(part)
    result = TimeV(proc.returncode, wall, float(value("User time (seconds)")), float(value("System time (seconds)")),
                   int(value("Maximum resident set size (kbytes)")), stdout, report)
    result.samples = samples
    return result


def _first_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_profile(samples: list[tuple[float, float]], points: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)) -> str:
    """'RSS at 10%: 160 MiB, ...' from time_v samples."""
    if not samples:
        return "no RSS samples"
    end = samples[-1][0]
    parts = []
    for frac in points:
        t, rss = min(samples, key=lambda s: abs(s[0] - frac * end))
        parts.append(f"{frac:.0%} ({t:.0f} s): {rss:.0f}")
    return "RSS in MiB at " + ", ".join(parts)


# --- the sandbox in its own process -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SandboxProcess:
    """`with SandboxProcess(tmp, latency_ms=100) as sb:` ... `sb.url`; `sb.stats` after the block."""

    def __init__(self, data_dir: Path, *, latency_ms: int = 0, rate_limit: float = 0, daily_quota: int = 0,
                 max_concurrency: int = 0) -> None:
        self.data_dir = data_dir
        self.max_concurrency = max_concurrency
        self.latency_ms = latency_ms
        self.rate_limit = rate_limit
        self.daily_quota = daily_quota
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stats: dict[str, object] = {}
        self._stats_file = data_dir.parent / f"sandbox-stats-{self.port}.json"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SandboxProcess:
        import requests

        shutil.rmtree(self.data_dir, ignore_errors=True)  # what an earlier run stored is not kept
        self.data_dir.mkdir(parents=True)
        self._log = open(self.data_dir.parent / f"sandbox-{self.port}.log", "w+b")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(self.port),
             "--latency-ms", str(self.latency_ms), "--rate-limit", str(self.rate_limit),
             "--daily-quota", str(self.daily_quota),
             "--data-dir", str(self.data_dir), "--stats", str(self._stats_file),
             "--max-concurrency", str(self.max_concurrency)],
            cwd=ROOT, env=cli_env(), stdout=self._log, stderr=self._log,
        )
        for _ in range(400):
            if self._proc.poll() is not None:
                break
            try:
                requests.get(self.url + "/_sandbox/agents", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        self._proc.kill()
        self._log.seek(0)
        raise RuntimeError("the sandbox did not start:\n" + self._log.read().decode(errors="replace")[-2000:])

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        self._proc.wait(60)
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self._stats_file.exists():
            self.stats = json.loads(self._stats_file.read_text())
            self._stats_file.unlink()


def _serve(args: argparse.Namespace) -> None:
    from importer.sandbox import Sandbox

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sb = Sandbox(port=args.port, latency_ms=args.latency_ms, rate_limit=args.rate_limit,
                 daily_quota=args.daily_quota, data_dir=args.data_dir, max_concurrency=args.max_concurrency)
    sb.start()
    # When calls were stored, to the 50 ms: the window of several clients' work seen from the server.
    first = last = None
    seen = 0
    while not stop.wait(0.05):
        n = len(sb.calls())
        if n != seen:
            last = time.monotonic()
            first = first or last
            seen = n
    log = sb.requests_log()
    by_status = collections.Counter(f"{e['path']} {e['status']}" for e in log)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = {
        "requests": len(log),
        "by_status": dict(by_status),
        "http_429": sum(1 for e in log if e["status"] == 429),
        "calls_stored": len(sb.calls()),
        "calls_window_seconds": round(last - first, 3) if first and last else 0.0,
        "peak_in_flight": sb.peak_in_flight,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
    }
    sb.stop()
    Path(args.stats).write_text(json.dumps(stats))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--latency-ms", type=int, default=0)
    s.add_argument("--rate-limit", type=float, default=0)
    s.add_argument("--daily-quota", type=int, default=0)
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--stats", type=Path, required=True)
    s.add_argument("--max-concurrency", type=int, default=0)
    _serve(ap.parse_args())
