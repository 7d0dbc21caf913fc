"""Rate limit: the sandbox answers 429 above R requests/s; the tool runs with `max_per_second: R`.

    python benchmarks/bench_rate_limit.py                    # R = 20, 600 calls (about 30 s), 8 workers
    python benchmarks/bench_rate_limit.py --latency-ms 100   # the same with 100 ms added to every request
    python benchmarks/bench_rate_limit.py --tool-rate 0      # a user who did not set max_per_second
    python benchmarks/bench_rate_limit.py --rate 0 --tool-rate 0 --max-concurrency 6 --latency-ms 100 --calls 1000
                                                             # a gateway allowing 6 at once: auto settles at <= 6

Targets: no 429 at all (counted by the sandbox, which runs in a separate process), and the upload phase
holds at least 95% of R. The sandbox's bucket allows a burst of one second's worth (R requests), so an
evenly paced client never trips it; invites go through the same limiter and count against the same bucket.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402


def _attempts_over_one(folder: Path) -> int:
    import csv

    results = next((folder / "results").glob("*.csv"))
    with open(results, encoding="utf-8-sig", newline="") as fh:
        return sum(1 for row in csv.DictReader(fh) if row["import_attempts"] not in ("", "0", "1"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--calls", type=int, default=600)
    ap.add_argument("--workers", default="auto", help="auto (the default) or a number")
    ap.add_argument("--max-concurrency", type=int, default=0, help="the sandbox answers 429 above K at once")
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("--tool-rate", type=float, help="the tool's max_per_second (default: --rate; 0 = none)")
    args = ap.parse_args()
    tool_rate = args.rate if args.tool_rate is None else args.tool_rate
    bk.print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        folder = Path(tmp)
        manifest = bk.generate_manifest(folder, args.calls, agents=20)
        cfg = bk.write_config(folder, folder / "state", workers=args.workers, max_per_second=tool_rate)
        summary_path = folder / "summary.json"
        with bk.SandboxProcess(folder / "srv", latency_ms=args.latency_ms, rate_limit=args.rate,
                               max_concurrency=args.max_concurrency) as sb:
            run = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                    "--summary-json", summary_path))
        summary = json.loads(summary_path.read_text())
        uploaded = summary["counts"]["uploaded"]
        rate = uploaded / summary["upload_seconds"]
        n429 = sb.stats["http_429"]
        print(f"sandbox rate limit {args.rate:g}/s, latency {args.latency_ms} ms; tool max_per_second {tool_rate:g}, "
              f"{args.workers} workers, exit {run.code}")
        share = (f"{rate / args.rate:.1%} of the limit (target >= 95%: {'met' if rate >= 0.95 * args.rate else 'NOT met'})"
                 if args.rate else "no rate limit")
        print(f"  {uploaded}/{args.calls} uploaded in {summary['upload_seconds']:.2f} s -> {rate:.2f} calls/s = {share}")
        print(f"  429 answers: {n429} (target 0: {'met' if n429 == 0 else 'NOT met'}); sandbox saw {sb.stats['by_status']}")
        retried = _attempts_over_one(folder)
        print(f"  rows that needed more than one attempt: {retried}")
        requests_made = sum(n for k, n in sb.stats["by_status"].items() if k.startswith("/calls/audio"))
        print(f"  uploads at once: {summary.get('concurrency')}; sandbox peak in flight {sb.stats['peak_in_flight']}; "
              f"429 share {n429 / max(requests_made, 1):.2%} of {requests_made} upload requests")
        print(f"  whole command {run.wall:.2f} s wall incl. {summary['agents']['invited']} invites")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
