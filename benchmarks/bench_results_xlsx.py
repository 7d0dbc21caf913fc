"""XLSX results vs CSV results: peak RSS and wall time of the same real run (sandbox, no latency), once with
`--results run.csv` and once with `--results run.xlsx`, plus the size of each file.

    python benchmarks/bench_results_xlsx.py                    # 100,000 rows (about 10 min on 2 cores)
    python benchmarks/bench_results_xlsx.py --rows 20000 --dir /tmp/bench-xlsx

Target: the XLSX run's peak RSS within 50 MB of the CSV run's. Both runs use a fresh ledger, so both send
every row; the XLSX run also converts its journal into the workbook at the end (openpyxl write-only mode).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--distinct-files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--dir", type=Path)
    args = ap.parse_args()
    bk.print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-xlsx-") as tmp:
        folder = (args.dir or Path(tmp)) / f"run{args.rows}"
        manifest = bk.generate_manifest(folder, args.rows, distinct=args.distinct_files, agents=200, seconds=0.25)
        peaks = {}
        for suffix in (".csv", ".xlsx"):
            state = folder / f"state-{suffix[1:]}-{int(time.time())}"
            cfg = bk.write_config(folder, state, name=f"cfg-{suffix[1:]}.yaml", workers=args.workers)
            out = folder / f"results{suffix}"
            with bk.SandboxProcess(folder / f"srv-{suffix[1:]}") as sb:
                r = bk.time_v(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                     "--results", out), timeout=3600)
            peaks[suffix] = r.max_rss_kb / 1024
            print(f"run --results {out.name:<13} exit {r.code}  {r.wall:7.1f} s wall  peak RSS "
                  f"{peaks[suffix]:6.0f} MiB  file {out.stat().st_size / 1e6:6.1f} MB")
            if r.code != 0:
                print("   ", (r.out[-800:] + r.err[-1500:]).replace("\n", "\n    "))
        gap = peaks[".xlsx"] - peaks[".csv"]
        print(f"XLSX - CSV peak RSS: {gap:+.0f} MiB (target: within 50 MB: {'met' if gap <= 50e6 / 2**20 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
