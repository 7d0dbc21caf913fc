"""Pacing end to end: real runs of the CLI against the real sandbox with `--daily-quota` and `--rate-limit`,
sending hours computed from the real clock, `--wait`, and Ctrl-C during a wait.

No timing is asserted (a shared machine): what the server received, the results file, the exit code and the
words the user reads. The bandwidth cap's accuracy is measured by benchmarks/bench_pacing.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from faultkit import child_env, server_fingerprints, wait_until, write_manifest
from runkit import read_results, run_cli

from importer.client import ApiClient
from importer.config import Config
from importer.manifest import load_manifest, validate_manifest
from importer.pacing import DAY, ByteBucket
from importer.sandbox import Sandbox

UPLOAD = "/calls/audio"
ZONE = "Europe/Paris"


def config(folder: Path, **upload) -> Path:
    data = {"state_dir": str(folder / "state"), "manifest": {"timezone": ZONE},
            "upload": {"max_attempts": 4, **upload}}
    path = folder / "pacing.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(sb: Sandbox, manifest: Path, cfg: Path, results: Path, *extra: str | Path):
    return run_cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--results", results,
                   "--summary-json", results.with_suffix(".json"), *extra)


def uploads(sb: Sandbox) -> list[dict]:
    return [q for q in sb.requests_log() if q["path"] == UPLOAD]


def summary(results: Path) -> dict:
    return json.loads(results.with_suffix(".json").read_text())


def window(opens_in: float, lasts: float = 3600) -> str:
    """Sending hours computed from the real clock: opening `opens_in` seconds from now (negative: open)."""
    now = datetime.now(ZoneInfo(ZONE))
    start, end = now + timedelta(seconds=opens_in), now + timedelta(seconds=opens_in + lasts)
    return f"{start:%H:%M:%S}-{end:%H:%M:%S}"


@pytest.fixture
def quota_sandbox(tmp_path):
    def make(**kw) -> Sandbox:
        sb = Sandbox(data_dir=tmp_path / f"server{len(made)}", **kw).start()
        made.append(sb)
        return sb

    made: list[Sandbox] = []
    yield make
    for sb in made:
        sb.stop()


def test_max_per_day_matching_the_servers_quota_sends_exactly_the_quota_and_never_trips_it(quota_sandbox, tmp_path,
                                                                                           monkeypatch):
    sb = quota_sandbox(daily_quota=5, rate_limit=20)
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
    manifest, rows = write_manifest(tmp_path, n=9, agents=2)
    cfg = config(tmp_path, workers=4, max_per_day=5, max_per_second=20)
    r = run(sb, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 1, r.out + r.err
    lines = read_results(tmp_path / "r.csv")
    assert [x["import_status"] for x in lines].count("uploaded") == 5 == len(sb.calls())
    held = [x for x in lines if x["import_status"] == "not_attempted"]
    assert len(held) == 4 and all(x["import_attempts"] == "0" for x in held)
    assert all(x["import_error"].startswith("daily quota reached: 5 uploads in 24 h; next slot at ") for x in held)
    assert [q for q in sb.requests_log() if q["status"] == 429] == [], "the tool tripped the server's quota"
    assert len(uploads(sb)) == 5
    # The summary says when to rerun and with what; --summary-json gives schedulers the slot.
    assert "STOPPED SENDING: daily quota reached: 5 uploads in 24 h; next slot at " in r.out
    assert "next: rerun what is left at or after " in r.out and f"allobrain-import run {tmp_path / 'r.csv'}" in r.out
    s = summary(tmp_path / "r.csv")
    first_accepted = min(datetime.fromisoformat(c["received_at"]).timestamp() for c in sb.calls())
    slot = datetime.fromisoformat(s["next_slot"])
    assert slot.utcoffset() is not None and first_accepted + DAY - 1 <= slot.timestamp() <= first_accepted + DAY + 5
    assert s["exit_code"] == 1 and s["paused"].startswith("daily quota reached")

    # A rerun before the next slot sends nothing at all, and says the same.
    before = len(sb.requests_log())
    again = run(sb, tmp_path / "r.csv", cfg, tmp_path / "again.csv")
    assert again.code == 1
    assert len(sb.requests_log()) == before, "a rerun before the next slot must send nothing"
    statuses = [x["import_status"] for x in read_results(tmp_path / "again.csv")]
    assert statuses.count("already_uploaded") == 5 and statuses.count("not_attempted") == 4
    again_slot = datetime.fromisoformat(summary(tmp_path / "again.csv")["next_slot"])
    assert abs(again_slot.timestamp() - slot.timestamp()) <= 2  # the same slot (found to the second each time)


def test_the_servers_own_quota_stops_the_run_after_at_most_one_429_per_worker(quota_sandbox, tmp_path, monkeypatch):
    sb = quota_sandbox(daily_quota=3)
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
    manifest, rows = write_manifest(tmp_path, n=20, agents=2)
    workers = 4
    r = run(sb, manifest, config(tmp_path, workers=workers), tmp_path / "r.csv")
    assert r.code == 1, r.out + r.err
    lines = read_results(tmp_path / "r.csv")
    counts = {s: [x["import_status"] for x in lines].count(s) for s in ("uploaded", "failed", "not_attempted")}
    assert counts == {"uploaded": 3, "failed": 0, "not_attempted": 17}, counts
    refused = [q for q in uploads(sb) if q["status"] == 429]
    assert 1 <= len(refused) <= workers, f"a retry storm: {len(refused)} answers 429 for {workers} workers"
    assert len(uploads(sb)) == 3 + len(refused)
    held = [x for x in lines if x["import_status"] == "not_attempted"]
    assert all("the API's quota is reached (HTTP 429: Daily quota of 3 uploads reached" in x["import_error"]
               and "it accepts calls again at " in x["import_error"] for x in held)
    assert summary(tmp_path / "r.csv")["next_slot"] is not None
    # No row was failed for it: the ledger holds them as not taken, so a rerun (once the quota allows) sends them.
    assert server_fingerprints(sb.calls()) == {row.fingerprint: 1 for row in rows if
                                               row.row in {int(x["import_row"]) for x in lines
                                                           if x["import_status"] == "uploaded"}}


def test_a_429_beyond_max_retry_after_is_a_quota_and_with_wait_the_row_is_sent_after_it(sandbox, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    manifest, rows = write_manifest(tmp_path, n=2, agents=1)
    cfg = config(tmp_path, workers=1, max_retry_after_seconds=1)
    sandbox.inject(UPLOAD, (429, "86400"))
    r = run(sandbox, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 1
    lines = read_results(tmp_path / "r.csv")
    assert [(x["import_status"], x["import_http_status"]) for x in lines] == [("not_attempted", "429"),
                                                                              ("not_attempted", "")]
    assert [q["status"] for q in uploads(sandbox)] == [429], "a quota answer is not retried"
    # With --wait, a quota that frees in 2 s (beyond the 1 s cap) is waited for, then the call is sent again.
    sandbox.inject(UPLOAD, (429, "2"))
    again = run(sandbox, manifest, cfg, tmp_path / "again.csv", "--wait")
    assert again.code == 0, again.out + again.err
    assert [q["status"] for q in uploads(sandbox)] == [429, 429, 200, 200]
    assert "waiting (Ctrl-C stops): the API's quota is reached (HTTP 429" in again.err
    assert server_fingerprints(sandbox.calls()) == {row.fingerprint: 1 for row in rows}


def test_outside_sending_hours_nothing_is_sent(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    manifest, rows = write_manifest(tmp_path, n=4, agents=2)
    hours = window(opens_in=2 * 3600)
    r = run(sandbox, manifest, config(tmp_path, hours=hours), tmp_path / "r.csv")
    assert r.code == 1, r.out + r.err
    assert sandbox.requests_log() == [], "outside sending hours nothing is sent, not even an invite"
    lines = read_results(tmp_path / "r.csv")
    assert all(x["import_status"] == "not_attempted" and x["import_error"].startswith(
        "outside sending hours; they open at ") and hours in x["import_error"] for x in lines)
    opens = datetime.fromisoformat(summary(tmp_path / "r.csv")["next_slot"])
    assert opens.strftime("%H:%M:%S") == hours.split("-")[0]
    assert "STOPPED SENDING: outside sending hours" in r.out


def test_with_wait_a_window_opening_in_seconds_is_waited_for_then_everything_goes(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    manifest, rows = write_manifest(tmp_path, n=4, agents=2)
    hours = window(opens_in=4)  # a margin for a loaded machine: the run must reach the gate before it opens
    opens = datetime.combine(datetime.now(ZoneInfo(ZONE)).date(), datetime.strptime(hours[:8], "%H:%M:%S").time(),
                             ZoneInfo(ZONE))
    if opens.timestamp() < time.time() - 3600:  # the window opens after midnight
        opens += timedelta(days=1)
    r = run(sandbox, manifest, config(tmp_path, hours=hours, wait=True), tmp_path / "r.csv")
    assert r.code == 0, r.out + r.err
    assert "uploading calls: waiting (Ctrl-C stops): outside sending hours; they open at " in r.err, r.err
    assert server_fingerprints(sandbox.calls()) == {row.fingerprint: 1 for row in rows}
    first = min(datetime.fromisoformat(q["received_at"]).timestamp() for q in sandbox.requests_log())
    assert first >= opens.timestamp(), "a request left before the sending hours opened"
    assert summary(tmp_path / "r.csv")["next_slot"] is None


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_ends_a_long_wait_at_once_with_complete_results(sandbox, tmp_path, sig, code):
    manifest, rows = write_manifest(tmp_path, n=3, agents=1)
    cfg = config(tmp_path, hours=window(opens_in=3 * 3600))
    cmd = [sys.executable, "-m", "importer", "run", str(manifest), "--config", str(cfg), "--api-url", sandbox.url,
           "--results", str(tmp_path / "r.csv"), "--wait"]
    child = subprocess.Popen(cmd, env=child_env(sandbox.api_key), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(child.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: any("waiting (Ctrl-C stops)" in line for line in seen), timeout=60), seen
    finally:
        child.send_signal(sig)
    try:
        child.wait(60)  # a bound, not a measure: a wait that ignores the signal would last 3 hours
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    out = child.stdout.read()
    reader.join(10)
    assert child.returncode == code, out + "".join(seen)
    assert sandbox.requests_log() == []
    lines = read_results(tmp_path / "r.csv")
    assert [x["import_status"] for x in lines] == ["not_attempted"] * 3
    assert "INTERRUPTED" in out


def test_the_byte_bucket_is_paid_for_every_byte_of_the_body_as_it_streams(sandbox, tmp_path):
    """The cap sits in the read path: every slice handed to the socket is booked, none bigger than a read."""
    manifest, rows = write_manifest(tmp_path, n=1, agents=1, seconds=30)  # 480 kB
    sandbox.add_agent(rows[0].email)
    slices: list[int] = []
    bucket = ByteBucket(1000.0)  # 1 GB/s: never waits here; the slices are what is checked

    def take(n: int) -> float:
        slices.append(n)
        return bucket.take(n)

    call = validate_manifest(load_manifest(manifest, Config()), Config()).calls[0]  # the real row, as a run has it
    client = ApiClient(sandbox.url, sandbox.api_key, bandwidth=take)
    try:
        result = client.upload(call)
    finally:
        client.close()
    assert result.http_status == 200
    [request] = uploads(sandbox)
    assert sum(slices) == request["body_size"] and len(slices) > 20
    assert max(slices) <= 64 * 1024
