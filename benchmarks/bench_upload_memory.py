"""Client memory while uploading large files: peak RSS must stay flat in file size (target < 150 MB).

The sandbox runs in a separate process so that only the client is measured. Run by hand:

    python benchmarks/bench_upload_memory.py --size-mb 1024 --workers 1
    python benchmarks/bench_upload_memory.py --size-mb 1024 --workers 8

It prints the client's peak RSS (ru_maxrss of this process) and the throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importer.client import ApiClient  # noqa: E402
from importer.sandbox import SANDBOX_API_KEY  # noqa: E402


@dataclass(frozen=True)
class BigCall:
    file_path: Path
    file_name: str
    file_size: int
    row: int
    agent_email: str = "bench@example.com"
    timestamp: int = 1_750_000_000
    campaign_id: str = "665dc5c57275b74ce35c03ab"
    metadata: tuple[tuple[str, str], ...] = ()
    file_mtime_ns: int = 0


def make_file(path: Path, size: int) -> None:
    """A RIFF/WAVE header then pseudo-random bytes (not a sparse file: the disk really reads it)."""
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    with open(path, "wb") as fh:
        fh.write(b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVE")
        written = 12
        while written < size:
            n = min(len(block), size - written)
            fh.write(block[:n])
            written += n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmpdir = Path(tmp)
        size = args.size_mb * 1024 * 1024
        files = []
        for i in range(args.workers):
            p = tmpdir / f"big{i}.wav"
            make_file(p, size)
            files.append(p)
        port = 8790
        server = subprocess.Popen(
            [sys.executable, "-c",
             "import sys; from importer.sandbox import Sandbox; "
             "Sandbox(port=int(sys.argv[1]), data_dir=sys.argv[2], max_upload_mb=float(sys.argv[3])).serve_forever()",
             str(port), str(tmpdir / "srv"), str(args.size_mb * 2)],
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    requests.get(url + "/_sandbox/agents", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            client = ApiClient(url, SANDBOX_API_KEY, timeout=600)
            assert client.invite("bench@example.com", "Bench").http_status in (201, 409)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t0 = time.monotonic()
            calls = [BigCall(p, p.name, p.stat().st_size, i) for i, p in enumerate(files)]
            with ThreadPoolExecutor(args.workers) as pool:
                results = list(pool.map(client.upload, calls))
            elapsed = time.monotonic() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ok = sum(1 for r in results if r.http_status == 200)
            total_mb = args.workers * args.size_mb
            print(f"files: {args.workers} x {args.size_mb} MiB, uploaded {ok}/{len(results)}")
            print(f"elapsed: {elapsed:.1f}s, {total_mb / elapsed:.0f} MiB/s")
            print(f"client peak RSS: {peak:.0f} MiB (before uploads: {rss_before:.0f} MiB)")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
