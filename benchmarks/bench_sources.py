"""Recordings in S3: validation by listing, client memory while streaming, throughput S3 -> API.

The S3 store is moto's standalone server in a process of its own (the counting layer of tests/s3kit.py in
front of it counts the requests it receives by kind), the API the sandbox in another: only the client is
measured. Run by hand (results in BENCHMARKS.md):

    python benchmarks/bench_sources.py validate --rows 10000
    python benchmarks/bench_sources.py memory --size-mb 1024 --objects 1 --workers 1
    python benchmarks/bench_sources.py memory --size-mb 256 --objects 8 --workers 8
    python benchmarks/bench_sources.py throughput --calls 2000 --workers 16 --latency-ms 100 --rounds 5
    python benchmarks/bench_sources.py validate --rows 10000 --store fast    # the client, not moto
    python benchmarks/bench_sources.py setup --rows 10000 --store fast       # servers up; time the commands it prints

moto keeps each object it serves in memory (the whole value, per GET), so the 8-worker memory case uses
smaller objects than 1 GiB to keep the shared machine's RAM; the client's memory does not depend on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchkit as bk

BUCKET = "bench-recordings"
STORE_HELP = ("moto: moto's server (what the tests use; ~100 requests/s here, so it measures moto); fast: the "
              "benchmark-only responder of s3_responder.py (keep-alive, from memory), so the client is measured")
TESTS = bk.ROOT / "tests"


# --- the S3 server process ----------------------------------------------------------------------------


def serve_fast(args: argparse.Namespace) -> None:
    """The benchmark-only responder (s3_responder.py): the same objects, served fast enough that the client
    is what is measured."""
    import asyncio

    import s3_responder

    store = s3_responder.Store()
    store.buckets[BUCKET] = {}
    if args.populate:
        for path in sorted((Path(args.populate) / "audio").iterdir()):
            store.put(BUCKET, f"audio/{path.name}", path.read_bytes(), path.stat().st_mtime)

    async def main() -> None:
        server = await s3_responder.serve(store)
        host, port = server.sockets[0].getsockname()[:2]
        done = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
        Path(args.url_file).write_text(f"http://{host}:{port}")
        await done.wait()
        server.close()

    asyncio.run(main())
    Path(args.stats).write_text(json.dumps(dict(store.counts)))


def serve(args: argparse.Namespace) -> None:
    if args.store == "fast":
        serve_fast(args)
        return
    sys.path.insert(0, str(TESTS))
    import logging

    from s3kit import CountingS3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = CountingS3().start()
    server.client().create_bucket(Bucket=BUCKET)
    if args.populate:
        folder = Path(args.populate)
        files = sorted((folder / "audio").iterdir())
        for path in files:
            server.put_many(BUCKET, [f"audio/{path.name}"], path.read_bytes())
    if args.big_mb:
        body = b"RIFF" + (args.big_mb * 2**20 - 8).to_bytes(4, "little") + b"WAVE"
        body += os.urandom(2**20 - len(body)) + os.urandom(2**20) * (args.big_mb - 1)
        server.put_many(BUCKET, [f"big/b{i:02d}.wav" for i in range(args.big_count)], body)
        del body
    server.reset_counts()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    Path(args.url_file).write_text(server.url)
    done.wait()
    Path(args.stats).write_text(json.dumps(dict(server.counts)))
    server.stop()


class S3Process:
    def __init__(self, folder: Path, *, populate: Path | None = None, big_mb: int = 0, big_count: int = 0,
                 store: str = "moto"):
        self.folder = folder
        self.url_file = folder / "s3-url"
        self.stats_file = folder / "s3-stats.json"
        self.counts: dict[str, int] = {}
        extra = ["--populate", str(populate)] if populate else []
        extra += ["--big-mb", str(big_mb), "--big-count", str(big_count)]
        self.cmd = [sys.executable, __file__, "serve-s3", "--url-file", str(self.url_file),
                    "--stats", str(self.stats_file), "--store", store, *extra]

    def __enter__(self) -> S3Process:
        self.url_file.unlink(missing_ok=True)
        self._log = open(self.folder / "s3.log", "w+b")  # noqa: SIM115
        self._proc = subprocess.Popen(self.cmd, env=bk.cli_env(), stdout=self._log, stderr=self._log)
        while not self.url_file.exists():
            if self._proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(self._log.read().decode(errors="replace")[-2000:])
            time.sleep(0.1)
        self.url = self.url_file.read_text()
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.send_signal(signal.SIGTERM)
        self._proc.wait(120)
        if self.stats_file.exists():
            self.counts = json.loads(self.stats_file.read_text())


def aws_env() -> dict[str, str]:
    return bk.cli_env() | {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def s3_config(folder: Path, url: str, name: str = "s3-config.yaml", **upload: object) -> Path:
    path = bk.write_config(folder, folder / "state", name=name, **upload)
    path.write_text(path.read_text() + f"files:\n  root: s3://{BUCKET}/\n  s3:\n    endpoint_url: {url}\n")
    return path


# --- benchmarks ---------------------------------------------------------------------------------------


def bench_validate(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    manifest = bk.generate_manifest(folder, args.rows, agents=20, seconds=0.5)
    rows = args.rows
    for label, cmd in (
        ("validation as `run` does it (sniff only)", [sys.executable, __file__, "validate-once"]),
        ("`allobrain-import validate` (sniff + durations)", bk.cli("validate")),
    ):
        if args.only and args.only not in label:
            continue
        with S3Process(folder, populate=folder, store=args.store) as s3:
            cfg = s3_config(folder, s3.url)
            extra = [str(manifest), str(cfg)] if cmd[-1] == "validate-once" else [str(manifest), "--config", str(cfg)]
            run = bk.measure(cmd + extra, env=aws_env())
        ok = run.code in (0,) and ("0 invalid" in run.out or run.out.strip() == f"{rows} 0")
        counts = s3.counts
        heads = counts.get("HEAD", 0)
        print(f"{label}: {rows:,} s3:// rows in {run.wall:.1f} s wall, client CPU {run.cpu:.1f} s, "
              f"peak RSS {run.max_rss_mb:.0f} MiB, {'all valid' if ok else 'PROBLEM: ' + run.out[-300:] + run.err[-300:]}")
        print(f"  requests by kind: {counts}; HEAD per 100 objects: {100 * heads / rows:.2f} (target < 1); "
              f"target < 20 s: {'met' if run.wall < 20 else 'NOT met'}")
        per_object = {k: v / rows for k, v in counts.items()}
        lists = math.ceil(1_000_000 / 1000)
        print(f"  1,000,000 rows (one folder per 1,000 keys or fewer): ~{lists:,} LIST, "
              f"{per_object.get('GET_RANGE', 0) * 1e6:,.0f} ranged GET, {per_object.get('HEAD', 0) * 1e6:,.0f} HEAD; "
              f"at this rate ~{run.wall * 1e6 / rows / 60:.0f} min")
    return 0


def bench_memory(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-s3-memory-") as tmp:
        folder = Path(tmp)
        manifest = folder / "big.csv"
        lines = ["file_path,agent_email,conversation_timestamp,campaign_id"]
        lines += [f"big/b{i:02d}.wav,bench@example.com,{1_750_000_000 + i},{bk.CAMPAIGN}" for i in range(args.objects)]
        manifest.write_text("\n".join(lines) + "\n")
        with S3Process(folder, big_mb=args.size_mb, big_count=args.objects) as s3, \
                bk.SandboxProcess(folder / "srv") as sb:
            cfg = s3_config(folder, s3.url, workers=args.workers, max_file_mb=args.size_mb + 1, timeout_seconds=600)
            run = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet"), env=aws_env())
        sent = args.objects * args.size_mb
        print(f"{args.objects} x {args.size_mb} MiB from S3, {args.workers} workers: exit {run.code}, {run.wall:.1f} s "
              f"({sent / run.wall:.0f} MiB/s), client peak RSS {run.max_rss_mb:.0f} MiB "
              f"(target < 150 MB: {'met' if run.max_rss_mb < 143 else 'NOT met'}); store saw {s3.counts}")
        if run.code:
            print(run.out[-1000:], run.err[-1000:])
    return 0


def bench_throughput(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    manifest = bk.generate_manifest(folder, args.calls, agents=20, seconds=0.5)
    rates: dict[str, list[float]] = {}
    with S3Process(folder, populate=folder, store=args.store) as s3:
        for _round in range(args.rounds):
            for source in ("local disk", "S3"):  # interleaved: the machine's load drifts
                with bk.SandboxProcess(folder / "srv", latency_ms=args.latency_ms) as sb:
                    state = folder / f"state-{time.monotonic_ns()}"
                    if source == "S3":
                        cfg = s3_config(folder, s3.url, name="t.yaml", workers=args.workers)
                    else:
                        cfg = bk.write_config(folder, state, name="t.yaml", workers=args.workers)
                    cfg.write_text(cfg.read_text().replace(str(folder / "state"), str(state)))
                    summary = folder / "summary.json"
                    run = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                            "--summary-json", summary), env=aws_env())
                data = json.loads(summary.read_text())
                rate = data["counts"]["uploaded"] / data["upload_seconds"]
                rates.setdefault(source, []).append(rate)
                print(f"{source:10s}: exit {run.code}, {data['counts']['uploaded']}/{args.calls} uploaded, upload "
                      f"phase {data['upload_seconds']:.2f} s -> {rate:.1f} calls/s; client CPU {run.cpu:.1f} s, "
                      f"RSS {run.max_rss_mb:.0f} MiB", flush=True)
    ratios = sorted(remote / local for remote, local in zip(rates["S3"], rates["local disk"], strict=True))
    print(f"S3 / local disk, round by round: min {ratios[0]:.1%}, median {statistics.median(ratios):.1%}, max "
          f"{ratios[-1]:.1%} (target >= 90%); median rates: S3 {statistics.median(rates['S3']):.1f}, local "
          f"{statistics.median(rates['local disk']):.1f} calls/s; ideal {args.workers * 1000 / args.latency_ms:.0f}; "
          f"store saw {s3.counts}")
    return 0


def setup(args: argparse.Namespace) -> int:
    """The store and the sandbox stay up, the files are written, the commands are printed: time them with an
    outside tool (`/usr/bin/time -v`, hyperfine), as many times as wanted. SIGTERM or Ctrl-C ends it."""
    folder = Path(args.dir)
    manifest = bk.generate_manifest(folder, args.rows, agents=20, seconds=0.5)
    with S3Process(folder, populate=folder, store=args.store) as s3, \
            bk.SandboxProcess(folder / "srv", latency_ms=args.latency_ms) as sb:
        s3_cfg = s3_config(folder, s3.url, name="setup-s3.yaml", workers=args.workers)
        s3_cfg.write_text(s3_cfg.read_text().replace(str(folder / "state"), str(folder / "state-s3")))
        local_cfg = bk.write_config(folder, folder / "state-local", name="setup-local.yaml", workers=args.workers)
        env = folder / "env.sh"
        wanted = {k: v for k, v in aws_env().items() if k.startswith(("AWS_", "ALLOBRAIN_", "PYTHONPATH"))}
        env.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in wanted.items()))
        py = sys.executable
        print(f"store ({args.store}) {s3.url}, sandbox {sb.url} ({args.latency_ms} ms); first: . {env}")
        print(f"validate as run does: {py} {__file__} validate-once {manifest} {s3_cfg}")
        print(f"validate (durations): {py} -m importer validate {manifest} --config {s3_cfg}")
        for name, cfg in (("S3", s3_cfg), ("local", local_cfg)):
            state = folder / f"state-{name.lower()}"
            print(f"run from {name}: sh -c 'rm -rf {state} && exec {py} -m importer run {manifest} --config {cfg} "
                  f"--api-url {sb.url} --allow-same-recording'", flush=True)  # as bk.cli: each row its own call
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    print(f"store saw {s3.counts}")
    return 0


def validate_once(args: argparse.Namespace) -> int:
    """Validation as `run` does it (listing and sniff, no durations), nothing else: the timed command."""
    from importer.config import load_config
    from importer.manifest import load_manifest, validate_manifest

    cfg = load_config(args.config)
    vm = validate_manifest(load_manifest(args.manifest, cfg), cfg)
    print(vm.n_valid, vm.n_errors)
    return 0 if vm.n_errors == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve-s3")
    s.add_argument("--url-file", required=True)
    s.add_argument("--stats", required=True)
    s.add_argument("--populate")
    s.add_argument("--big-mb", type=int, default=0)
    s.add_argument("--big-count", type=int, default=0)
    s.add_argument("--store", choices=("moto", "fast"), default="moto")
    v = sub.add_parser("validate")
    v.add_argument("--rows", type=int, default=10_000)
    v.add_argument("--dir", default="/tmp/bench-sources-validate")
    v.add_argument("--only", choices=("sniff", "durations"), help="one of the two validations, not both")
    v.add_argument("--store", choices=("moto", "fast"), default="moto", help=STORE_HELP)
    m = sub.add_parser("memory")
    m.add_argument("--size-mb", type=int, default=1024)
    m.add_argument("--objects", type=int, default=1)
    m.add_argument("--workers", type=int, default=1)
    t = sub.add_parser("throughput")
    t.add_argument("--calls", type=int, default=2000)
    t.add_argument("--workers", type=int, default=16)
    t.add_argument("--latency-ms", type=int, default=100)
    t.add_argument("--dir", default="/tmp/bench-sources-throughput")
    t.add_argument("--store", choices=("moto", "fast"), default="moto", help=STORE_HELP)
    t.add_argument("--rounds", type=int, default=2, help="local disk then S3, this many times")
    u = sub.add_parser("setup", help=setup.__doc__)
    u.add_argument("--rows", type=int, default=10_000)
    u.add_argument("--workers", type=int, default=16)
    u.add_argument("--latency-ms", type=int, default=100)
    u.add_argument("--store", choices=("moto", "fast"), default="fast", help=STORE_HELP)
    u.add_argument("--dir", default="/tmp/bench-sources-setup")
    o = sub.add_parser("validate-once", help=validate_once.__doc__)
    o.add_argument("manifest")
    o.add_argument("config")
    args = ap.parse_args()
    if args.what == "serve-s3":
        serve(args)
        return 0
    if args.what == "validate-once":
        return validate_once(args)
    bk.print_machine()
    return {"validate": bench_validate, "memory": bench_memory, "throughput": bench_throughput,
            "setup": setup}[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
