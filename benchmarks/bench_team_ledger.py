"""The PostgreSQL ledger against the SQLite one: per-row cost, a rerun that skips everything, throughput.

    python benchmarks/bench_team_ledger.py cost                 # claims, marks, lookups per row, both backends
    python benchmarks/bench_team_ledger.py rerun --rows 100000  # a rerun that skips every row, both backends
    python benchmarks/bench_team_ledger.py one-run              # 2,000 calls, 100 ms, 16 workers: PG vs SQLite
    python benchmarks/bench_team_ledger.py one-run --backend postgres --repeats 1   # one process per ledger
    python benchmarks/bench_team_ledger.py three-runs           # 3 runs of one manifest at once on one PG ledger
    python benchmarks/bench_team_ledger.py three-reference      # the same work as 3 unrelated SQLite runs
    python benchmarks/bench_team_ledger.py shared-limit         # 3 runs, shared max_per_second 30, sandbox at 30/s

PostgreSQL is a throwaway server started here as in the tests (tests/pgkit.py: initdb in a temporary folder,
loopback), with fsync ON unless --no-fsync (a database as deployed commits to disk). The sandbox runs in its
own process (benchkit.SandboxProcess); the tool runs as the real CLI. Targets (issue 13): one run at 100 ms
and 16 workers with the PG ledger within 5% of the SQLite figure; three runs at once >= 90% of 3 x 160
calls/s in aggregate when the sandbox allows it; with a shared max_per_second of 30, >= 95% of 30/s and no 429.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import benchkit as bk  # noqa: E402
from pgkit import PgCluster, server_bin  # noqa: E402

from importer.ledger import UPLOADED, CallKey, Ledger  # noqa: E402

API = "http://127.0.0.1:9"


def keys(n: int, offset: int = 0) -> list[CallKey]:
    return [CallKey(bk.CAMPAIGN, f"agent{i % 200}@example.com", bk.START_TS + i * 60, f"f{i:07d}.wav", 2044)
            for i in range(offset, offset + n)]


def open_backend(name: str, folder: Path, url: str, api: str = API):
    if name == "sqlite":
        return Ledger(folder / f"state-{time.monotonic_ns()}", api, register=True)
    from importer.ledger.postgres import PostgresLedger

    return PostgresLedger(url, api, register=True)


def cost(args: argparse.Namespace, pg: PgCluster, folder: Path) -> None:
    n = args.rows
    for name in ("sqlite", "postgres"):
        url = pg.create_database(f"cost_{name}_{time.monotonic_ns()}")
        with open_backend(name, folder, url) as led:
            ks = keys(n)
            t0 = time.perf_counter()
            for k in ks:
                led.claim(k)
            claim = time.perf_counter() - t0
            t0 = time.perf_counter()
            for k in ks:
                led.mark(k, UPLOADED, call_id="0123456789abcdef01234567", http_status=200)
            mark = time.perf_counter() - t0
            t0 = time.perf_counter()
            found = sum(1 for k in ks if led.get(k) is not None)
            look = time.perf_counter() - t0
            more = keys(n, offset=n)
            parts = [more[i::8] for i in range(8)]

            def work(part: list[CallKey], led=led) -> None:
                for k in part:
                    led.claim(k)
                    led.mark(k, UPLOADED, call_id="x", http_status=200)

            threads = [threading.Thread(target=work, args=(p,)) for p in parts]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            many = time.perf_counter() - t0
            t0 = time.perf_counter()
            recent = led.count_uploaded_since(time.time() - 86400)
            count = time.perf_counter() - t0
        print(f"{name:<8} {n:,} rows: claim {claim / n * 1e6:.0f} us, mark {mark / n * 1e6:.0f} us, "
              f"lookup {look / n * 1e6:.0f} us per row ({found:,} found); 8 threads claim+mark "
              f"{many / n * 1e6:.0f} us per row (ceiling {n / many:,.0f} rows/s); "
              f"count_uploaded_since over {recent:,} rows {count * 1e3:.1f} ms")


def rerun(args: argparse.Namespace, pg: PgCluster, folder: Path) -> None:
    from importer.config import load_config
    from importer.manifest import load_manifest, validate_manifest
    from importer.plan import call_key
    from importer.safety import check_base_url

    rows = args.rows
    manifest = bk.generate_manifest(folder / f"rerun{rows}", rows, distinct=1000, agents=200, seconds=0.25)
    for name in ("sqlite", "postgres"):
        url = pg.create_database(f"rerun_{name}_{time.monotonic_ns()}")
        state = folder / f"state-rerun-{name}"
        cfg = bk.write_config(folder, state, name=f"rerun-{name}.yaml")
        if name == "postgres":
            with open(cfg, "a") as fh:
                fh.write(f"ledger:\n  url: {url}\n")
        vm = validate_manifest(load_manifest(manifest, load_config(cfg)), load_config(cfg))
        t0 = time.perf_counter()
        with open_backend(name, folder, url, check_base_url(API)) if name == "postgres" else \
                Ledger(state, check_base_url(API)) as led:
            for call in vm.calls:
                led.mark(call_key(call), UPLOADED, call_id="0123456789abcdef01234567", http_status=200)
        filled = time.perf_counter() - t0
        del vm
        r = bk.time_v(bk.cli("run", manifest, "--config", cfg, "--api-url", API, "--quiet",
                             "--results", folder / f"rerun-{name}.csv"), env=pg_env(pg))
        said = [x.strip() for x in r.out.splitlines() if "already_uploaded" in x or "rows in" in x]
        print(f"{name:<8} rerun of {rows:,} rows all in the ledger (filled in {filled:.0f} s): exit {r.code}, "
              f"{r.wall:.2f} s wall, {r.user + r.sys:.2f} s CPU, peak RSS {r.max_rss_kb / 1024:.0f} MiB; "
              + " | ".join(said))


def pg_env(pg: PgCluster) -> dict[str, str]:
    return dict(bk.cli_env(), PGPASSWORD=pg.password)


def team_config(folder: Path, name: str, url: str | None, **upload: object) -> Path:
    cfg = bk.write_config(folder, folder / f"state-{name}", name=f"{name}.yaml", **upload)
    if url:
        with open(cfg, "a") as fh:
            fh.write(f"ledger:\n  url: {url}\n")
    return cfg


def one_run(args: argparse.Namespace, pg: PgCluster, folder: Path) -> None:
    ideal = args.workers * 1000 / 100
    manifest = bk.generate_manifest(folder / "one", args.calls, agents=20)
    figures: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    for rep in range(args.repeats):
        for name in backends if rep % 2 == 0 else backends[::-1]:
            url = pg.create_database(f"one_{name}_{time.monotonic_ns()}") if name == "postgres" else None
            cfg = team_config(folder, f"one-{name}-{rep}", url, workers=args.workers, max_per_second=0)
            summary = folder / f"one-{name}-{rep}.json"
            with bk.SandboxProcess(folder / "srv", latency_ms=100) as sb:
                m = bk.measure(bk.cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet",
                                      "--summary-json", summary), env=pg_env(pg))
            s = json.loads(summary.read_text())
            rate = s["counts"]["uploaded"] / s["upload_seconds"]
            figures[name].append(rate)
            print(f"  {name:<8} run {rep + 1}: exit {m.code}, {rate:.1f} calls/s ({rate / ideal:.1%} of {ideal:.0f}), "
                  f"client CPU {m.cpu:.2f} s, load {os.getloadavg()[0]:.1f}")
    if args.backend != "both":  # one backend per process: farm-bench pairs two such commands
        return
    med = {k: sorted(v)[len(v) // 2] for k, v in figures.items()}
    print(f"one run, 2 x {args.repeats} alternating: median SQLite {med['sqlite']:.1f}, PostgreSQL "
          f"{med['postgres']:.1f} calls/s: PG = {med['postgres'] / med['sqlite']:.1%} of SQLite (target >= 95%)")


def three_runs(args: argparse.Namespace, pg: PgCluster, folder: Path, *, limit: float = 0,
               reference: bool = False) -> None:
    """Three runs of one manifest on one PG ledger; with `reference`, three runs of three thirds of it, each
    with its own SQLite ledger (no sharing at all): what this machine allows three clients."""
    calls = args.calls if not limit else args.limited_calls
    manifest = bk.generate_manifest(folder / f"three{calls}", calls, agents=20)
    url = None if reference else pg.create_database(f"three_{time.monotonic_ns()}")
    manifests = [manifest] * 3
    if reference:
        header, *lines = manifest.read_text(encoding="utf-8").splitlines()
        manifests = []
        for i in range(3):
            part = manifest.with_name(f"third{i}.csv")
            part.write_text("\n".join([header, *lines[i::3]]) + "\n", encoding="utf-8")
            manifests.append(part)
    with bk.SandboxProcess(folder / "srv3", latency_ms=100, rate_limit=limit) as sb:
        procs = []
        for i in range(3):
            cfg = team_config(folder, f"three-{i}-{time.monotonic_ns()}", url, workers=16, max_per_second=limit)
            procs.append(subprocess.Popen(
                bk.cli("run", manifests[i], "--config", cfg, "--api-url", sb.url, "--quiet",
                       "--summary-json", folder / f"three-{i}.json", "--results", folder / f"three-{i}.csv",
                       *(["-v", "--log-file", folder / f"three-{i}.log"] if args.details else [])),
                env=pg_env(pg), cwd=bk.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        codes = [p.wait(1800) for p in procs]
    stats = sb.stats
    window = float(stats["calls_window_seconds"])  # type: ignore[arg-type]
    stored = int(stats["calls_stored"])  # type: ignore[arg-type]
    summaries = [json.loads((folder / f"three-{i}.json").read_text()) for i in range(3)]
    mine = [x["counts"].get("uploaded", 0) for x in summaries]
    if args.details:
        for x in summaries:
            print("   ", {k: v for k, v in x["counts"].items() if v}, f"upload phase {x['upload_seconds']:.1f} s,"
                  f" whole run {x['elapsed_seconds']:.1f} s")
        print("    sandbox answers:", stats["by_status"])
        for i, x in enumerate(summaries):
            if not x["counts"].get("uploaded"):
                lines = (folder / f"three-{i}.log").read_text().splitlines()
                print(f"    run {i} log ({len(lines)} lines):", *lines[:12], *lines[-5:], sep="\n      ")
    rate = stored / window if window else 0.0
    target = 0.95 * limit if limit else 0.9 * 3 * 160
    what = "three runs of a third each, own SQLite ledgers (reference)" if reference else \
        f"three runs of one {calls:,}-row manifest on one PG ledger"
    print(f"{what}, 16 workers each, 100 ms"
          f"{f', shared max_per_second {limit:g}, sandbox limited to {limit:g}/s' if limit else ''}: exit {codes}, "
          f"uploaded {mine} = {stored:,} calls stored in {window:.1f} s = {rate:.1f} calls/s aggregate "
          f"(target >= {target:.0f}: {'met' if rate >= target else 'NOT met'}); HTTP 429: {stats['http_429']}; "
          f"sandbox CPU {stats['cpu_seconds']} s; load {os.getloadavg()[0]:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["cost", "rerun", "one-run", "three-runs", "three-reference", "shared-limit",
                                     "all"])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--limited-calls", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", choices=["both", "sqlite", "postgres"], default="both",
                    help="one-run: only this ledger (to pair two processes from outside)")
    ap.add_argument("--workers", type=int, default=16, help="one-run: upload workers")
    ap.add_argument("--no-fsync", dest="fsync", action="store_false")
    ap.add_argument("--details", action="store_true", help="each run's counts and the sandbox's answers")
    args = ap.parse_args()
    bk.print_machine()
    bindir = server_bin()
    if bindir is None:
        print("PostgreSQL server binaries not found: apt-get install -y postgresql")
        return 2
    pg = PgCluster(bindir, fsync=args.fsync).start()
    print(f"PostgreSQL {bindir.parent.name}, fsync {'on' if args.fsync else 'off'}")
    os.environ["PGPASSWORD"] = pg.password
    try:
        with tempfile.TemporaryDirectory(prefix="bench-team-") as tmp:
            folder = Path(tmp)
            steps = {"cost": cost, "rerun": rerun, "one-run": one_run, "three-runs": three_runs,
                     "three-reference": lambda a, p, f: three_runs(a, p, f, reference=True),
                     "shared-limit": lambda a, p, f: three_runs(a, p, f, limit=30.0)}
            for name, step in steps.items():
                if args.what in (name, "all"):
                    step(args, pg, folder)
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
