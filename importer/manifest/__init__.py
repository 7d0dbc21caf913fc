"""The manifest wing: read a CSV or XLSX manifest as people export it and validate every row before any request.

In: a path and the Config. Out: a ValidatedManifest (the calls to send, the invalid rows, every problem by row).
"""

from __future__ import annotations

from .files import manifest_bases
from .load import load_manifest, read_table, required_fields
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
from .names import closest_header, is_french, match_headers, normalise
from .phones import normalize_phones
from .read_csv import RawTable
from .validate import validate_manifest

__all__ = [
    "CallRow",
    "LoadedManifest",
    "Problem",
    "RawTable",
    "Severity",
    "ValidatedManifest",
    "closest_header",
    "header_key",
    "is_french",
    "load_manifest",
    "manifest_bases",
    "match_headers",
    "normalise",
    "normalize_phones",
    "read_table",
    "required_fields",
    "total_bytes",
    "total_duration",
    "validate_manifest",
]
