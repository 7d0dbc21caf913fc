"""Retries end to end: rate limits, busy servers, ambiguous answers, resets, silence, a server not up yet.

Each test runs the CLI in-process against the real sandbox (or a scripted socket server for faults the
sandbox cannot play) and checks what the server holds, request by request.
"""

from __future__ import annotations

import email.utils
import math
import re
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from faultkit import (
    Conn,
    Request,
    ResetProxy,
    ScriptedServer,
    assert_exactly_once,
    check_results_file,
    free_port,
    invite_then,
    make_big_wav,
    server_fingerprints,
    sha256_of,
    write_config,
    write_manifest,
)
from runkit import CAMPAIGN, read_results, run_cli

from importer.ledger import UNKNOWN, Ledger
from importer.sandbox import Sandbox

UPLOAD = "/calls/audio"


@pytest.fixture
def env_key(monkeypatch, sandbox):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    return sandbox.api_key


def run(url: str, manifest: Path, config: Path, results: Path, *extra: str | Path):
    return run_cli("run", manifest, "--config", config, "--api-url", url, "--quiet", "--results", results, *extra)


def attempts_by_body(sb: Sandbox) -> dict[str, list[dict]]:
    """Upload requests grouped by body hash: the multipart body of a row is the same bytes on every attempt."""
    out: dict[str, list[dict]] = {}
    for q in sb.requests_log():
        if q["path"] == UPLOAD and q["body_sha256"]:
            out.setdefault(q["body_sha256"], []).append(q)
    return out


def at(q: dict) -> float:
    return datetime.fromisoformat(q["received_at"]).timestamp()


def gaps(requests: list[dict]) -> list[float]:
    return [at(b) - at(a) for a, b in zip(requests, requests[1:], strict=False)]


# --- 3. 429 storms and Retry-After -----------------------------------------------------------------


def test_429_storm_with_retry_after_2_is_honoured_by_every_worker(sandbox, env_key, tmp_path):
    manifest, rows = write_manifest(tmp_path, n=3, agents=1)
    # The 3 first attempts, then 2 of the retries. Which rows take those 2 depends on which worker's retry
    # reaches the server first (a worker a few ms ahead gets its 429 back and holds the others 2 s more), so
    # max_attempts leaves room for any share of them and the checks are on what holds whatever the order.
    cfg = write_config(tmp_path, max_attempts=6, workers=3)
    sandbox.inject(UPLOAD, *[(429, "2")] * 5)
    t0 = time.monotonic()
    r = run(sandbox.url, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 0, r.out + r.err
    lines = check_results_file(tmp_path / "r.csv", rows)
    assert_exactly_once(lines, rows, sandbox.calls(), allowed={"uploaded"})
    per_row = attempts_by_body(sandbox)
    assert sum(len(v) for v in per_row.values()) == 8  # 5 refused + 3 accepted: nothing more
    for requests in per_row.values():
        assert len(requests) >= 2  # the 3 first requests are the 3 rows' first attempts: all refused
        assert [q["status"] for q in requests][-1] == 200 and all(q["status"] == 429 for q in requests[:-1])
        assert all(g >= 1.95 for g in gaps(requests)), "Retry-After: 2 was not honoured"
    assert sum(int(x["import_attempts"]) for x in lines) == 8
    assert time.monotonic() - t0 < 30


def test_429_with_an_http_date_retry_after_is_honoured(sandbox, env_key, tmp_path):
    manifest, rows = write_manifest(tmp_path, n=1, agents=1)
    cfg = write_config(tmp_path)
    when = math.ceil(time.time()) + 2  # at least 2 s ahead: the date form has whole seconds
    sandbox.inject(UPLOAD, (429, email.utils.formatdate(when, usegmt=True)))
    r = run(sandbox.url, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 0, r.out + r.err
    [requests] = attempts_by_body(sandbox).values()
    assert [q["status"] for q in requests] == [429, 200]
    assert gaps(requests)[0] >= 1.9
    assert at(requests[1]) >= when - 0.05


def test_429_storm_is_bounded_by_max_attempts_and_the_row_fails_then_reruns(sandbox, env_key, tmp_path):
    manifest, rows = write_manifest(tmp_path, n=1, agents=1)
    cfg = write_config(tmp_path, max_attempts=3)
    sandbox.inject(UPLOAD, *[(429, "0")] * 3)
    r = run(sandbox.url, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 1
    [line] = check_results_file(tmp_path / "r.csv", rows)
    assert (line["import_status"], line["import_http_status"], line["import_attempts"]) == ("failed", "429", "3")
    assert "gave up after 3 attempts" in line["import_error"]
    [requests] = attempts_by_body(sandbox).values()
    assert [q["status"] for q in requests] == [429] * 3 and sandbox.calls() == []
    # The storm has passed: a rerun sends the failed row again, once.
    again = run(sandbox.url, manifest, cfg, tmp_path / "again.csv")
    assert again.code == 0
    assert server_fingerprints(sandbox.calls()) == {rows[0].fingerprint: 1}


@pytest.mark.parametrize("retry_after", ["86400", "date"])
def test_a_huge_retry_after_on_503_is_capped_never_slept(sandbox, env_key, tmp_path, retry_after):
    # (On a 429 the same header is the API's quota: see tests/test_pacing_run.py.)
    manifest, rows = write_manifest(tmp_path, n=1, agents=1)
    cfg = write_config(tmp_path, max_retry_after_seconds=1)
    if retry_after == "date":
        retry_after = email.utils.formatdate(time.time() + 365 * 86400, usegmt=True)
    sandbox.inject(UPLOAD, (503, retry_after), (503, retry_after))
    t0 = time.monotonic()
    r = run(sandbox.url, manifest, cfg, tmp_path / "r.csv")
    assert time.monotonic() - t0 < 15, "the run slept for the server's Retry-After instead of the cap"
    assert r.code == 0, r.out + r.err
    [requests] = attempts_by_body(sandbox).values()
    assert [q["status"] for q in requests] == [503, 503, 200]
    assert all(g >= 0.95 for g in gaps(requests)), "the capped wait (1 s) is still a wait"


# --- 4. 503 for the first requests -----------------------------------------------------------------


def test_503_for_the_first_requests_every_row_once_and_retry_gaps_jittered(sandbox, env_key, tmp_path):
    manifest, rows = write_manifest(tmp_path, n=12, agents=2)
    cfg = write_config(tmp_path, max_attempts=6, workers=6)
    # No Retry-After: the client's own exponential backoff with jitter decides the waits.
    sandbox.inject("/users/invite", *[("status", 503, '{"detail": "warming up"}')] * 2)
    sandbox.inject(UPLOAD, *[("status", 503, '{"detail": "warming up"}')] * 12)
    r = run(sandbox.url, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 0, r.out + r.err
    lines = check_results_file(tmp_path / "r.csv", rows)
    assert_exactly_once(lines, rows, sandbox.calls(), allowed={"uploaded"})
    first_retry_gaps = []
    for requests in attempts_by_body(sandbox).values():
        statuses = [q["status"] for q in requests]
        assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}, statuses  # stored once, at the end
        if statuses[0] == 503:
            first_retry_gaps.append(gaps(requests)[0])
    assert len(first_retry_gaps) >= 6  # the six first requests all got 503
    assert min(first_retry_gaps) >= 0.24  # backoff after a first failure: 0.25-0.5 s
    spread = max(first_retry_gaps) - min(first_retry_gaps)
    assert spread >= 0.05, f"retries in lockstep (gaps {sorted(first_retry_gaps)}): no jitter"


# --- 5. 500/502/504 after the server stored the call -----------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_error_after_storing_is_unknown_and_never_resent(sandbox, env_key, tmp_path, status):
    manifest, rows = write_manifest(tmp_path, n=3, agents=1)
    cfg = write_config(tmp_path, workers=1)
    sandbox.inject(UPLOAD, f"store_then_{status}")
    r = run(sandbox.url, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 1
    lines = check_results_file(tmp_path / "r.csv", rows)
    assert [x["import_status"] for x in lines] == ["unknown", "uploaded", "uploaded"]
    assert (lines[0]["import_http_status"], lines[0]["import_attempts"]) == (str(status), "1")
    assert "--retry-unknown" in lines[0]["import_error"]
    assert server_fingerprints(sandbox.calls()) == {r.fingerprint: 1 for r in rows}  # stored once
    n = len(sandbox.requests_log())
    again = run(sandbox.url, manifest, cfg, tmp_path / "again.csv")
    assert [x["import_status"] for x in check_results_file(tmp_path / "again.csv", rows)] == [
        "unknown", "already_uploaded", "already_uploaded"]
    assert again.code == 1 and len(sandbox.requests_log()) == n, "an unknown row is not resent"
    with Ledger(tmp_path / "state", sandbox.url) as led:
        assert led.counts().get(UNKNOWN) == 1


# --- 6. a connection reset halfway through the body ------------------------------------------------


def _tcp_wmem_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024


def test_reset_halfway_through_the_body_is_resent_and_stored_once_byte_identical(sandbox, env_key, tmp_path):
    # The body must be bigger than what the kernel can buffer (the client's send buffer + the proxy's
    # receive buffer) after the half the proxy reads, so the reset reaches the client while it is sending.
    size = 2 * (_tcp_wmem_max() + 2 * 1024 * 1024)
    wav = make_big_wav(tmp_path / "audio" / "long.wav", size)
    manifest = tmp_path / "calls.csv"
    manifest.write_text("file_path,agent_email,conversation_timestamp,campaign_id\n"
                        f"{wav},agent0@example.com,1750000000,{CAMPAIGN}\n", encoding="utf-8")
    cfg = write_config(tmp_path, workers=1, timeout_seconds=30)
    with ResetProxy(("127.0.0.1", sandbox.port)) as proxy:
        r = run(proxy.url, manifest, cfg, tmp_path / "r.csv", "-v", "--log-file", tmp_path / "run.log")
    assert r.code == 0, r.out + r.err + (tmp_path / "run.log").read_text()
    assert proxy.cut and size // 3 < proxy.cut[0] < size, "the first attempt was cut halfway"
    [line] = read_results(tmp_path / "r.csv")
    assert (line["import_status"], line["import_attempts"]) == ("uploaded", "2")
    assert "before the call was fully sent" in (tmp_path / "run.log").read_text()
    [stored] = sandbox.calls()
    assert stored["sha256"] == sha256_of(wav) and stored["size"] == wav.stat().st_size
    uploads = [q for q in sandbox.requests_log() if q["path"] == UPLOAD]
    assert [q["status"] for q in uploads] == [None, 200]  # the cut one was never answered nor stored
    assert uploads[0]["body_size"] < uploads[1]["body_size"]


# --- 7. a server that accepts the connection and never answers -------------------------------------


def _reads_body_then_hangs(conn: Conn, req: Request) -> bool:
    conn.read_body(req.length)
    conn.hang()
    return False


def _never_reads(conn: Conn, req: Request) -> bool:
    conn.hang()
    return False


_ATTEMPT = re.compile(r"attempt \d+ failed after ([0-9.]+)s")


@pytest.mark.parametrize("server, expect", [(_reads_body_then_hangs, "unknown"), (_never_reads, "failed")],
                         ids=["silent-after-the-body", "never-reads-the-body"])
def test_a_server_that_never_answers_ends_every_attempt_and_leaves_no_thread(tmp_path, monkeypatch, server,
                                                                             expect):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "k")
    manifest, rows = write_manifest(tmp_path, n=3, agents=1)
    if server is _never_reads:  # too big for the kernel's buffers: the send itself stalls
        for row in rows:
            make_big_wav(row.file, 2 * (_tcp_wmem_max() + 2 * 1024 * 1024))
    cfg = write_config(tmp_path, workers=3, max_attempts=2, timeout_seconds=0.5, connect_timeout_seconds=0.5,
                       ride_out_seconds=0)  # the attempt budget is under test, not riding out an outage
    before = set(threading.enumerate())
    t0 = time.monotonic()
    with ScriptedServer(invite_then(server), rcvbuf=64 * 1024) as silent:
        r = run(silent.url, manifest, cfg, tmp_path / "r.csv", "-v", "--log-file", tmp_path / "run.log")
        elapsed = time.monotonic() - t0
        leftover = [t for t in threading.enumerate() if t not in before and not t.name.startswith("scripted")]
    assert elapsed < 15, "the run did not end"
    assert not leftover, f"threads left running after the run: {leftover}"
    assert r.code == 1, r.out + r.err
    lines = check_results_file(tmp_path / "r.csv", rows)
    assert [x["import_status"] for x in lines] == [expect] * 3
    durations = [float(s) for s in _ATTEMPT.findall((tmp_path / "run.log").read_text())]
    assert len(durations) == (3 if expect == "unknown" else 6)  # ambiguous: one attempt; stalled: retried
    assert max(durations) < 5, f"an attempt outlived its 0.5 s timeout: {durations}"
    if expect == "unknown":
        assert all("read timeout" in x["import_error"] for x in lines)
    else:
        assert all("gave up after 2 attempts" in x["import_error"] for x in lines)


# --- 8. connection refused, then the server comes up -----------------------------------------------


def test_connection_refused_until_the_server_comes_up_then_every_row_once(tmp_path, monkeypatch):
    from importer.sandbox import SANDBOX_API_KEY

    monkeypatch.setenv("ALLOBRAIN_API_KEY", SANDBOX_API_KEY)
    manifest, rows = write_manifest(tmp_path, n=4, agents=2)
    cfg = write_config(tmp_path, max_attempts=8, workers=2)
    port = free_port()
    late = Sandbox(port=port, data_dir=tmp_path / "server")
    timer = threading.Timer(1.0, late.start)
    timer.start()
    try:
        r = run(f"http://127.0.0.1:{port}", manifest, cfg, tmp_path / "r.csv", "-v", "--log-file",
                tmp_path / "run.log")
        timer.join()
        assert r.code == 0, r.out + r.err
        assert "connection refused" in (tmp_path / "run.log").read_text()
        lines = check_results_file(tmp_path / "r.csv", rows)
        assert_exactly_once(lines, rows, late.calls(), allowed={"uploaded"})
        assert len(late.calls()) == 4 and len(late.agents()) == 2
    finally:
        timer.cancel()
        late.stop()

