"""Uploads over an emulated link (../shared/netlab: two network namespaces joined by a user-space
delay/rate/loss link), measured against the link's own capacity (iperf3, same session). Needs root.

    python benchmarks/bench_wan.py                                   # lossy WAN, default settings, 200 x 2 MB, 3 runs
    python benchmarks/bench_wan.py --workers 8 --runs 1              # today's old default, for comparison
    python benchmarks/bench_wan.py --link 0.5 1000 0 1000            # clean LAN: 1 ms round trip, 1 Gbit/s
    python benchmarks/bench_wan.py --fault loss2                     # 2% loss for the whole run
    python benchmarks/bench_wan.py --fault outage10 --fault-at 8     # 100% loss for 10 s, 8 s into the upload
    python benchmarks/bench_wan.py --fault outage60 --fault-at 8     # ... for 60 s
    python benchmarks/bench_wan.py --fault restart --fault-at 8      # the sandbox killed (-9), restarted 2 s later

--link is DELAY_MS (one way) RATE_MBIT LOSS LIMIT, netlab's order; the default 20 100 0.005 1000 is an office
uplink: 40 ms round trip, 100 Mbit/s, 0.5% loss. The client runs under `netlab.sh cubic` (CUBIC on its
sockets, as most office machines; this kernel's BBR hides loss). Capacity: iperf3 with 32 CUBIC streams for 10 s
through the same link, before the runs. Every run: a fresh sandbox (in nlsrv, bound to 127.0.0.2) with its own
data dir and a fresh ledger; MB/s = uploaded bytes / upload phase, from --summary-json. After the run the
sandbox's stored files are counted by name (they survive a restart on disk): duplicates = copies beyond one;
an `unknown` row whose file the server does not hold is a *false* unknown.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

NETLAB = Path(os.environ.get("NETLAB") or next(
    (p for p in (bk.ROOT.parent / "shared/netlab/netlab.sh", bk.ROOT.parent.parent / "shared/netlab/netlab.sh")
     if p.exists()), "netlab.sh"))
HOST = "127.0.0.2"


def sh(*cmd: object, check: bool = True, capture: bool = True) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=capture, text=True, check=False)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {done.returncode}\n{done.stderr}")
    return done.stdout if capture else ""


def link_set(link: list[str]) -> None:
    sh(NETLAB, "set", *link)


def iperf_capacity(port: int, streams: int = 32, seconds: int = 10) -> float:
    """Mbit/s received through the link by iperf3 with `streams` CUBIC streams."""
    server = subprocess.Popen(["ip", "netns", "exec", "nlsrv", "iperf3", "-s", "-1", "-B", HOST, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        out = sh("ip", "netns", "exec", "nlcli", NETLAB, "cubic", "iperf3", "-c", HOST, "-p", port, "-P", streams,
                 "-t", seconds, "-J")
    finally:
        server.wait(30)
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6


class Server:
    """The sandbox in nlsrv, as the `sandbox` command; kill() and start() again on the same data dir."""

    def __init__(self, port: int, data_dir: Path, extra: list[str]) -> None:
        self.port, self.data_dir, self.extra = port, data_dir, extra
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = dict(bk.cli_env())
        self.proc = subprocess.Popen(["ip", "netns", "exec", "nlsrv", *bk.cli("sandbox", "--host", HOST, "--port",
                                      self.port, "--data-dir", self.data_dir, *self.extra)],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "serving at" in line:
                break
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep its pipe drained

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def fault(kind: str, at: float, link: list[str], server: Server, log: list[str]) -> None:
    time.sleep(at)
    if kind.startswith("outage"):
        seconds = float(kind.removeprefix("outage"))
        link_set([link[0], link[1], "1.0", link[3]])
        log.append(f"{time.strftime('%H:%M:%S')} link down (100% loss) for {seconds:g} s")
        time.sleep(seconds)
        link_set(link)
        log.append(f"{time.strftime('%H:%M:%S')} link back")
    elif kind == "restart":
        server.kill()
        log.append(f"{time.strftime('%H:%M:%S')} sandbox killed (-9)")
        time.sleep(2)
        server.start()
        log.append(f"{time.strftime('%H:%M:%S')} sandbox restarted on the same data dir")


def one_run(args: argparse.Namespace, manifest: Path, folder: Path, port: int) -> dict[str, object]:
    data = folder / "srv"
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(folder / "state", ignore_errors=True)
    for old in (folder / "results").glob("*"):
        old.unlink()
    upload = {"workers": args.workers, **({"max_per_second": args.max_per_second} if args.max_per_second else {})}
    cfg = bk.write_config(folder, folder / "state", **upload)
    server = Server(port, data, args.sandbox_arg)
    server.start()
    events: list[str] = []
    link = args.link
    if args.fault == "loss2":
        link = [link[0], link[1], "0.02", link[3]]
        link_set(link)
    summary_path = folder / "summary.json"
    cmd = ["ip", "netns", "exec", "nlcli", str(NETLAB), "cubic",
           *bk.cli("run", manifest, "--config", cfg, "--api-url", f"http://{HOST}:{port}", "--quiet",
                   "--summary-json", summary_path, "--log-file", folder / "run.log")]
    faulty = None
    if args.fault and args.fault != "loss2":
        # the upload phase starts after validation and invites, about 1-2 s in
        faulty = threading.Thread(target=fault, args=(args.fault, args.fault_at, args.link, server, events))
        faulty.start()
    run = bk.measure(cmd, timeout=1800)
    if faulty:
        faulty.join()
    server.stop()
    if args.fault == "loss2":
        link_set(args.link)
    summary = json.loads(summary_path.read_text())
    results = next((folder / "results").glob("*.csv"))
    with open(results, encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.DictReader(fh))
    held = collections.Counter(p.name.split("-", 1)[1] for p in (data / "calls").iterdir())
    unknown = [ln for ln in lines if ln["import_status"] == "unknown"]
    mbps = summary["uploaded_bytes"] / max(summary["upload_seconds"], 1e-9) / 1e6
    log = (folder / "run.log").read_text()
    return {
        "exit": run.code, "MB/s": round(mbps, 2), "upload_s": summary["upload_seconds"],
        "counts": {k: v for k, v in summary["counts"].items() if v},
        "duplicates": sum(n - 1 for n in held.values() if n > 1),
        "unknown_not_on_server": sum(1 for ln in unknown if held[Path(ln["file_path"]).name] == 0),
        "concurrency": summary.get("concurrency"),
        "http_429": log.count("-> HTTP 429"),
        "agents": summary["agents"], "peak_rss_mb": round(run.max_rss_mb), "events": events,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--link", nargs=4, default=["20", "100", "0.005", "1000"], metavar=("DELAY", "MBIT", "LOSS", "LIMIT"))
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--mb", type=float, default=2.0, help="size of each call")
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--max-per-second", type=float, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fault", choices=["loss2", "outage10", "outage60", "restart"])
    ap.add_argument("--fault-at", type=float, default=8.0, help="seconds after the command starts")
    ap.add_argument("--sandbox-arg", action="append", default=[], help="extra flag for the sandbox (repeatable)")
    ap.add_argument("--no-iperf", action="store_true")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-wan"))
    ap.add_argument("--keep-link", action="store_true", help="leave the link up at the end")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    bk.print_machine()
    if sh("ip", "netns", "list").strip():
        print(f"namespaces already exist ({sh('ip', 'netns', 'list').split()}): reusing the link as it is")
        link_set(args.link)
    else:
        print(sh(NETLAB, "up", *args.link).strip())
    try:
        port = 18000 + os.getpid() % 1000
        if not args.no_iperf:
            cap = iperf_capacity(port + 1)
            print(f"link {' '.join(args.link)} (delay_ms rate_mbit loss limit): iperf3 32 CUBIC streams "
                  f"{cap:.1f} Mbit/s = {cap / 8:.2f} MB/s")
        else:
            cap = 0.0
        seconds = args.mb * 1e6 / 8000  # 8-bit mono 8 kHz WAV: 8,000 bytes a second
        manifest = bk.generate_manifest(args.dir, args.calls, agents=20, seconds=seconds)
        (args.dir / "results").mkdir(exist_ok=True)
        rates = []
        for i in range(args.runs):
            r = one_run(args, manifest, args.dir, port)
            rates.append(r["MB/s"])
            share = f" = {r['MB/s'] * 8 / cap:.0%} of iperf3" if cap else ""
            print(f"run {i + 1}: {json.dumps(r)}{share}", flush=True)
        if cap:
            med = statistics.median(rates)
            print(f"median {med:.2f} MB/s = {med * 8 / cap:.1%} of the link (iperf3 {cap / 8:.2f} MB/s); "
                  f"range {min(rates):.2f}-{max(rates):.2f}; load average {bk.machine()['loadavg']}")
    finally:
        if not args.keep_link:
            sh(NETLAB, "down", check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
