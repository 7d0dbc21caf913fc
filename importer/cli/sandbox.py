"""`allobrain-import sandbox`: serve the stand-in API on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType

from ..errors import UsageError
from .common import out


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sandbox", help="serve a stand-in AlloBrain QM API on loopback")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", help="the key clients must send (default: a fixed sandbox key, printed at start)")
    s.add_argument("--campaign", action="append", default=[], help="accept only these campaign ids (repeatable)")
    s.add_argument("--latency-ms", type=int, default=0, help="added to every request")
    s.add_argument("--rate-limit", type=float, default=0, help="requests/s before answering 429 with Retry-After")
    s.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500 or 503")
    s.add_argument("--drop-rate", type=float, default=0.0, help="share of uploads stored, then the connection dropped")
    s.add_argument("--max-upload-mb", type=float, default=2048, help="larger uploads get 413")
    s.add_argument("--data-dir", type=Path, help="where received files are kept (default: a temporary folder)")
    s.add_argument("--seed", type=int, help="seed for the random faults")
    s.set_defaults(func=cmd_sandbox)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from ..sandbox import SANDBOX_API_KEY, Sandbox

    try:
        sb = Sandbox(host=args.host, port=args.port, api_key=args.api_key or SANDBOX_API_KEY, campaigns=args.campaign or None,
                     latency_ms=args.latency_ms, rate_limit=args.rate_limit, fail_rate=args.fail_rate,
                     drop_rate=args.drop_rate, max_upload_mb=args.max_upload_mb, data_dir=args.data_dir,
                     seed=args.seed)
        sb.start()
    except (ValueError, OSError) as exc:  # a bad setting, or the port is taken
        raise UsageError(f"sandbox: {exc}") from None
    out(f"sandbox API serving at {sb.url}")
    out(f"API key: {sb.api_key}   (export ALLOBRAIN_API_KEY={sb.api_key})")
    out(f"inspect: {sb.url}/_sandbox/agents  {sb.url}/_sandbox/calls   (Ctrl-C to stop)")
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # `kill` stops it as cleanly as Ctrl-C
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    out("sandbox stopped")
    return 0
