"""allobrain-import: bulk-import call recordings into AlloBrain QM, safely rerunnable.

The library surface; the `allobrain-import` command (importer.cli) is built on it.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ApiClient",
    "Config",
    "load_config",
    "load_manifest",
    "validate_manifest",
    "run_import",
    "Sandbox",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy, so `python -m importer --help` stays quick
    if name == "ApiClient":
        from .client import ApiClient

        return ApiClient
    if name in ("Config", "load_config"):
        from . import config

        return getattr(config, name)
    if name == "load_manifest":
        from .manifest import load_manifest

        return load_manifest
    if name == "validate_manifest":
        from .manifest import validate_manifest

        return validate_manifest
    if name == "run_import":
        from .runner import run_import

        return run_import
    if name == "Sandbox":
        from .sandbox import Sandbox

        return Sandbox
    raise AttributeError(name)
