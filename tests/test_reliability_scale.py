"""Scale with faults on: 10,000 rows, 8 workers, random 500/503 answers and dropped connections.

The CLI runs as a child process (so client and server use both cores); the sandbox's request log is then
checked row by row. Tiny recordings (0.05 s) shared by the rows, each row with its own timestamp.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from faultkit import (
    assert_exactly_once,
    check_results_file,
    child_env,
    write_config,
    write_manifest,
)
from runkit import run_cli

from importer.ledger import Ledger
from importer.sandbox import Sandbox

N = 10_000
STORED = {200}  # answers after which the server holds the call
AMBIGUOUS_FAULTS = {"random:500", "random:store_then_drop"}


@pytest.mark.slow
def test_10000_rows_8_workers_with_faults_nothing_twice_every_row_accounted_for(tmp_path, monkeypatch):
    manifest, rows = write_manifest(tmp_path, n=N, agents=20, files=10, seconds=0.05)
    # Retry-After is capped at 0 s (plus the client's jitter), so the 503s cost little time.
    cfg = write_config(tmp_path, workers=8, max_attempts=6, max_retry_after_seconds=0)
    with Sandbox(fail_rate=0.02, drop_rate=0.01, seed=20251125, data_dir=tmp_path / "server") as sb:
        cmd = [sys.executable, "-m", "importer", "run", str(manifest), "--config", str(cfg), "--api-url", sb.url,
               "--quiet", "--results", str(tmp_path / "r.csv"),
               "--allow-same-recording"]  # 10 recordings shared by 10,000 rows: each row is its own call here
        done = subprocess.run(cmd, env=child_env(sb.api_key), capture_output=True, text=True, timeout=300)
        assert done.returncode in (0, 1), done.stdout + done.stderr

        lines = check_results_file(tmp_path / "r.csv", rows)  # every row accounted for, once, in order
        by_status = assert_exactly_once(lines, rows, sb.calls())
        counts = Counter(x["import_status"] for x in lines)
        assert counts["uploaded"] > N * 0.95 and counts["uploaded"] + counts["unknown"] == N, counts

        # Request by request: a row is sent again only after an answer that says the server did not take it
        # (503); after a stored call or an ambiguous answer (500, dropped) it is never sent again.
        uploads: dict[str, list[dict]] = {}
        for q in sb.requests_log():
            if q["path"] == "/calls/audio":
                uploads.setdefault(q["body_sha256"], []).append(q)
        assert len(uploads) == N, "one distinct multipart body per row, the same bytes on every attempt"
        faults = Counter()
        for requests in uploads.values():
            *retried, last = requests
            assert all(q["status"] == 503 for q in retried), [(q["status"], q["fault"]) for q in requests]
            assert last["status"] in STORED or last["fault"] in AMBIGUOUS_FAULTS, (last["status"], last["fault"])
            faults.update(q["fault"] for q in requests if q["fault"])
        assert faults["random:503"] > 0 and faults["random:500"] > 0 and faults["random:store_then_drop"] > 0
        unknown = len(by_status.get("unknown", []))
        assert unknown == faults["random:500"] + faults["random:store_then_drop"]
        assert done.returncode == (1 if unknown else 0)

        # A rerun sends nothing: uploaded rows are already_uploaded, unknown rows stay held back.
        before = len(sb.requests_log())
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        again = run_cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet", "--results",
                        tmp_path / "again.csv")
        assert again.code == (1 if unknown else 0)
        assert len(sb.requests_log()) == before
        assert Counter(x["import_status"] for x in check_results_file(tmp_path / "again.csv", rows)) == Counter(
            {"already_uploaded": counts["uploaded"], "unknown": unknown} if unknown else
            {"already_uploaded": counts["uploaded"]})
        with Ledger(tmp_path / "state", sb.url) as led:
            assert led.counts() == ({"uploaded": counts["uploaded"], "unknown": unknown} if unknown else
                                    {"uploaded": counts["uploaded"]})
