"""The ui wing: a local web page for people who would rather not use a terminal (`allobrain-import ui`).

Choose a manifest, map its columns, see its problems, read the plan, run it (live progress, Stop as Ctrl-C),
read and download the results, rerun what is left; on the sandbox or the API. It serves 127.0.0.1 only,
behind a one-time token, a session cookie, a Host check and CSRF tokens, and calls the same library
functions as the CLI (prepare, plan, runner): no import logic of its own.
"""

from __future__ import annotations

from .server import UiServer

__all__ = ["UiServer"]
