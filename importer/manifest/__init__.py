"""The manifest wing: read a CSV or XLSX manifest as people export it and validate every row before any request.

In: a path and the Config. Out: a ValidatedManifest (the calls to send, the invalid rows, every problem by row).
"""

from __future__ import annotations

from .files import manifest_bases
from .load import load_manifest, required_fields
from .model import (
    CallRow,
    LoadedManifest,
    Problem,
    Severity,
    ValidatedManifest,
    header_key,
    total_bytes,
    total_duration,
)
from .validate import validate_manifest

__all__ = [
    "CallRow",
    "LoadedManifest",
    "Problem",
    "Severity",
    "ValidatedManifest",
    "header_key",
    "load_manifest",
    "manifest_bases",
    "required_fields",
    "total_bytes",
    "total_duration",
    "validate_manifest",
]
