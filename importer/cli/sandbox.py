"""`allobrain-import sandbox`: serve the stand-in API on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import math
import signal
import threading
from pathlib import Path
from types import FrameType

from ..errors import UsageError
from .common import out


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sandbox", help="serve a stand-in AlloBrain QM API on loopback",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", help="the key clients must send (default: a fixed sandbox key, printed at start)")
    s.add_argument("--campaign", action="append", default=[], help="accept only these campaign ids (repeatable)")
    s.add_argument("--latency-ms", type=int, default=0, help="added to every request")
    s.add_argument("--rate-limit", type=float, default=0, help="requests/s before answering 429 with Retry-After")
    s.add_argument("--max-concurrency", type=int, default=0, metavar="K",
                   help="answer 429 to API requests beyond K in flight at once (0 = no limit)")
    s.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500 or 503")
    s.add_argument("--drop-rate", type=float, default=0.0, help="share of uploads stored, then the connection dropped")
    s.add_argument("--daily-quota", type=int, default=0,
                   help="after N accepted uploads in 24 h, answer 429 with Retry-After = seconds until a slot frees")
    s.add_argument("--max-upload-mb", type=float, default=2048, help="larger uploads get 413")
    s.add_argument("--data-dir", type=Path, help="where received files are kept (default: a temporary folder)")
    s.add_argument("--seed", type=int, help="seed for the random faults")
    s.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this PEM certificate (chain); needs --tls-key")
    s.add_argument("--tls-key", type=Path, metavar="FILE", help="the PEM private key of --tls-cert")
    s.set_defaults(func=cmd_sandbox)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from ..safety import is_loopback_host
    from ..sandbox import SANDBOX_API_KEY, Sandbox

    if not 1 <= args.port <= 65535:
        raise UsageError(f"sandbox: --port must be from 1 to 65535 (got {args.port})")
    if args.api_key is not None and not args.api_key.strip():
        raise UsageError("sandbox: --api-key is empty; give a key, or leave the flag out for the sandbox key")
    if not is_loopback_host(args.host) and args.api_key is None:
        raise UsageError(f"sandbox: --host {args.host} would serve the public sandbox key beyond this machine; "
                         "give your own --api-key (or keep the default host 127.0.0.1)")
    for flag, value in (("--rate-limit", args.rate_limit), ("--fail-rate", args.fail_rate),
                        ("--drop-rate", args.drop_rate), ("--max-upload-mb", args.max_upload_mb)):
        if not math.isfinite(value):
            raise UsageError(f"sandbox: {flag} must be a number (got {value})")
    if args.max_concurrency < 0:
        raise UsageError(f"sandbox: --max-concurrency must be 0 (none) or a positive whole number "
                         f"(got {args.max_concurrency})")
    if args.daily_quota < 0:
        raise UsageError(f"sandbox: --daily-quota must be 0 (none) or a positive whole number (got {args.daily_quota})")

    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Before anything exists: a SIGTERM right after start still stops cleanly (and removes the temp folder).
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            sb = Sandbox(host=args.host, port=args.port, api_key=args.api_key or SANDBOX_API_KEY,
                         campaigns=args.campaign or None, latency_ms=args.latency_ms, rate_limit=args.rate_limit,
                         fail_rate=args.fail_rate, drop_rate=args.drop_rate, max_upload_mb=args.max_upload_mb,
                         daily_quota=args.daily_quota, data_dir=args.data_dir, seed=args.seed,
                         tls_cert=args.tls_cert, tls_key=args.tls_key,
                         max_concurrency=args.max_concurrency)
            sb.start()
        except (ValueError, OSError, OverflowError) as exc:  # a bad setting, or the port is taken
            raise UsageError(f"sandbox: {exc}") from None
        try:
            out(f"sandbox API serving at {sb.url}")
            out(f"API key: {sb.api_key}   (export ALLOBRAIN_API_KEY={sb.api_key})")
            out(f"inspect: {sb.url}/_sandbox/agents  {sb.url}/_sandbox/calls   (Ctrl-C to stop)")
            while not stop.wait(0.5):
                pass
        finally:
            sb.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out("sandbox stopped")
    return 0
