"""`allobrain-import ui`: the local web page, served on 127.0.0.1 until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .common import add_config_flag, err, out
from .signals import wait_for_stop

if TYPE_CHECKING:
    from ..ui import UiServer


def register(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("ui", help="a local web page: choose a spreadsheet, see its problems, run, get the results")
    u.add_argument("--port", type=int, default=8421, help="port on 127.0.0.1 (default 8421; 0 = any free port)")
    u.add_argument("--folder", type=Path, default=Path("."),
                   help="folder whose spreadsheets the page offers (default: the current folder)")
    u.add_argument("--no-browser", action="store_true", help="print the link without opening a browser")
    add_config_flag(u)
    u.set_defaults(func=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..ui import UiServer

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be from 1 to 65535 (or 0 for any free port), got {args.port}")
    if not args.folder.is_dir():
        raise UsageError(f"--folder: not a folder: {args.folder}")
    if args.config is not None:
        load_config(args.config)  # a bad --config is said here, not on the first page
    # The runs' request log goes nowhere: the page shows what happened, and nothing can leak the key.
    logger = logging.getLogger("importer")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
    try:
        server = UiServer(folder=args.folder, port=args.port, config=args.config, on_error=err).start()
    except OSError as exc:
        raise UsageError(f"{exc.strerror or exc}; choose another port with --port (0 = any free port)") from None
    out(f"allobrain-import ui: open {server.url}")
    out(f"folder: {Path(args.folder).resolve()}   (the link works once; Ctrl-C stops the page)")
    if not args.no_browser:
        webbrowser.open(server.url)
    return _serve(server)


def _serve(server: UiServer) -> int:
    wait_for_stop()
    if server.running_jobs():
        err("stopping: in-flight uploads finish, nothing new starts (Ctrl-C again to quit at once)")
        signal.signal(signal.SIGINT, lambda s, f: os._exit(130))
    server.stop()
    out("page stopped")
    return 0
