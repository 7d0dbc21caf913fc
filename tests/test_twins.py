"""The same recording twice in one manifest is sent once (the same-recording rule inside one run): the same
file named by several rows, or a copy under another name, to one campaign. Real CLI runs on real files
against the sandbox."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from conftest import make_wav
from runkit import CAMPAIGN, HEADERS, read_results, run_cli, write_config
from test_run import results_of, statuses

OTHER_CAMPAIGN = "665dc5c57275b74ce35c03ac"


@pytest.fixture
def env_key(monkeypatch, sandbox):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    return sandbox.api_key


def twins_manifest(folder: Path) -> Path:
    """Row 2: a.wav; row 3: a.wav again (another agent and time); row 4: b.wav; row 5: a copy of a.wav under
    another name in another folder; row 6: a.wav to another campaign (sent: once per campaign)."""
    audio = folder / "audio"
    make_wav(audio / "a.wav", seconds=0.5, seed=1)
    make_wav(audio / "b.wav", seconds=0.5, seed=2)  # same size as a.wav, other content: sent
    (folder / "copies").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(audio / "a.wav", folder / "copies" / "renamed.wav")
    rows = [
        ["audio/a.wav", "agent0@example.com", "Agent 0", "1750000000", CAMPAIGN, "Lyon"],
        ["audio/a.wav", "agent1@example.com", "Agent 1", "1750000060", CAMPAIGN, "Paris"],
        ["audio/b.wav", "agent0@example.com", "Agent 0", "1750000120", CAMPAIGN, "Lyon"],
        ["copies/renamed.wav", "agent0@example.com", "Agent 0", "1750003600", CAMPAIGN, "Lyon"],
        ["audio/a.wav", "agent0@example.com", "Agent 0", "1750000000", OTHER_CAMPAIGN, "Lyon"],
    ]
    path = folder / "calls.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        w.writerows(rows)
    return path


def test_the_same_recording_twice_in_one_manifest_is_sent_once_per_campaign(sandbox, env_key, tmp_path):
    manifest = twins_manifest(tmp_path)
    cfg = write_config(tmp_path)
    dry = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--dry-run")
    assert dry.code == 0, dry.out + dry.err
    assert "calls to send:      3" in dry.out
    assert "same recording as an earlier row: 2 (sent once, with that row)" in dry.out
    assert sandbox.calls() == []

    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet")
    assert r.code == 0, r.out + r.err
    rows = read_results(results_of(r.out))
    assert statuses(results_of(r.out)) == ["uploaded", "already_uploaded", "uploaded", "already_uploaded",
                                           "uploaded"]
    assert rows[1]["import_call_id"] == rows[3]["import_call_id"] == rows[0]["import_call_id"]
    assert rows[1]["import_error"].startswith("same recording as row 2 (a.wav), uploaded to this campaign by this run")
    assert "--allow-same-recording sends it anyway" in rows[3]["import_error"]
    assert "2 rows not sent: the same recording is already uploaded" in r.out
    sent = sandbox.calls()
    assert len(sent) == 3
    assert sorted(c["file_name"] for c in sent) == ["a.wav", "a.wav", "b.wav"]

    # The results file rerun sends nothing more: the ledger holds the first row and its fingerprint.
    again = run_cli("run", results_of(r.out), "--api-url", sandbox.url, "--quiet")
    assert again.code == 0, again.out + again.err
    assert statuses(results_of(again.out)) == ["already_uploaded"] * 5
    assert len(sandbox.calls()) == 3


def test_a_twin_of_a_row_that_fails_waits_for_it_and_goes_with_it_on_the_rerun(sandbox, env_key, tmp_path):
    manifest = twins_manifest(tmp_path)
    cfg = write_config(tmp_path, max_attempts=1)
    sandbox.inject("/calls/audio", 400)  # the first upload (row 2) refused for good
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--workers", "1")
    assert r.code == 1, r.out + r.err
    rows = read_results(results_of(r.out))
    assert [x["import_status"] for x in rows] == ["failed", "not_attempted", "uploaded", "not_attempted",
                                                  "uploaded"]
    assert rows[1]["import_error"].startswith("not sent: same recording as row 2 (a.wav), which was not uploaded "
                                              "(failed)")
    assert len(sandbox.calls()) == 2  # b.wav and the other campaign's a.wav

    again = run_cli("run", results_of(r.out), "--api-url", sandbox.url, "--quiet")
    assert again.code == 0, again.out + again.err
    assert statuses(results_of(again.out)) == ["uploaded", "already_uploaded", "already_uploaded",
                                               "already_uploaded", "already_uploaded"]
    assert len(sandbox.calls()) == 3


def test_allow_same_recording_sends_every_row(sandbox, env_key, tmp_path):
    manifest = twins_manifest(tmp_path)
    cfg = write_config(tmp_path)
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--allow-same-recording")
    assert r.code == 0, r.out + r.err
    assert statuses(results_of(r.out)) == ["uploaded"] * 5
    assert len(sandbox.calls()) == 5


def test_a_recording_of_the_same_size_with_other_bytes_is_sent(sandbox, env_key, tmp_path):
    manifest = twins_manifest(tmp_path)
    cfg = write_config(tmp_path)
    # Same size as a.wav, different bytes: hashing tells them apart, a size match alone never settles a row.
    other = tmp_path / "copies" / "renamed.wav"
    data = bytearray(other.read_bytes())
    data[-1] ^= 0xFF
    other.write_bytes(bytes(data))
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet")
    assert r.code == 0, r.out + r.err
    assert statuses(results_of(r.out)) == ["uploaded", "already_uploaded", "uploaded", "uploaded", "uploaded"]
    assert len(sandbox.calls()) == 4


def test_a_twin_of_a_row_whose_outcome_is_unknown_is_never_sent_without_retry_unknown(sandbox, env_key, tmp_path):
    manifest = twins_manifest(tmp_path)
    cfg = write_config(tmp_path)
    sandbox.inject("/calls/audio", "store_then_drop")  # row 2 stored, its answer lost: unknown
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--workers", "1")
    assert r.code == 1, r.out + r.err
    first = read_results(results_of(r.out))
    assert [x["import_status"] for x in first] == ["unknown", "not_attempted", "uploaded", "not_attempted",
                                                   "uploaded"]
    assert first[1]["import_error"].startswith("not sent: same recording as row 2 (a.wav), whose outcome is unknown")
    assert len(sandbox.calls()) == 3  # a.wav (stored, answer lost), b.wav, a.wav to the other campaign

    # Rerun without --retry-unknown: row 2 stays unknown, and its twins are not sent in its place.
    again = run_cli("run", results_of(r.out), "--api-url", sandbox.url, "--quiet")
    assert again.code == 1, again.out + again.err
    second = read_results(results_of(again.out))
    assert [x["import_status"] for x in second] == ["unknown", "not_attempted", "already_uploaded",
                                                    "not_attempted", "already_uploaded"]
    assert "--retry-unknown" in second[3]["import_error"]
    assert len(sandbox.calls()) == 3

    # The user checked and asks for it: row 2 is sent again, its twins follow it.
    forced = run_cli("run", results_of(again.out), "--api-url", sandbox.url, "--quiet", "--retry-unknown")
    assert forced.code == 0, forced.out + forced.err
    assert statuses(results_of(forced.out)) == ["uploaded", "already_uploaded", "already_uploaded",
                                                "already_uploaded", "already_uploaded"]
    assert len(sandbox.calls()) == 4
