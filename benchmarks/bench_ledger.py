"""Ledger overhead: time per row of the ledger writes, and the cost of a rerun that skips every row.

    python benchmarks/bench_ledger.py                           # 100,000 keys; then a 100,000-row rerun
    python benchmarks/bench_ledger.py --rerun-rows 1000000      # the rerun at a million rows
    python benchmarks/bench_ledger.py --rows 0 --profile        # where a rerun's time goes

1. Writes, in this process, on a fresh ledger in a temporary `state_dir` (what a run does per row:
   `mark_sending` before the request, `mark(..., uploaded)` after it), single-threaded and then from 8
   threads at once (the run's workers share one connection behind a lock); then `get` per row (what the
   plan does for each row of a rerun).
2. A rerun: a generated manifest (files present) whose every row the ledger already holds as `uploaded`
   (filled through `Ledger.mark`, keys computed by the importer's own `call_key`), run with the real CLI
   under `/usr/bin/time -v`. It must send nothing; it is compared with `validate` alone on the same manifest.
   No server is needed: `--api-url` points at a closed loopback port, so any request would fail loudly.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

from importer.ledger import UPLOADED, CallKey, Ledger  # noqa: E402

API = "http://127.0.0.1:9"


def keys(n: int, offset: int = 0) -> list[CallKey]:
    return [CallKey(bk.CAMPAIGN, f"agent{i % 200}@example.com", bk.START_TS + i * 60, f"f{i % 1000:07d}.wav", 2044)
            for i in range(offset, offset + n)]


def writes(n: int, threads: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        with Ledger(Path(tmp), API) as ledger:
            ks = keys(n)
            t0 = time.perf_counter()
            for k in ks:
                ledger.mark_sending(k)
                ledger.mark(k, UPLOADED, call_id="0123456789abcdef01234567", http_status=200)
            one = time.perf_counter() - t0
            print(f"writes, 1 thread:  {n:,} rows x 2 writes in {one:.2f} s = {one / n * 1e6:.0f} us per row "
                  f"({one / n / 2 * 1e6:.0f} us per write)")

            ks = keys(n, offset=n)
            chunks = [ks[i::threads] for i in range(threads)]

            def work(part: list[CallKey]) -> None:
                for k in part:
                    ledger.mark_sending(k)
                    ledger.mark(k, UPLOADED, call_id="0123456789abcdef01234567", http_status=200)

            t0 = time.perf_counter()
            pool = [threading.Thread(target=work, args=(c,)) for c in chunks]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            many = time.perf_counter() - t0
            print(f"writes, {threads} threads: {n:,} rows x 2 writes in {many:.2f} s = {many / n * 1e6:.0f} us per row "
                  f"(all threads together; the ledger's ceiling is {n / many:,.0f} rows/s)")

            t0 = time.perf_counter()
            found = sum(1 for k in keys(n) if ledger.get(k) is not None)
            look = time.perf_counter() - t0
            print(f"lookups (the plan of a rerun): {found:,} found in {look:.2f} s = {look / n * 1e6:.0f} us per row")
        size = (Path(tmp) / Ledger.FILE_NAME).stat().st_size
        print(f"ledger file: {size / 1e6:.1f} MB for {2 * n:,} calls ({size / (2 * n):.0f} bytes per call)")


def rerun(rows: int, base: Path, profile: bool = False) -> None:
    from importer.config import load_config
    from importer.manifest import load_manifest, validate_manifest
    from importer.plan import call_key
    from importer.safety import check_base_url

    folder = base / f"rerun{rows}"
    manifest = bk.generate_manifest(folder, rows, distinct=1000, agents=200, seconds=0.25)
    state = folder / f"state-{int(time.time())}"
    cfg_path = bk.write_config(folder, state)
    t0 = time.perf_counter()
    vm = validate_manifest(load_manifest(manifest, load_config(cfg_path)), load_config(cfg_path))
    api = check_base_url(API)
    with Ledger(state, api) as ledger:
        for call in vm.calls:
            k = call_key(call)
            ledger.mark(k, UPLOADED, call_id="0123456789abcdef01234567", http_status=200)
    print(f"ledger filled with {len(vm.calls):,} uploaded calls in {time.perf_counter() - t0:.1f} s")
    del vm
    v = bk.time_v(bk.cli("validate", manifest, "--config", cfg_path))
    r = bk.time_v(bk.cli("run", manifest, "--config", cfg_path, "--api-url", API, "--quiet",
                         "--results", folder / "results.csv"))
    tail = [line for line in r.out.splitlines() if "already_uploaded" in line or "rows in" in line]
    for label, m in (("validate", v), ("rerun (every row in the ledger)", r)):
        print(f"{label:<34} {rows:,} rows: exit {m.code}, {m.wall:.2f} s wall, {m.user + m.sys:.2f} s CPU, "
              f"peak RSS {m.max_rss_kb / 1024:.0f} MiB")
    print("   rerun said:", " | ".join(x.strip() for x in tail))
    extra = r.wall - v.wall
    print(f"   rerun cost beyond validate: {extra:.2f} s = {extra / rows * 1e6:.1f} us per skipped row; "
          f"memory beyond validate: {(r.max_rss_kb - v.max_rss_kb) / 1024:+.0f} MiB")
    if profile:
        profile_rerun(manifest, cfg_path, folder / "results-profiled.csv")


def profile_rerun(manifest: Path, cfg_path: Path, results: Path) -> None:
    """The same rerun in this process under cProfile (main thread: it does all the work of a rerun)."""
    import cProfile
    import io
    import pstats
    from contextlib import redirect_stdout

    from importer.cli import main as cli_main

    os.environ["ALLOBRAIN_API_KEY"] = bk.sandbox_key()  # a rerun checks the key even when it sends nothing
    prof = cProfile.Profile()
    with redirect_stdout(io.StringIO()):
        prof.enable()
        cli_main(["run", str(manifest), "--config", str(cfg_path), "--api-url", API, "--quiet", "--results", str(results),
                  "--allow-same-recording"])
        prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(18)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    print("   profile of the rerun (cProfile, top functions by own time):")
    print("\n".join("   " + x for x in lines[lines.index(next(x for x in lines if "ncalls" in x)):]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="keys for the write / lookup timings")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rerun-rows", type=int, default=100_000, help="rows of the rerun (0 = skip)")
    ap.add_argument("--profile", action="store_true", help="also profile the rerun in this process")
    ap.add_argument("--dir", type=Path, help="where to generate the rerun's manifest (reused)")
    args = ap.parse_args()
    bk.print_machine()
    if args.rows:
        writes(args.rows, args.threads)
    if args.rerun_rows:
        with tempfile.TemporaryDirectory(prefix="bench-ledger-rerun-") as tmp:
            rerun(args.rerun_rows, args.dir or Path(tmp), args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
