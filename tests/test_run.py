"""The import run end to end: the CLI in-process (or as a child process) against the real sandbox."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import pytest
from runkit import (
    CAMPAIGN,
    REPO,
    child_env,
    child_run_cmd,
    read_results,
    run_cli,
    stop_child_after_calls,
    write_config,
    write_manifest,
)

from importer.results import IMPORT_COLUMNS


@pytest.fixture
def env_key(monkeypatch, sandbox):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    return sandbox.api_key


def run(sandbox, manifest: Path, config: Path, *extra: str | Path):
    return run_cli("run", manifest, "--config", config, "--api-url", sandbox.url, "--quiet", *extra)


def results_of(out: str) -> Path:
    line = next(x for x in out.splitlines() if x.startswith("results: "))
    return Path(line.removeprefix("results: ").strip())


def statuses(path: Path) -> list[str]:
    return [r["import_status"] for r in read_results(path)]


def test_full_run_then_rerun_sends_nothing(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=6, agents=2)
    cfg = write_config(tmp_path)
    r = run(sandbox, manifest, cfg)
    assert r.code == 0, r.out + r.err
    path = results_of(r.out)
    assert path.parent == tmp_path / "results" and path.name.startswith("calls-")
    rows = read_results(path)
    assert [x["import_status"] for x in rows] == ["uploaded"] * 6
    assert [x["import_row"] for x in rows] == [str(i) for i in range(2, 8)]
    assert list(rows[0])[-len(IMPORT_COLUMNS):] == list(IMPORT_COLUMNS)
    assert all(x["import_call_id"] and x["import_http_status"] == "200" and x["import_attempts"] == "1" for x in rows)
    assert sorted(a["email"] for a in sandbox.agents()) == ["agent0@example.com", "agent1@example.com"]
    invites = [q for q in sandbox.requests_log() if q["path"] == "/users/invite"]
    assert len(invites) == 2  # each agent once
    calls = {c["file_name"]: c for c in sandbox.calls()}
    assert len(calls) == 6
    for i in range(6):
        c = calls[f"call{i:04d}.wav"]
        data = (tmp_path / "audio" / f"call{i:04d}.wav").read_bytes()
        assert c["sha256"] == hashlib.sha256(data).hexdigest()
        assert c["fields"]["conversation_timestamp"] == str(1_750_000_000 + i * 60)
        assert c["fields"]["agent_email"] == f"agent{i % 2}@example.com"
        assert c["fields"]["campaign_id"] == CAMPAIGN
        assert c["metadata"] == [{"key": "site", "value": "Lyon" if i % 2 else "Paris"}]
    assert "nothing left to do" in r.out

    before = len(sandbox.requests_log())
    again = run(sandbox, manifest, cfg)
    assert again.code == 0
    assert statuses(results_of(again.out)) == ["already_uploaded"] * 6
    assert len(sandbox.requests_log()) == before, "a rerun must send nothing: no invite, no upload"

    # the results CSV is itself a manifest: nothing to send either
    third = run(sandbox, path, cfg)
    assert third.code == 0 and statuses(results_of(third.out)) == ["already_uploaded"] * 6
    assert results_of(third.out).parent == path.parent
    assert len(sandbox.requests_log()) == before


def test_storm_of_503_and_429_uploads_every_row_exactly_once(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=12, agents=3)
    cfg = write_config(tmp_path, max_attempts=20)  # 16 faults could all land on one row
    sandbox.inject("/calls/audio", *[(503, "0"), (429, "0")] * 8)
    r = run(sandbox, manifest, cfg, "--workers", "4")
    assert r.code == 0, r.out + r.err
    assert statuses(results_of(r.out)) == ["uploaded"] * 12
    names = [c["file_name"] for c in sandbox.calls()]
    assert sorted(names) == sorted(set(names)) and len(names) == 12


def test_store_then_drop_is_unknown_and_only_retry_unknown_resends(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=4, agents=1)
    cfg = write_config(tmp_path)
    sandbox.inject("/calls/audio", "store_then_drop")
    r = run(sandbox, manifest, cfg, "--workers", "1")
    assert r.code == 1
    path = results_of(r.out)
    assert statuses(path) == ["unknown", "uploaded", "uploaded", "uploaded"]
    assert "--retry-unknown" in r.out
    assert len(sandbox.calls()) == 4  # the dropped one was stored

    again = run(sandbox, path, cfg)
    assert again.code == 1
    assert statuses(results_of(again.out)) == ["unknown", "already_uploaded", "already_uploaded", "already_uploaded"]
    assert len(sandbox.calls()) == 4  # not resent

    same_manifest = run(sandbox, manifest, cfg)  # the ledger holds it as unknown too
    assert statuses(results_of(same_manifest.out))[0] == "unknown"
    assert len(sandbox.calls()) == 4

    forced = run(sandbox, results_of(again.out), cfg, "--retry-unknown")
    assert forced.code == 0
    assert statuses(results_of(forced.out)) == ["uploaded"] + ["already_uploaded"] * 3
    assert len(sandbox.calls()) == 5  # resent on request: the user chose to accept a possible duplicate


def test_wrong_key_stops_with_exit_3_quickly_and_never_shows_the_key(sandbox, tmp_path, monkeypatch):
    canary = "CANARY-5e1f0b-not-the-key"
    monkeypatch.setenv("ALLOBRAIN_API_KEY", canary)
    manifest = write_manifest(tmp_path, n=20, agents=4)
    cfg = write_config(tmp_path)
    log = tmp_path / "run.log"
    t0 = time.monotonic()
    r = run(sandbox, manifest, cfg, "-v", "--log-file", log, "--summary-json", tmp_path / "s.json")
    assert r.code == 3
    assert time.monotonic() - t0 < 10
    assert len(sandbox.requests_log()) <= 8  # a handful: the invites in flight, no uploads
    assert "refused the key" in r.out
    path = results_of(r.out)
    rows = read_results(path)
    assert len(rows) == 20 and {x["import_status"] for x in rows} == {"not_attempted"}
    for text in (r.out, r.err, log.read_text(), path.read_text(encoding="utf-8-sig"),
                 (tmp_path / "s.json").read_text()):
        assert canary not in text
    for f in (tmp_path / "state").iterdir():
        assert canary.encode() not in f.read_bytes()


def test_mixed_manifest_uploads_valid_rows_and_reports_invalid_ones(sandbox, env_key, tmp_path):
    bad = [
        {"file_path": "audio/missing.wav", "agent_email": "agent0@example.com", "agent_name": "Agent 0",
         "conversation_timestamp": "1750000000", "campaign_id": CAMPAIGN, "site": "Nice"},
        {"file_path": "audio/call0000.wav", "agent_email": "not-an-email", "agent_name": "X",
         "conversation_timestamp": "1750009999", "campaign_id": CAMPAIGN, "site": "Nice"},
    ]
    manifest = write_manifest(tmp_path, n=3, agents=1, extra_rows=bad)
    cfg = write_config(tmp_path)
    r = run(sandbox, manifest, cfg)
    assert r.code == 1
    assert "row 5, file_path:" in r.err and "row 6, agent_email:" in r.err
    path = results_of(r.out)
    rows = read_results(path)
    assert [x["import_status"] for x in rows] == ["uploaded"] * 3 + ["invalid"] * 2
    assert "not found" in rows[3]["import_error"]
    assert rows[4]["import_error"]
    assert rows[4]["agent_email"] == "not-an-email"  # original cells verbatim
    assert len(sandbox.calls()) == 3

    n = len(sandbox.requests_log())
    again = run(sandbox, path, cfg)
    assert again.code == 1
    assert statuses(results_of(again.out)) == ["already_uploaded"] * 3 + ["invalid"] * 2
    assert len(sandbox.requests_log()) == n


def test_agent_whose_invite_fails_has_its_rows_marked(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=4, agents=2)
    cfg = write_config(tmp_path, agents="\n  workers: 1")
    sandbox.inject("/users/invite", 422)
    r = run(sandbox, manifest, cfg)
    assert r.code == 1
    st = statuses(results_of(r.out))
    assert sorted(st) == ["agent_failed", "agent_failed", "uploaded", "uploaded"]
    assert "inviting agent" in r.out


def test_unknown_campaign_stops_after_five_consecutive_not_found(tmp_path, monkeypatch):
    from importer.sandbox import Sandbox

    with Sandbox(campaigns=["aaaaaaaaaaaaaaaaaaaaaaaa"], data_dir=tmp_path / "d") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest = write_manifest(tmp_path, n=12, agents=1)
        cfg = write_config(tmp_path)
        r = run(sb, manifest, cfg, "--workers", "1")
        assert r.code == 1
        st = statuses(results_of(r.out))
        assert st[:5] == ["failed"] * 5 and set(st[5:]) == {"not_attempted"}
        assert len([q for q in sb.requests_log() if q["path"] == "/calls/audio"]) == 5
        assert "consecutive" in read_results(results_of(r.out))[-1]["import_error"]


def test_missing_key_is_a_usage_error_naming_the_variable(tmp_path, monkeypatch, sandbox):
    monkeypatch.delenv("ALLOBRAIN_API_KEY", raising=False)
    manifest = write_manifest(tmp_path, n=1)
    r = run(sandbox, manifest, write_config(tmp_path))
    assert r.code == 2 and "ALLOBRAIN_API_KEY" in r.err
    assert sandbox.requests_log() == []


def test_refused_url_is_exit_2_before_any_connection(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "k")
    manifest = write_manifest(tmp_path, n=1)
    r = run_cli("run", manifest, "--config", write_config(tmp_path), "--api-url", "http://localhost:1@evil.example")
    assert r.code == 2 and "credentials" in r.err


def test_dry_run_prints_the_plan_and_sends_nothing(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=4, agents=2, seconds=2)
    cfg = write_config(tmp_path)
    r = run(sandbox, manifest, cfg, "--dry-run")
    assert r.code == 0
    assert "agents to invite:   2" in r.out and "calls to send:      4" in r.out
    assert "audio duration:     8.0s" in r.out
    assert sandbox.requests_log() == []
    run(sandbox, manifest, cfg)
    r2 = run(sandbox, manifest, cfg, "--dry-run")
    assert "calls to send:      0" in r2.out and "already uploaded:   4" in r2.out


def test_run_sandbox_on_the_shipped_example(tmp_path):
    results = tmp_path / "out.csv"
    r = run_cli("run", REPO / "manifests" / "example.csv", "--config", REPO / "config.yaml", "--sandbox",
                "--quiet", "--results", results)
    assert r.code == 0, r.out + r.err
    rows = read_results(results)
    assert rows and {x["import_status"] for x in rows} == {"uploaded"}


def test_sigkill_mid_run_then_rerun_accepts_no_row_twice(tmp_path):
    from importer.sandbox import Sandbox

    with Sandbox(latency_ms=150, data_dir=tmp_path / "d") as sb:
        manifest = write_manifest(tmp_path, n=40, agents=2)
        cfg = write_config(tmp_path)
        cmd = child_run_cmd(manifest, cfg, sb.url, tmp_path / "first.csv", workers=4)
        stop_child_after_calls(sb, cmd, 8)
        stored_at_kill = len(sb.calls())
        assert 0 < stored_at_kill < 40

        r = subprocess.run([*cmd[:-1], str(tmp_path / "second.csv")], env=child_env(sb.api_key),
                           capture_output=True, text=True, timeout=120)
        names = [c["file_name"] for c in sb.calls()]
        rows = read_results(tmp_path / "second.csv")
        assert len(rows) == 40, r.stdout + r.stderr  # every row accounted for
        assert len(names) == len(set(names)), "no call may reach the server twice"
        by_status: dict[str, list[str]] = {}
        for row in rows:
            by_status.setdefault(row["import_status"], []).append(Path(row["file_path"]).name)
        assert set(by_status) <= {"uploaded", "already_uploaded", "unknown"}
        assert len(by_status.get("unknown", [])) <= 4  # at most the rows in flight (4 workers)
        done = by_status.get("uploaded", []) + by_status.get("already_uploaded", [])
        assert set(done) <= set(names)
        assert r.returncode == (1 if by_status.get("unknown") else 0)


def test_ctrl_c_finishes_in_flight_rows_writes_everything_and_exits_130(tmp_path):
    from importer.sandbox import Sandbox

    with Sandbox(latency_ms=200, data_dir=tmp_path / "d") as sb:
        manifest = write_manifest(tmp_path, n=30, agents=1)
        cfg = write_config(tmp_path)
        results = tmp_path / "out.csv"
        cmd = child_run_cmd(manifest, cfg, sb.url, results, workers=2)
        child = stop_child_after_calls(sb, cmd, 4, signal.SIGINT, capture=True)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 130, out + err
        assert "in-flight uploads finish" in err
        rows = read_results(results)
        assert len(rows) == 30
        st = [r["import_status"] for r in rows]
        assert set(st) == {"uploaded", "not_attempted"}
        assert st.count("uploaded") == len(sb.calls())  # in-flight rows finished and were recorded
        assert "INTERRUPTED" in out

        # the rerun sends exactly what is left
        r = subprocess.run([*cmd[:-1], str(tmp_path / "again.csv")], env=child_env(sb.api_key),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        names = [c["file_name"] for c in sb.calls()]
        assert len(names) == 30 == len(set(names))


def test_a_key_that_cannot_travel_in_a_header_is_a_usage_error(tmp_path, monkeypatch, sandbox):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "clé-€-secrète")
    r = run(sandbox, write_manifest(tmp_path, n=1), write_config(tmp_path))
    assert r.code == 2 and "ALLOBRAIN_API_KEY contains characters" in r.err
    assert "€" not in r.err and sandbox.requests_log() == []


def test_bad_sandbox_settings_are_usage_errors(sandbox):
    assert run_cli("sandbox", "--fail-rate", "2").code == 2
    port = sandbox.url.rsplit(":", 1)[1]
    r = run_cli("sandbox", "--port", port)  # taken by the fixture's sandbox
    assert r.code == 2 and "sandbox:" in r.err
