"""Reruns from a results CSV: what its run-info file (`<results>.run.json`) protects against."""

from __future__ import annotations

import json
import time

from conftest import make_wav
from runkit import (
    CAMPAIGN,
    child_run_cmd,
    read_results,
    run_cli,
    stop_child_after_calls,
    write_config,
    write_manifest,
)
from test_run import results_of, statuses

from importer.sandbox import Sandbox


def test_a_results_file_cut_short_by_a_hard_stop_is_refused_not_taken_as_done(tmp_path):
    with Sandbox(latency_ms=200, data_dir=tmp_path / "d") as sb:
        manifest = write_manifest(tmp_path, n=30, agents=1)
        results = tmp_path / "cut.csv"
        cmd = child_run_cmd(manifest, write_config(tmp_path), sb.url, results, workers=2)
        stop_child_after_calls(sb, cmd, 4)
        assert len(read_results(results)) < 30
        info = json.loads((tmp_path / "cut.csv.run.json").read_text())
        assert info["complete"] is False and info["rows"] == 30

        r = run_cli("run", results, "--config", write_config(tmp_path), "--api-url", sb.url, "--quiet")
        assert r.code == 2
        assert "cut.csv is incomplete" in r.err and str(manifest.resolve()) in r.err


def test_rows_uploaded_to_the_sandbox_are_not_taken_as_uploaded_to_another_api(tmp_path, monkeypatch):
    results = tmp_path / "sandbox-run.csv"
    manifest = write_manifest(tmp_path, n=3, agents=1)
    cfg = write_config(tmp_path)
    first = run_cli("run", manifest, "--config", cfg, "--sandbox", "--quiet", "--results", results)
    assert first.code == 0 and statuses(results) == ["uploaded"] * 3
    with Sandbox(data_dir=tmp_path / "d") as other:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", other.api_key)
        r = run_cli("run", results, "--config", cfg, "--api-url", other.url, "--quiet")
        assert r.code == 0, r.out + r.err
        assert "written by a run against the built-in sandbox" in r.err
        assert statuses(results_of(r.out)) == ["uploaded"] * 3
        assert len(other.calls()) == 3


def test_the_same_api_spelled_differently_is_one_api(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    manifest = write_manifest(tmp_path, n=3, agents=1)
    cfg = write_config(tmp_path)
    assert run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet").code == 0
    other_spelling = sandbox.url.replace("127.0.0.1", "LOCALHOST") + "/"
    r = run_cli("run", manifest, "--config", cfg, "--api-url", other_spelling, "--quiet")
    assert r.code == 0 and statuses(results_of(r.out)) == ["already_uploaded"] * 3
    assert len(sandbox.calls()) == 3


def test_a_results_file_kept_elsewhere_still_finds_its_recordings(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    work = tmp_path / "work"
    bad = [{"file_path": "audio/late.wav", "agent_email": "agent0@example.com", "agent_name": "Agent 0",
            "conversation_timestamp": "1750009999", "campaign_id": CAMPAIGN, "site": "Nice"}]
    manifest = write_manifest(work, n=2, agents=1, extra_rows=bad)
    cfg = write_config(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "r.csv"
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", elsewhere)
    assert r.code == 1 and statuses(elsewhere) == ["uploaded", "uploaded", "invalid"]
    make_wav(work / "audio" / "late.wav", seed=99)  # the user fixes the missing file (a recording of its own)
    again = run_cli("run", elsewhere, "--config", cfg, "--api-url", sandbox.url, "--quiet")
    assert again.code == 0, again.out + again.err
    assert statuses(results_of(again.out)) == ["already_uploaded", "already_uploaded", "uploaded"]


def test_results_may_not_overwrite_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "k")
    manifest = write_manifest(tmp_path, n=1)
    before = manifest.read_bytes()
    r = run_cli("run", manifest, "--config", write_config(tmp_path), "--results", manifest, "--dry-run")
    assert r.code == 2 and "must not be the manifest" in r.err
    assert manifest.read_bytes() == before


def test_the_suggested_rerun_repeats_the_flags_that_chose_the_api_and_campaign(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    bad = [{"file_path": "audio/none.wav", "agent_email": "agent0@example.com", "agent_name": "A",
            "conversation_timestamp": "1750009999", "campaign_id": "", "site": "Nice"}]
    manifest = write_manifest(tmp_path, n=1, agents=1, extra_rows=bad)
    r = run_cli("run", manifest, "--config", write_config(tmp_path), "--api-url", sandbox.url, "--quiet",
                "--campaign-id", CAMPAIGN)
    assert r.code == 1
    line = next(x for x in r.out.splitlines() if x.startswith("next:"))
    assert f"--api-url {sandbox.url}" in line and f"--campaign-id {CAMPAIGN}" in line


def test_an_agent_the_api_no_longer_knows_is_invited_again(tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path, n=2, agents=1)
    cfg = write_config(tmp_path)
    with Sandbox(data_dir=tmp_path / "a") as first:
        port = int(first.url.rsplit(":", 1)[1])
        monkeypatch.setenv("ALLOBRAIN_API_KEY", first.api_key)
        assert run_cli("run", manifest, "--config", cfg, "--api-url", first.url, "--quiet").code == 0
    # The same URL now serves an API that has never seen the agent (reset, or the agent was removed),
    # while the ledger remembers it as invited.
    with Sandbox(port=port, data_dir=tmp_path / "b") as second:
        more = write_manifest(tmp_path / "more", n=3, agents=1)  # its first two rows are the calls sent above
        r = run_cli("run", more, "--config", cfg, "--api-url", second.url, "--quiet")
        assert r.code == 0, r.out + r.err
        assert statuses(results_of(r.out)) == ["already_uploaded", "already_uploaded", "uploaded"]
        assert [a["email"] for a in second.agents()] == ["agent0@example.com"]
        invites = [q for q in second.requests_log() if q["path"] == "/users/invite"]
        assert len(invites) == 1  # once per run, not once per row


def test_a_dead_api_stops_the_run_instead_of_retrying_every_row(tmp_path, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "k")
    manifest = write_manifest(tmp_path, n=40, agents=20)
    t0 = time.monotonic()
    # Riding out an outage (2 s here, 120 s by default) delays the stop; it does not prevent it.
    cfg = write_config(tmp_path, max_attempts=2)
    cfg.write_text(cfg.read_text() + "  ride_out_seconds: 2\n", encoding="utf-8")
    r = run_cli("run", manifest, "--config", cfg, "--api-url",
                f"http://127.0.0.1:{port}", "--quiet", "--summary-json", tmp_path / "s.json")
    assert r.code == 1
    assert time.monotonic() - t0 < 30
    assert "STOPPED: the API did not answer" in r.out
    st = statuses(results_of(r.out))
    assert len(st) == 40 and set(st) <= {"agent_failed", "not_attempted"} and "not_attempted" in st
    assert json.loads((tmp_path / "s.json").read_text())["halted"].startswith("the API did not answer")
