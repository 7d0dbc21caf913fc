"""Benchmark: load + validate a large manifest whose files exist.

    python benchmarks/bench_validate.py --rows 100000 --distinct-files 1000
    python benchmarks/bench_validate.py --rows 1000000 --distinct-files 100000 --dir /tmp/bench-1m

Generates (once, in --dir or a temporary folder) `manifest.csv` and `audio/` with K distinct small WAV
files reused round-robin, then times `load_manifest` and `validate_manifest` in a fresh Python process
(so the generator's memory does not count) and prints seconds and peak RSS (`resource.getrusage`).
The manifest mixes timestamp formats (Unix seconds, milliseconds, ISO 8601 with and without offset,
25/11/2025 14:30), a phone column in several French notations, 200 agents and 2 campaigns.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CAMPAIGNS = ("665dc5c57275b74ce35c03ab", "665dc5c57275b74ce35c03ac")
SITES = ("Lyon", "Paris", "Lille", "Nantes", "Marseille")
START = 1_735_689_600  # 2025-01-01T00:00:00Z


def _wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(bytes([128]) * int(seconds * rate))
    return buf.getvalue()


def _timestamp(i: int) -> str:
    """Distinct per row (one call a minute), in five notations."""
    ts = START + i * 60
    kind = i % 5
    if kind == 0:
        return str(ts)
    if kind == 1:
        return str(ts * 1000)
    if kind == 2:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    if kind == 3:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))  # naive: read in manifest.timezone (UTC)
    return time.strftime("%d/%m/%Y %H:%M", time.gmtime(ts - ts % 60))


def _phone(i: int) -> str:
    digits = f"6{i % 100_000_000:08d}"
    kind = i % 3
    if kind == 0:
        return "0" + digits
    if kind == 1:
        return "+33" + digits
    return "0" + " ".join([digits[0]] + [digits[j : j + 2] for j in range(1, 9, 2)])


def generate(folder: Path, rows: int, distinct: int, seconds: float) -> Path:
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    wav = _wav_bytes(seconds)
    for k in range(distinct):
        path = audio / f"f{k:07d}.wav"
        if not path.exists():
            path.write_bytes(wav)
    manifest = folder / "manifest.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as fh:
        fh.write(
            "file_path,agent_email,agent_name,conversation_timestamp,campaign_id,client_phone,call_direction,site\n"
        )
        for i in range(rows):
            agent = i % 200
            fh.write(
                f"audio/f{i % distinct:07d}.wav,agent{agent}@example.fr,Agent {agent},{_timestamp(i)},"
                f"{CAMPAIGNS[i % 2]},{_phone(i)},{'inbound' if i % 2 else 'outbound'},{SITES[i % 5]}\n"
            )
    (folder / "params.json").write_text(json.dumps({"rows": rows, "distinct": distinct, "seconds": seconds}))
    return manifest


def measure(folder: Path, with_durations: bool) -> dict[str, float]:
    """Runs in a fresh process: time load + validate, report peak RSS."""
    import datetime as dt

    from importer.config import Config, ManifestConfig, MetadataConfig
    from importer.manifest import load_manifest, validate_manifest

    cfg = Config(
        manifest=ManifestConfig(timezone="UTC"),
        metadata=MetadataConfig(phone_columns=("client_phone",)),
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    loaded = load_manifest(folder / "manifest.csv", cfg)
    t1 = time.perf_counter()
    vm = validate_manifest(
        loaded, cfg, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC), with_durations=with_durations
    )
    t2 = time.perf_counter()
    return {
        "rows": vm.n_rows,
        "valid": vm.n_valid,
        "invalid": vm.n_invalid,
        "warnings": vm.n_warnings,
        "load_s": round(t1 - t0, 2),
        "validate_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "rss_before_mb": round(rss_before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "first_problem": str(vm.problems[0]) if vm.problems else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--distinct-files", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each generated WAV")
    parser.add_argument(
        "--dir", type=Path, help="where to generate (reused when it matches); default: a temp dir"
    )
    parser.add_argument("--durations", action="store_true", help="also read every file's duration")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.durations)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        folder = args.dir or Path(tmp)
        params = {"rows": args.rows, "distinct": args.distinct_files, "seconds": args.seconds}
        marker = folder / "params.json"
        t0 = time.perf_counter()
        if not (marker.exists() and json.loads(marker.read_text()) == params):
            generate(folder, args.rows, args.distinct_files, args.seconds)
            print(
                f"generated {args.rows:,} rows, {args.distinct_files:,} files in {time.perf_counter() - t0:.1f} s"
            )
        cmd = [sys.executable, os.path.abspath(__file__), "--measure", str(folder)]
        if args.durations:
            cmd.append("--durations")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"rows={result['rows']:,} distinct_files={args.distinct_files:,} valid={result['valid']:,} "
            f"invalid={result['invalid']:,} warnings={result['warnings']:,}\n"
            f"load {result['load_s']} s + validate {result['validate_s']} s = {result['total_s']} s; "
            f"peak RSS {result['peak_rss_mb']} MB (interpreter + imports: {result['rss_before_mb']} MB)"
        )
        if result["first_problem"]:
            print("first problem:", result["first_problem"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
