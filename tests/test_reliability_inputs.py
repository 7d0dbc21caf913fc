"""Untrusted inputs on disk: recordings that change after validation, and hostile manifests.

A manifest is read before anything is sent, and a recording is checked again just before each attempt; in
both cases the answer is a clear message and an exit code of 0, 1 or 2, never a traceback (70).
"""

from __future__ import annotations

import os
import threading

import pytest
from conftest import make_wav
from faultkit import Audit, check_results_file, wait_until, write_config, write_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runkit import CAMPAIGN, run_cli

from importer.sandbox import Sandbox

# --- 9. a recording changed or deleted between validation and upload --------------------------------


def test_recordings_changed_after_validation_fail_clearly_and_are_never_sent(tmp_path, monkeypatch):
    manifest, rows = write_manifest(tmp_path, n=5, agents=1, seconds=0.2)
    grown, rewritten, deleted, unreadable = (r.file for r in rows[1:])
    cfg = write_config(tmp_path, workers=1)

    def tamper() -> None:
        # The first request the sandbox finishes is the invite, after validation and before any upload;
        # the 300 ms latency of each upload leaves time to change the files of the rows that follow.
        wait_until(lambda: sb.requests_log(), 30)
        with open(grown, "ab") as fh:
            fh.write(b"\0" * 100)
        size, mtime = rewritten.stat().st_size, rewritten.stat().st_mtime_ns
        make_wav(rewritten, seconds=0.2, seed=99)  # same size, other bytes
        os.utime(rewritten, ns=(mtime + 10**9, mtime + 10**9))
        assert rewritten.stat().st_size == size
        deleted.unlink()
        Audit.deny_open(unreadable)  # as a chmod 000 would, for a user who is not root

    with Sandbox(latency_ms=300, data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        t = threading.Thread(target=tamper)
        t.start()
        try:
            r = run_cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet", "--results",
                        tmp_path / "r.csv", "-v", "--log-file", tmp_path / "run.log")
        finally:
            t.join()
            Audit.allow_all()
        assert r.code == 1, r.out + r.err
        lines = check_results_file(tmp_path / "r.csv", rows)
        assert [x["import_status"] for x in lines] == ["uploaded"] + ["failed"] * 4
        errors = [x["import_error"] for x in lines[1:]]
        assert "file changed after validation (size" in errors[0]
        assert "file was modified after validation" in errors[1]
        assert "file disappeared after validation" in errors[2]
        assert "file cannot be read" in errors[3] and "Permission denied" in errors[3]
        assert all("validate and run again" in e or "cannot be read" in e or "disappeared" in e for e in errors)
        assert len([q for q in sb.requests_log() if q["path"] == "/calls/audio"]) == 1, "only the intact row"
        assert "Traceback" not in (tmp_path / "run.log").read_text()


# --- 13. hostile manifests ---------------------------------------------------------------------------

HEADER = "file_path,agent_email,conversation_timestamp,campaign_id"


def _row(wav: object, ts: int = 1_750_000_000) -> str:
    return f"{wav},agent@example.com,{ts},{CAMPAIGN}"


def _hostile(tmp_path, name: str) -> tuple[object, int, str]:
    """Write the hostile manifest `name`; return its path, the exit code both commands must give, and a
    text the output must contain."""
    wav = make_wav(tmp_path / "a.wav", seconds=0.2)
    row = _row(wav)
    path = tmp_path / f"{name}.csv"
    cases: dict[str, tuple[bytes, int, str]] = {
        "nul-bytes-in-cells": ((HEADER + "\n" + row.replace("agent@", "ag\0ent@") + "\n").encode(), 0,
                               "NUL characters removed"),
        "nul-bytes-everywhere": (b"\0" * 5000, 2, "binary data (NUL bytes)"),
        "10mb-cell": ((HEADER + ",notes\n" + row + "," + "x" * 10_000_000 + "\n").encode(), 0,
                      "10,000,000 characters long"),
        "10000-columns": ((HEADER + "," + ",".join(f"c{i}" for i in range(9996)) + "\n" + row + ","
                           + ",".join(["v"] * 9996) + "\n").encode(), 0, "1 row: 1 valid"),
        "header-only": ((HEADER + "\n").encode(), 0, "0 rows"),
        "empty-file": (b"", 2, "is empty"),
        "mixed-line-endings": ((HEADER + "\r\n" + _row(wav, 1_750_000_000) + "\n" + _row(wav, 1_750_000_060)
                                + "\r" + _row(wav, 1_750_000_120) + "\r\n").encode(), 0, "3 rows: 3 valid"),
        "utf-16-with-bom": ((HEADER + "\n" + row + "\n").encode("utf-16"), 0, "1 row: 1 valid"),
        "utf-16-without-bom": ((HEADER + "\n" + row + "\n").encode("utf-16-le"), 2, "UTF-16"),
        "random-bytes": (bytes(range(256)) * 40, 2, "error:"),
        "unclosed-quote": ((HEADER + "\n" + row + ',"oops\n' + row + "\n").encode(), 2, "never closed"),
    }
    data, code, text = cases[name]
    path.write_bytes(data)
    return path, code, text


HOSTILE = ["nul-bytes-in-cells", "nul-bytes-everywhere", "10mb-cell", "10000-columns", "header-only",
           "empty-file", "mixed-line-endings", "utf-16-with-bom", "utf-16-without-bom", "random-bytes",
           "unclosed-quote"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_manifest_gives_a_clear_answer_never_a_traceback(tmp_path, monkeypatch, name):
    monkeypatch.delenv("ALLOBRAIN_API_KEY", raising=False)  # neither command needs a key
    path, code, text = _hostile(tmp_path, name)
    cfg = write_config(tmp_path)
    for args in (["validate", path, "--config", cfg],
                 ["run", path, "--config", cfg, "--dry-run", "--api-url", "http://127.0.0.1:9"]):
        r = run_cli(*args)
        shown = r.out + r.err
        assert r.code == code, f"{args[0]}: exit {r.code}\n{shown[-2000:]}"
        assert text in shown, shown[-2000:]
        assert "Traceback" not in shown and "unexpected error" not in shown
        assert len(shown) < 20_000, "a hostile cell must not be echoed back in full"


_CELLS = st.sampled_from(["", "a", " ", '"', '""', ",", ";", "\t", "\r", "\n", "\r\n", "\0", "\x1a", "é",
                          "\ufeff", "=cmd|' /C calc'!A0", "2025-11-25 14:30", "1750000000", "x@y.fr",
                          CAMPAIGN, "file_path", "agent_email", "conversation_timestamp", "campaign_id",
                          "import_status", "uploaded", "\udcff"])


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_CELLS, max_size=60), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]))
def test_fuzzed_manifests_never_end_in_a_traceback(tmp_path, pieces, encoding):
    text = HEADER + "\n" + "".join(pieces)
    path = tmp_path / "fuzz.csv"
    path.write_bytes(text.encode(encoding, "surrogateescape" if encoding.startswith("utf-8") else "replace"))
    r = run_cli("validate", path, "--config", write_config(tmp_path))
    assert r.code in (0, 1, 2), (r.code, r.out[-1000:], r.err[-1000:])
    assert "Traceback" not in r.out + r.err



# --- output paths that cannot be written --------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--log-file", "--summary-json"])
def test_unwritable_log_or_summary_paths_are_usage_errors(sandbox, tmp_path, monkeypatch, flag):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    manifest, _ = write_manifest(tmp_path, n=1, agents=1)
    r = run_cli("run", manifest, "--config", write_config(tmp_path), "--api-url", sandbox.url, "--quiet",
                "--results", tmp_path / "r.csv", flag, tmp_path)  # a folder, not a file
    assert r.code == 2, r.out + r.err
    assert "unexpected error" not in r.err and str(tmp_path) in r.err
