"""What the source tests share: a manifest of URL cells, and the rule for a missing test server."""

from __future__ import annotations

import csv
import importlib
import os
from pathlib import Path

import pytest
from runkit import CAMPAIGN


def require(*modules: str) -> None:
    """Skip locally when a test server's package is missing; under CI=true that is a failure, never a skip."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"{name} is a test dependency (pip install -e '.[test]')")


def url_manifest(folder: Path, cells: list[str], agents: int = 2) -> Path:
    """One row per cell, `agents` agents round-robin, timestamps a minute apart."""
    path = folder / "calls.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file_path", "agent_email", "conversation_timestamp", "campaign_id"])
        for i, cell in enumerate(cells):
            w.writerow([cell, f"agent{i % agents}@example.com", 1_750_000_000 + i * 60, CAMPAIGN])
    return path
