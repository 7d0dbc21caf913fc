"""Long manifests: time and peak RSS of `validate` and `run --dry-run` on 1,000,000 rows, then a real run of
100,000 rows against the sandbox (no added latency), its rerun (every row already in the ledger), and
`validate` alone on those 100,000 rows for comparison.

    python benchmarks/bench_long_manifest.py                          # 1M rows + the 100k run (about 8 min)
    python benchmarks/bench_long_manifest.py --skip-run               # only validate / dry-run of 1M rows
    python benchmarks/bench_long_manifest.py --rows 0 --run-rows 20000
    python benchmarks/bench_long_manifest.py --dir /tmp/bench-rows    # keep the generated files for next time

Every command is the real CLI measured with `/usr/bin/time -v` (wall clock, user + sys CPU, maximum
resident set size). The manifests share `--distinct-files` small WAVs (default 1,000) reused round-robin;
every row has its own timestamp (one minute apart), 200 agents, one campaign, a `site` metadata column.
Targets: validate and dry-run of 1M rows each under 60 s and under 2 GB peak RSS; the run's own per-row
bookkeeping (ledger, results, queue) adds no memory that grows with the rows beyond validation's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402


def show(label: str, r: bk.TimeV, rows: int, *, limit_s: float | None = None, limit_mb: float | None = None) -> None:
    verdict = ""
    if limit_s is not None and limit_mb is not None:
        ok = r.wall < limit_s and r.max_rss_kb / 1024 < limit_mb
        verdict = f"  (target < {limit_s:.0f} s and < {limit_mb:.0f} MiB: {'met' if ok else 'NOT met'})"
    print(f"{label:<38} exit {r.code}  {r.wall:7.2f} s wall  {r.user + r.sys:7.2f} s CPU  "
          f"peak RSS {r.max_rss_kb / 1024:7.0f} MiB  ({r.wall / rows * 1e6:.1f} us/row){verdict}")
    if r.code not in (0,):
        print("   ", (r.out[-800:] + r.err[-1500:]).replace("\n", "\n    "))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows for validate / dry-run (0 = skip)")
    ap.add_argument("--run-rows", type=int, default=100_000, help="rows for the real run and its rerun")
    ap.add_argument("--distinct-files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--skip-run", action="store_true")
    ap.add_argument("--dir", type=Path, help="where to generate (reused when the parameters match)")
    args = ap.parse_args()
    bk.print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        base = args.dir or Path(tmp)
        if args.rows:
            folder = base / f"rows{args.rows}"
            t0 = time.perf_counter()
            manifest = bk.generate_manifest(folder, args.rows, distinct=args.distinct_files, agents=200, seconds=0.25)
            cfg = bk.write_config(folder, folder / "state")
            size_mb = manifest.stat().st_size / 1e6
            print(f"manifest: {args.rows:,} rows, {size_mb:.0f} MB, {args.distinct_files:,} distinct files "
                  f"(ready in {time.perf_counter() - t0:.1f} s)")
            r = bk.time_v(bk.cli("validate", manifest, "--config", cfg))
            show(f"validate {args.rows:,} rows", r, args.rows, limit_s=60, limit_mb=2048)
            print("   ", r.out.strip().splitlines()[-1] if r.out.strip() else "")
            r = bk.time_v(bk.cli("run", manifest, "--config", cfg, "--dry-run", "--api-url", "http://127.0.0.1:9"))
            show(f"run --dry-run {args.rows:,} rows", r, args.rows, limit_s=60, limit_mb=2048)
        if args.run_rows and not args.skip_run:
            folder = base / f"run{args.run_rows}"
            manifest = bk.generate_manifest(folder, args.run_rows, distinct=args.distinct_files, agents=200,
                                            seconds=0.25)
            state = folder / f"state-{int(time.time())}"
            cfg = bk.write_config(folder, state, name="run-config.yaml", workers=args.workers)
            r = bk.time_v(bk.cli("validate", manifest, "--config", cfg))
            show(f"validate {args.run_rows:,} rows", r, args.run_rows)
            validate_mb = r.max_rss_kb / 1024
            with bk.SandboxProcess(folder / "srv") as sb:
                summary = folder / "summary.json"
                run = bk.time_v(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                       "--results", folder / "results-1.csv", "--summary-json", summary),
                                sample_every=1.0)
                show(f"run {args.run_rows:,} rows (sandbox, 0 ms)", run, args.run_rows)
                s1 = json.loads(summary.read_text())
                rerun = bk.time_v(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                         "--results", folder / "results-2.csv", "--summary-json", summary))
                show(f"rerun {args.run_rows:,} rows (all in ledger)", rerun, args.run_rows)
                s2 = json.loads(summary.read_text())
            print(f"   run: {s1['counts']['uploaded']:,} uploaded in {s1['upload_seconds']:.1f} s "
                  f"({s1['counts']['uploaded'] / max(s1['upload_seconds'], 1e-9):.0f} calls/s); "
                  f"sandbox saw {sb.stats['by_status']}, sandbox CPU {sb.stats['cpu_seconds']} s")
            first_run_requests = 1 + s1["counts"]["uploaded"] + s1["agents"]["invited"]  # 1: the readiness probe
            print(f"   rerun: {s2['counts']['already_uploaded']:,} already_uploaded, requests it sent: "
                  f"{sb.stats['requests'] - first_run_requests}")
            print(f"   run: {bk.rss_profile(run.samples)}")
            print(f"   peak RSS: run {run.max_rss_kb / 1024:.0f} MiB vs validate alone {validate_mb:.0f} MiB "
                  f"(+{run.max_rss_kb / 1024 - validate_mb:.0f} MiB); rerun {rerun.max_rss_kb / 1024:.0f} MiB")
            print(f"   rerun cost beyond validate: {rerun.wall - r.wall:.2f} s wall = "
                  f"{(rerun.wall - r.wall) / args.run_rows * 1e6:.1f} us per skipped row")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
