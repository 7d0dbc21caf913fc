"""Throughput against the bound: N small calls, the sandbox adding L ms to every request, W workers.

    python benchmarks/bench_throughput.py                      # 2,000 calls, 100 ms, 16 workers, 200 sequential
    python benchmarks/bench_throughput.py --calls 500 --seq-calls 50
    python benchmarks/bench_throughput.py --workers auto --max-workers 16 --seq-calls 0 --no-floor   # adaptive

The ideal is W / L calls/s (160 calls/s for 16 workers and 100 ms): each worker can do no better than one call
per added latency. With `--workers auto` the bound is upload.max_workers (--max-workers) / L. Target: the upload phase reaches at least 90% of it.

Then, against the same sandbox, a floor client (the least a client can do: kept-alive http.client connections
sending bodies prepared in memory, no retries, no bookkeeping) shows what this machine allows when the sandbox
shares its cores with the client; and a plain sequential loop written the way the vendor doc's sample code is:
one `requests.post` per call, no session (a new connection each time), `files=` / `data=` as in the doc's
curl example. It runs on a subset (`--seq-calls`) and is extrapolated to N; our speed-up over it is printed.

The sandbox runs in a separate process; the tool runs as the real CLI (`python -m importer run ...`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402


def vendor_style_loop(url: str, manifest: Path, n: int) -> tuple[int, float]:
    """What a user of the vendor doc would write: a sequential loop, one requests.post per call."""
    rows = manifest.read_text(encoding="utf-8").splitlines()[1 : n + 1]
    api_key = bk.sandbox_key()
    ok = 0
    t0 = time.perf_counter()
    for line in rows:
        file_path, email, _name, ts, campaign, site = line.split(",")
        with open(manifest.parent / file_path, "rb") as fh:
            response = requests.post(
                f"{url}/calls/audio",
                headers={"x-api-key": api_key},
                files={"file": fh},
                data={
                    "campaign_id": campaign,
                    "conversation_timestamp": ts,
                    "agent_email": email,
                    "metadata": json.dumps([{"key": "site", "value": site}]),
                },
            )
        ok += response.status_code == 200
    return ok, time.perf_counter() - t0


def floor_client(url: str, manifest: Path, n: int, workers: int) -> tuple[int, float]:
    """The least a client can do: `workers` threads, each with one kept-alive http.client connection, sending
    bodies built in memory beforehand; no retries, no ledger, no results. What it reaches is the bound
    this machine (sandbox + client sharing the cores) allows, against which the tool is judged."""
    rows = manifest.read_text(encoding="utf-8").splitlines()[1 : n + 1]
    host, port = url.removeprefix("http://").split(":")
    api_key = bk.sandbox_key()
    boundary = "floorboundary0123456789"
    bodies = []
    for line in rows:
        file_path, email, _name, ts, campaign, site = line.split(",")
        data = (manifest.parent / file_path).read_bytes()
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{Path(file_path).name}"\r\n'
                 f"Content-Type: audio/x-wav\r\n\r\n".encode() + data + b"\r\n"]
        fields = {"campaign_id": campaign, "conversation_timestamp": ts, "agent_email": email,
                  "metadata": json.dumps([{"key": "site", "value": site}])}
        for k, v in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
        bodies.append(b"".join(parts) + f"--{boundary}--\r\n".encode())
    headers = {"x-api-key": api_key, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    work = iter(bodies)
    lock = threading.Lock()
    ok = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                body = next(work, None)
            if body is None:
                break
            conn.request("POST", "/calls/audio", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                with lock:
                    ok[0] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok[0], time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--workers", default="16", help="a number, or auto (bounded by --max-workers)")
    ap.add_argument("--max-workers", type=int, default=32, help="upload.max_workers, with --workers auto")
    ap.add_argument("--log-file", type=Path, help="the tool's request log (-v), to read its concurrency changes")
    ap.add_argument("--latency-ms", type=int, default=100)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--no-floor", dest="floor", action="store_false",
                    help="skip the minimal in-memory client that shows what this machine allows")
    ap.add_argument("--seq-calls", type=int, default=200, help="calls for the vendor-style loop (0 = skip)")
    args = ap.parse_args()
    bk.print_machine()
    workers = args.workers if args.workers == "auto" else int(args.workers)
    slots = args.max_workers if workers == "auto" else workers
    ideal = slots * 1000 / args.latency_ms
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        folder = Path(tmp)
        manifest = bk.generate_manifest(folder, args.calls, agents=args.agents)
        extra = {"max_workers": args.max_workers} if workers == "auto" else {}
        cfg = bk.write_config(folder, folder / "state", workers=workers, max_per_second=0, **extra)
        summary_path = folder / "summary.json"
        with bk.SandboxProcess(folder / "srv", latency_ms=args.latency_ms) as sb:
            run = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                    "--summary-json", summary_path,
                                    *(["--log-file", args.log_file] if args.log_file else [])))
            if run.code != 0:
                print(run.out[-2000:], run.err[-2000:])
                return 1
            summary = json.loads(summary_path.read_text())
            floor_ok, floor_s = floor_client(sb.url, manifest, args.calls, slots) if args.floor else (0, 0.0)
            seq_ok, seq_s = vendor_style_loop(sb.url, manifest, args.seq_calls) if args.seq_calls else (0, 0.0)
        uploaded = summary["counts"]["uploaded"]
        rate = uploaded / summary["upload_seconds"]
        c = summary.get("concurrency") or {}
        used = f", used {c.get('lowest')}-{c.get('highest')}, settled at {c.get('settled')}" if workers == "auto" else ""
        print(f"tool: {uploaded}/{args.calls} uploaded, workers {workers} (bound {slots}{used}), sandbox latency "
              f"{args.latency_ms} ms")
        print(f"  upload phase {summary['upload_seconds']:.2f} s -> {rate:.1f} calls/s = {rate / ideal:.1%} of the "
              f"ideal {ideal:.0f} calls/s (target >= 90%: {'met' if rate >= 0.9 * ideal else 'NOT met'})")
        print(f"  whole command {run.wall:.2f} s wall (start-up, validation, {summary['agents']['invited']} invites "
              f"included) -> {uploaded / run.wall:.1f} calls/s; client CPU {run.cpu:.2f} s, peak RSS "
              f"{run.max_rss_mb:.0f} MiB")
        print(f"  sandbox saw: {sb.stats.get('by_status')}, its CPU {sb.stats.get('cpu_seconds')} s")
        if args.floor:
            floor_rate = floor_ok / floor_s
            print(f"floor client (http.client, bodies in memory, {slots} threads): {floor_ok}/{args.calls} in "
                  f"{floor_s:.2f} s -> {floor_rate:.1f} calls/s = {floor_rate / ideal:.1%} of the ideal; the tool "
                  f"reaches {rate / floor_rate:.1%} of it")
        if args.seq_calls:
            seq_rate = seq_ok / seq_s
            print(f"vendor-style sequential loop: {seq_ok}/{args.seq_calls} in {seq_s:.2f} s -> {seq_rate:.2f} calls/s; "
                  f"extrapolated to {args.calls} calls: {args.calls / seq_rate:.0f} s")
            print(f"speed-up of the tool (upload phase) over it: x{rate / seq_rate:.1f}; whole command vs "
                  f"extrapolated loop: x{(args.calls / seq_rate) / run.wall:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
