"""Client cost: CPU seconds of the client process per upload, on loopback, no added latency.

    python benchmarks/bench_client_cpu.py                 # CLI runs of 2,000 and 200 calls, 8 workers
    python benchmarks/bench_client_cpu.py --profile       # also: where the time goes (cProfile)
    python benchmarks/bench_client_cpu.py --only profile
    python benchmarks/bench_client_cpu.py --only loop     # ApiClient.upload alone, 5 rounds of 1,000

The tool runs as the real CLI in a child process and its CPU (user + sys) is read from wait4. That total
includes start-up (imports: pandas, requests...), validation and invites, so the per-call cost is taken as
the difference between a run of N calls and one of N/10 calls: (CPU(N) - CPU(N/10)) / (N - N/10).
Target: under 2 ms of client CPU per call. The sandbox runs in a separate process (not counted).

--profile runs the same import in this process under cProfile: the main thread (plan, dispatch, results
writer) and every upload worker (one profiler per thread, merged), then prints the top functions and a
breakdown of the own time by library. The profilers count each thread's CPU time (time.thread_time), not
wall time, so waits (sockets, locks, the GIL) do not count; cProfile slows Python code down, so read the
shares, not the seconds.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import pstats
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

GROUPS = (  # (label, substring of the code's file path), first match wins
    ("requests_toolbelt (multipart encoder)", "requests_toolbelt"),
    ("urllib3", "urllib3"),
    ("requests", "/requests/"),
    ("http.client / socket / ssl", "http/client.py"),
    ("http.client / socket / ssl", "socket.py"),
    ("email (header parsing)", "/email/"),
    ("importer.client", "importer/client.py"),
    ("importer.ledger + sqlite3", "importer/ledger.py"),
    ("importer.ledger + sqlite3", "sqlite3"),
    ("importer.results + csv", "importer/results.py"),
    ("importer.results + csv", "/csv.py"),
    ("importer.runner / plan", "importer/runner.py"),
    ("importer.runner / plan", "importer/plan.py"),
    ("importer (other)", "importer/"),
    ("pandas / numpy", "pandas"),
    ("pandas / numpy", "numpy"),
    ("threading / queue / futures", "threading.py"),
    ("threading / queue / futures", "concurrent/futures"),
    ("threading / queue / futures", "queue.py"),
    ("json", "/json/"),
    ("logging", "logging/"),
)


STEPS = (  # (label, file path ends with, function name): cumulative CPU of the steps of one upload
    ("ImportRun._send_one (a whole row)", "importer/runner.py", "_send_one"),
    ("  ApiClient.upload", "importer/client.py", "upload"),
    ("    _file_changed (stat before each attempt)", "importer/client.py", "_file_changed"),
    ("    MultipartEncoder built", "requests_toolbelt/multipart/encoder.py", "__init__"),
    ("    Session.request (requests + urllib3)", "requests/sessions.py", "request"),
    ("      merge_environment_settings (env proxies)", "requests/sessions.py", "merge_environment_settings"),
    ("      HTTPAdapter.send", "requests/adapters.py", "send"),
    ("      _CountingBody.read (file -> socket)", "importer/client.py", "read"),
    ("    _read_capped (response body)", "importer/client.py", "_read_capped"),
    ("  Ledger._put (2 per row)", "importer/ledger.py", "_put"),
    ("  ImportRun._finish (results CSV row)", "importer/runner.py", "_finish"),
)


def steps_table(raw: dict, total: float, calls: int) -> None:
    print("  cumulative CPU by step (per call, and share of the workers' CPU):")
    for label, path_end, name in STEPS:
        ct = sum(v[3] for (f, _l, fn), v in raw.items() if f.endswith(path_end) and fn == name)
        if ct:
            print(f"    {label:<48} {ct / calls * 1000:6.2f} ms  {ct / total:6.1%}")


def group_of(filename: str, funcname: str) -> str:
    for label, needle in GROUPS:
        if needle in filename:
            return label
    if filename == "~":  # C builtins: name them by what they are
        if "socket" in funcname or "recv" in funcname or "send" in funcname:
            return "socket send/recv (C)"
        if "sqlite3" in funcname:
            return "importer.ledger + sqlite3"
        if "acquire" in funcname or "wait" in funcname:
            return "lock waits (C)"
        return "other builtins (C): " + funcname.split(" of ")[0].strip("<>{}")[:40]
    return "other Python: " + Path(filename).name


def cpu_runs(calls: int, workers: int) -> None:
    small = max(calls // 10, 1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        folder = Path(tmp)
        for n in (small, calls):
            sub = folder / f"n{n}"
            manifest = bk.generate_manifest(sub, n, agents=20)
            cfg = bk.write_config(sub, sub / "state", workers=workers)
            with bk.SandboxProcess(sub / "srv") as sb:
                run = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                        "--summary-json", sub / "summary.json"))
            summary = json.loads((sub / "summary.json").read_text())
            assert run.code == 0, run.err[-2000:]
            results[n] = (run, summary)
            print(f"{n:>6} calls: client CPU {run.cpu:.2f} s (user {run.user:.2f} + sys {run.sys:.2f}), wall "
                  f"{run.wall:.2f} s, upload phase {summary['upload_seconds']:.2f} s = "
                  f"{summary['counts']['uploaded'] / summary['upload_seconds']:.0f} calls/s; "
                  f"{run.cpu / n * 1000:.2f} ms CPU per call all included; sandbox CPU {sb.stats['cpu_seconds']} s")
    (a, _), (b, _) = results[small], results[calls]
    per_call = (b.cpu - a.cpu) / (calls - small) * 1000
    print(f"marginal client CPU per upload: ({b.cpu:.2f} - {a.cpu:.2f}) s / {calls - small} = {per_call:.2f} ms "
          f"(target < 2 ms: {'met' if per_call < 2 else 'NOT met'}); fixed cost (start-up, imports, validation) "
          f"about {a.cpu - small * per_call / 1000:.2f} s")


def profile_run(calls: int, workers: int, top: int) -> None:
    from importer import runner
    from importer.cli import main as cli_main

    profilers: list[cProfile.Profile] = []
    local = threading.local()
    original = runner.ImportRun._send_one

    def profiled_send_one(self: runner.ImportRun, *a: object, **kw: object) -> None:
        prof = getattr(local, "prof", None)
        if prof is None:
            prof = local.prof = cProfile.Profile(time.thread_time)
            profilers.append(prof)
        prof.enable()
        try:
            original(self, *a, **kw)
        finally:
            prof.disable()

    runner.ImportRun._send_one = profiled_send_one  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="bench-cpu-prof-") as tmp:
        folder = Path(tmp)
        manifest = bk.generate_manifest(folder, calls, agents=20)
        cfg = bk.write_config(folder, folder / "state", workers=workers)
        with bk.SandboxProcess(folder / "srv") as sb:
            import os

            os.environ["ALLOBRAIN_API_KEY"] = bk.sandbox_key()
            main_prof = cProfile.Profile(time.thread_time)
            out = io.StringIO()
            from contextlib import redirect_stdout

            with redirect_stdout(out):
                main_prof.enable()
                code = cli_main(["run", str(manifest), "--config", str(cfg), "--api-url", sb.url, "--quiet"])
                main_prof.disable()
            assert code == 0, out.getvalue()[-2000:]
    runner.ImportRun._send_one = original  # type: ignore[method-assign]

    workers_stats = pstats.Stats(profilers[0])
    for p in profilers[1:]:
        workers_stats.add(p)
    for title, stats in (("upload workers (merged)", workers_stats), ("main thread", pstats.Stats(main_prof))):
        raw = stats.stats  # type: ignore[attr-defined]
        total = sum(v[2] for v in raw.values())
        groups: collections.Counter[str] = collections.Counter()
        for (filename, _line, funcname), (_cc, _nc, tt, _ct, _callers) in raw.items():
            groups[group_of(filename, funcname)] += tt
        print(f"\n== {title}: {total:.2f} s of thread CPU time under cProfile ({total / calls * 1000:.2f} ms per call) ==")
        for label, tt in groups.most_common(14):
            print(f"  {tt / total:6.1%}  {tt:7.2f} s  {label}")
        if stats is workers_stats:
            steps_table(raw, total, calls)
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(top)
        lines = [line for line in buf.getvalue().splitlines() if line.strip()]
        print("\n".join(lines[lines.index(next(x for x in lines if "ncalls" in x)):]))


@dataclass(frozen=True)
class LoopCall:
    """What ApiClient.upload needs (the fields of a validated row)."""

    file_path: Path
    file_name: str
    file_size: int
    row: int
    timestamp: int
    agent_email: str = "agent0@example.com"
    campaign_id: str = bk.CAMPAIGN
    metadata: tuple[tuple[str, str], ...] = (("site", "Lyon"),)
    file_mtime_ns: int = 0


def client_loop(calls: int, repeats: int) -> None:
    """ApiClient.upload alone, one thread, no ledger, no results: CPU of this process per upload
    (time.process_time), best and median of `repeats` rounds. Less noisy than whole-CLI runs, so it is the
    one to compare two versions of the client with."""
    from importer.client import ApiClient

    with tempfile.TemporaryDirectory(prefix="bench-cpu-loop-") as tmp:
        folder = Path(tmp)
        path = folder / "call.wav"
        path.write_bytes(bk.wav_bytes(0.25))
        size = path.stat().st_size
        with bk.SandboxProcess(folder / "srv") as sb:
            client = ApiClient(sb.url, bk.sandbox_key())
            client.invite("agent0@example.com", "Agent 0")
            rounds = []
            for r in range(repeats):
                batch = [LoopCall(path, path.name, size, i, bk.START_TS + (r * calls + i) * 60) for i in range(calls)]
                t0 = time.process_time()
                ok = sum(client.upload(c).http_status == 200 for c in batch)
                rounds.append((time.process_time() - t0) / calls * 1000)
                assert ok == calls, ok
            client.close()
    rounds.sort()
    print(f"client loop (ApiClient.upload only, 1 thread): {calls} uploads x {repeats} rounds; CPU per upload "
          f"best {rounds[0]:.3f} ms, median {rounds[len(rounds) // 2]:.3f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="calls of the CLI runs and of the profile")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--only", choices=("cli", "loop", "profile"), action="append",
                    help="run only these parts (repeatable); default: cli")
    ap.add_argument("--profile", action="store_true", help="same as --only cli --only profile")
    ap.add_argument("--top", type=int, default=25, help="functions listed by the profile")
    ap.add_argument("--loop-calls", type=int, default=1000, help="uploads per round of the client loop")
    ap.add_argument("--repeats", type=int, default=5, help="rounds of the client loop")
    args = ap.parse_args()
    parts = set(args.only or ["cli"]) | ({"cli", "profile"} if args.profile else set())
    bk.print_machine()
    if "cli" in parts:
        cpu_runs(args.calls, args.workers)
    if "loop" in parts:
        client_loop(args.loop_calls, args.repeats)
    if "profile" in parts:
        profile_run(args.calls, args.workers, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
