"""`upload.workers: auto` end to end: real runs against a sandbox that refuses above K requests at once.

Counts and outcomes only, never timings: every row once on the server, the limit settled at or under K, few
refusals, and what the summary, --summary-json and -v say about it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from faultkit import assert_exactly_once, check_results_file, write_config, write_manifest
from runkit import child_env, run_cli

from importer.sandbox import Sandbox

UPLOAD = "/calls/audio"


def run(sb: Sandbox, manifest, cfg, tmp_path, *extra):
    return run_cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet", "--results",
                   tmp_path / "r.csv", "--summary-json", tmp_path / "s.json", "--log-file", tmp_path / "run.log",
                   *extra)


def refused(sb: Sandbox) -> int:
    return sum(1 for q in sb.requests_log() if q["path"] == UPLOAD and q["status"] == 429)


def test_auto_settles_at_or_under_the_servers_limit_with_few_429s(tmp_path, monkeypatch):
    k = 3
    manifest, rows = write_manifest(tmp_path, n=240, agents=4)
    cfg = write_config(tmp_path, max_attempts=6)  # workers: auto is the default
    with Sandbox(data_dir=tmp_path / "sb", max_concurrency=k, latency_ms=40) as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        r = run(sb, manifest, cfg, tmp_path)
        assert r.code == 0, r.out + r.err
        lines = check_results_file(tmp_path / "r.csv", rows)
        assert_exactly_once(lines, rows, sb.calls(), allowed={"uploaded"})
        assert sb.peak_in_flight == k  # the server was used in full, and never beyond K
        uploads = sum(1 for q in sb.requests_log() if q["path"] == UPLOAD)
        assert refused(sb) <= max(4, 0.05 * uploads), (refused(sb), uploads)
    summary = json.loads((tmp_path / "s.json").read_text())
    c = summary["concurrency"]
    assert c["mode"] == "auto" and c["settled"] <= k and c["lowest"] >= 1 and c["highest"] <= k + 2
    assert summary["counts"]["uploaded"] == 240
    assert f"settled at {c['settled']}" in r.out
    log = (tmp_path / "run.log").read_text()
    assert "concurrency 4 -> 3: HTTP 429 (too many requests): backing off" in log  # -v says each change and why


def test_slots_waiting_on_max_per_second_do_not_move_the_limit(tmp_path, monkeypatch):
    # 10 requests a second for the whole run: the 4 first slots spend most of their time in the rate limiter,
    # so no window judges the limit (more slots would only wait too), and it stays at 4.
    manifest, rows = write_manifest(tmp_path, n=40, agents=2)
    cfg = write_config(tmp_path, max_per_second=10)
    with Sandbox(data_dir=tmp_path / "sb", latency_ms=20) as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        r = run(sb, manifest, cfg, tmp_path)
        assert r.code == 0, r.out + r.err
        assert_exactly_once(check_results_file(tmp_path / "r.csv", rows), rows, sb.calls(), allowed={"uploaded"})
        assert refused(sb) == 0
    c = json.loads((tmp_path / "s.json").read_text())["concurrency"]
    assert c == {"mode": "auto", "lowest": 4, "highest": 4, "settled": 4, "changes": 0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is read on Linux only")
def test_the_limiter_reads_the_path_from_the_connections(tmp_path, monkeypatch):
    manifest, rows = write_manifest(tmp_path, n=160, agents=4)
    cfg = write_config(tmp_path)
    with Sandbox(data_dir=tmp_path / "sb", latency_ms=40) as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        r = run(sb, manifest, cfg, tmp_path)
        assert r.code == 0, r.out + r.err
        assert_exactly_once(check_results_file(tmp_path / "r.csv", rows), rows, sb.calls(), allowed={"uploaded"})
    log = (tmp_path / "run.log").read_text()
    # The first window always doubles; its line says what TCP_INFO saw. Loopback loses nothing: the tail
    # loss probes sent while the sandbox sits on its delayed ACK come back as duplicates (DSACK), not losses.
    # Bodies this small leave the connections app-limited, so their round trip (the delayed ACK) is not used.
    assert re.search(r"concurrency 4 -> 8: [\d.]+ MB/s at 4, 0\.0% retransmitted: doubling \(slow start\)", log), \
        log[-3000:]


def test_a_number_means_exactly_that_many_even_when_the_server_refuses(tmp_path, monkeypatch):
    manifest, rows = write_manifest(tmp_path, n=30, agents=2)
    cfg = write_config(tmp_path, max_attempts=20, max_retry_after_seconds=0)
    with Sandbox(data_dir=tmp_path / "sb", max_concurrency=2, latency_ms=40) as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        r = run(sb, manifest, cfg, tmp_path, "--workers", "4")
        assert r.code == 0, r.out + r.err
        lines = check_results_file(tmp_path / "r.csv", rows)
        assert_exactly_once(lines, rows, sb.calls(), allowed={"uploaded"})
        assert refused(sb) > 0  # 4 at once against a limit of 2: it does not adapt, it retries
    c = json.loads((tmp_path / "s.json").read_text())["concurrency"]
    assert c == {"mode": "fixed", "lowest": 4, "highest": 4, "settled": 4, "changes": 0}
    assert "uploads at once: 4 (upload.workers)" in r.out
    assert "concurrency" not in (tmp_path / "run.log").read_text().replace("uploads at once", "")


def test_workers_flag_accepts_auto_and_names_itself_when_wrong(tmp_path, monkeypatch, sandbox):
    manifest, rows = write_manifest(tmp_path, n=4, agents=1)
    cfg = write_config(tmp_path, workers=2)
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    r = run(sandbox, manifest, cfg, tmp_path, "--workers", "auto")
    assert r.code == 0, r.out + r.err
    assert json.loads((tmp_path / "s.json").read_text())["concurrency"]["mode"] == "auto"
    bad = subprocess.run([sys.executable, "-m", "importer", "run", str(manifest), "--workers", "lots", "--dry-run"],
                         capture_output=True, text=True, env=child_env(sandbox.api_key), check=False)
    assert bad.returncode == 2
    assert "argument --workers: the value must be auto or a whole number (got 'lots')" in bad.stderr


def test_sandbox_refuses_a_negative_max_concurrency():
    with pytest.raises(ValueError, match="max_concurrency"):
        Sandbox(max_concurrency=-1)
