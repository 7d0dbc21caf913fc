"""The sandbox wing: a real HTTP server that stands in for the AlloBrain API on loopback, with fault injection.

`run --sandbox`, the `sandbox` command and the tests use it; nothing in the import path depends on it.
"""

from __future__ import annotations

from .server import SANDBOX_API_KEY, Sandbox

__all__ = ["SANDBOX_API_KEY", "Sandbox"]
