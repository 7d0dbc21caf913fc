"""Pacing accuracy: the bandwidth cap (MB/s set vs measured) and the daily quota (sent vs allowed).

    python benchmarks/bench_pacing.py                         # caps 1, 2, 5, 12.5 MB/s over 20 MB; quota 200
    python benchmarks/bench_pacing.py --caps 2 --mb 50        # one cap, a bigger run
    python benchmarks/bench_pacing.py --skip-quota

Bandwidth: a 20 MB run (40 recordings of 0.5 MB, 8 workers) against the sandbox in its own process, with
`upload.max_mb_per_second` set; measured = bytes of audio uploaded / the upload phase's wall time (from
--summary-json; the multipart framing, about 600 bytes a call, is not counted). Target: within 15% of the cap.
(12.5 MB/s is a 100 Mbit/s office link.)

Quota: the sandbox runs with `--daily-quota Q --rate-limit R`; the tool with `max_per_day: Q` and
`max_per_second: R`, over more rows than Q. Targets: exactly Q uploaded, no 429 from the server, a rerun sends
nothing. Then the same without `max_per_day`: the server's quota answer stops the run after at most one 429
per worker, and no row is failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

MB = 1_000_000


def _statuses(results: Path) -> Counter[str]:
    with open(results, encoding="utf-8-sig", newline="") as fh:
        return Counter(row["import_status"] for row in csv.DictReader(fh))


def bandwidth(folder: Path, cap: float, total_mb: float, workers: int) -> tuple[float, float]:
    calls = int(total_mb / 0.5)
    manifest = bk.generate_manifest(folder / "bw", calls, agents=4, seconds=62.5)  # 8-bit 8 kHz: 0.5 MB each
    state = folder / f"state-bw-{cap:g}"
    cfg = bk.write_config(folder, state, name=f"bw-{cap:g}.yaml", workers=workers, max_mb_per_second=cap)
    summary_path = folder / f"bw-{cap:g}.json"
    with bk.SandboxProcess(folder / "srv") as sb:
        run = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                "--results", folder / f"bw-{cap:g}.csv", "--summary-json", summary_path))
    s = json.loads(summary_path.read_text())
    if run.code != 0:
        raise SystemExit(f"run failed (exit {run.code}): {run.err[-2000:]}")
    return s["uploaded_bytes"] / MB, s["uploaded_bytes"] / s["upload_seconds"] / MB


def quota(folder: Path, limit: int, rate: float, rows: int, workers: int, *, tool_knows: bool) -> dict[str, object]:
    manifest = bk.generate_manifest(folder / "q", rows, agents=5, seconds=0.2)
    tag = "known" if tool_knows else "unknown"
    upload: dict[str, object] = {"workers": workers, "max_per_second": rate}
    if tool_knows:
        upload["max_per_day"] = limit
    cfg = bk.write_config(folder, folder / f"state-q-{tag}", name=f"q-{tag}.yaml", **upload)
    out: dict[str, object] = {}
    with bk.SandboxProcess(folder / "srv", rate_limit=rate, daily_quota=limit) as sb:
        first = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                  "--results", folder / f"q-{tag}.csv"))
        out["first_exit"] = first.code
        out["first"] = dict(_statuses(folder / f"q-{tag}.csv"))
        second = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                   "--results", folder / f"q-{tag}-again.csv"))
        out["rerun_exit"] = second.code
        out["rerun"] = dict(_statuses(folder / f"q-{tag}-again.csv"))
    out["server"] = sb.stats
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caps", type=float, nargs="*", default=[1, 2, 5, 12.5], help="MB/s caps to measure")
    ap.add_argument("--mb", type=float, default=20, help="MB of audio per bandwidth run")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--quota", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--skip-quota", action="store_true")
    args = ap.parse_args()
    bk.print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-pacing-") as tmp:
        folder = Path(tmp)
        if args.caps:
            print(f"bandwidth cap, {args.mb:g} MB of audio, {args.workers} workers:")
            print("  | MB/s set | MB/s measured | error | within 15% |")
            for cap in args.caps:
                sent, measured = bandwidth(folder, cap, args.mb, args.workers)
                err = measured / cap - 1
                print(f"  | {cap:g} | {measured:.2f} | {err:+.1%} | {'yes' if abs(err) <= 0.15 else 'NO'} |"
                      f"  ({sent:.1f} MB sent)")
        if not args.skip_quota:
            for knows in (True, False):
                r = quota(folder, args.quota, args.rate, args.rows, args.workers, tool_knows=knows)
                server = r["server"]
                assert isinstance(server, dict)
                first = r["first"]
                assert isinstance(first, dict)
                label = f"max_per_day: {args.quota}" if knows else "no max_per_day (the server's 429 decides)"
                print(f"quota: sandbox --daily-quota {args.quota} --rate-limit {args.rate:g}; tool {label}, "
                      f"max_per_second {args.rate:g}, {args.workers} workers, {args.rows} rows")
                print(f"  first run: exit {r['first_exit']}, {first}; uploaded {first.get('uploaded', 0)} of "
                      f"{args.quota} allowed ({'exact' if first.get('uploaded') == args.quota else 'NOT exact'})")
                print(f"  server: {server['calls_stored']} calls stored, {server['http_429']} answers 429 "
                      f"(requests by status: {server['by_status']})")
                print(f"  rerun before the next slot: exit {r['rerun_exit']}, {r['rerun']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
