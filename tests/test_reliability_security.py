"""Security: the key never leaks, only loopback gets plain http, redirects are not followed, and whatever a
server says is made safe before it reaches the results CSV or the terminal."""

from __future__ import annotations

import json
import re

import pytest
from faultkit import (
    Audit,
    Conn,
    ScriptedServer,
    check_results_file,
    free_port,
    write_config,
    write_manifest,
)
from runkit import read_results, run_cli

from importer.sandbox import Sandbox

UPLOAD = "/calls/audio"
CANARY = "CANARY-7d3f0b1e-allobrain-key"


def run(url: str, manifest, config, results, *extra, traceback: bool = False):
    first = ["--traceback"] if traceback else []
    return run_cli(*first, "run", manifest, "--config", config, "--api-url", url, "--quiet", "--results", results,
                   *extra)


# --- 10. the key appears nowhere -------------------------------------------------------------------


def test_a_canary_key_appears_nowhere_whatever_goes_wrong(tmp_path, monkeypatch):
    """Found by this suite: a server that echoes the key in an error body ("invalid key ...") had it printed in
    the summary and written to the results CSV, the ledger and --summary-json."""
    monkeypatch.setenv("ALLOBRAIN_API_KEY", CANARY)
    manifest, rows = write_manifest(tmp_path, n=8, agents=2)
    cfg = write_config(tmp_path, workers=2, max_attempts=3, timeout_seconds=0.5,
                       ride_out_seconds=0)  # its refused URLs are error paths to take, not outages to wait out
    echo = f"the key {CANARY} is fine, the request is not"
    outputs: list[str] = []

    def logged(r, what: str) -> None:
        outputs.extend([r.out, r.err])
        assert r.code != 0, f"{what}: every error path should have been taken"

    verbose = ["-v", "--summary-json", tmp_path / "summary.json"]
    with Sandbox(api_key=CANARY, data_dir=tmp_path / "server") as sb:
        # Every error path of a run the key is accepted for: retried, ambiguous, permanent, silent, reset.
        sb.inject("/users/invite", ("status", 500, json.dumps({"detail": echo})))
        sb.inject(UPLOAD, ("status", 422, json.dumps({"detail": [{"loc": ["body", "x"], "msg": echo, "type": "v"}]})),
                  "store_then_500", (503, "0"), "store_then_drop", "hang", "reset_mid_body",
                  ("status", 404, json.dumps({"detail": f"Campaign not found ({echo})"})),
                  ("status", 400, f"<html><pre>{echo}</pre></html>"))
        r = run(sb.url, manifest, cfg, tmp_path / "faults.csv", *verbose, "--log-file", tmp_path / "faults.log",
                traceback=True)
        logged(r, "faults")
        statuses = {x["import_status"] for x in read_results(tmp_path / "faults.csv")}
        assert {"failed", "unknown"} <= statuses
        assert "[redacted]" in (tmp_path / "faults.csv").read_text(encoding="utf-8-sig")

        # The key refused, with a server that names it in its 401.
        sb.inject("/users/invite", ("status", 401, json.dumps({"detail": f"Invalid API key: {CANARY}"})))
        fresh = tmp_path / "auth"  # a ledger of its own, so the agent is invited again
        manifest2, _ = write_manifest(fresh, n=2, agents=1)
        r = run(sb.url, manifest2, write_config(fresh), fresh / "auth.csv", *verbose,
                "--log-file", fresh / "auth.log", traceback=True)
        assert r.code == 3
        logged(r, "auth")
        assert "refused the key" in r.out

    # Transport exceptions: nothing listens.
    r = run(f"http://127.0.0.1:{free_port()}", manifest, cfg, tmp_path / "refused.csv", *verbose,
            "--log-file", tmp_path / "refused.log", traceback=True)
    logged(r, "refused")
    # An unexpected error with --traceback: a log file that cannot be created is one today (see
    # test_reliability_inputs.py::test_unwritable_log_or_summary_paths_are_usage_errors).
    r = run(f"http://127.0.0.1:{free_port()}", manifest, cfg, tmp_path / "tb.csv", "--log-file", tmp_path,
            traceback=True)
    if r.code == 70:
        assert "Traceback" in r.err
    logged(r, "traceback")

    for text in outputs:
        assert CANARY not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") or p.name == "ledger.sqlite3" for p in files)
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), f"the key leaked into {path}"


# --- 11. which URLs are accepted ---------------------------------------------------------------------

REFUSED = [
    "http://example.com",
    "http://localhost:1@evil.example",
    "http://127.0.0.1@evil.example",
    "http://evil.example#@127.0.0.1",
    "http://evil.example\\@127.0.0.1",
    "http://127.0.0.1.evil.example",
    "http://localhost.evil.example",
    "http://[::ffff:8.8.8.8]",
    "http://0.0.0.0:8000",
    "http://10.0.0.1",
    "http://user:secret@127.0.0.1",
    "http://127.0.0.1/?next=http://evil.example",
    "ftp://127.0.0.1",
    "file:///etc/passwd",
    "127.0.0.1:8000",
]


@pytest.mark.parametrize("url", REFUSED)
def test_a_refused_url_is_exit_2_before_any_socket_opens(tmp_path, monkeypatch, url):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", CANARY)
    manifest, _ = write_manifest(tmp_path, n=1, agents=1)
    cfg = write_config(tmp_path)
    with Audit.sockets() as events:
        by_flag = run(url, manifest, cfg, tmp_path / "r.csv")
        (tmp_path / "url.yaml").write_text(f"state_dir: {tmp_path / 'state'}\napi:\n  base_url: {json.dumps(url)}\n")
        by_config = run_cli("run", manifest, "--config", tmp_path / "url.yaml", "--quiet")
    assert events == [], f"a socket was touched: {events[:3]}"
    for r, origin in ((by_flag, "--api-url"), (by_config, "api.base_url")):
        assert r.code == 2, r.out + r.err
        assert r.err.startswith(f"error: {origin}:"), r.err
        assert CANARY not in r.out + r.err
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_urls_are_accepted_over_plain_http(tmp_path, monkeypatch, host):
    bind = "::1" if host == "::1" else "127.0.0.1"
    with Sandbox(host=bind, data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=1, agents=1)
        url = f"http://{'[::1]' if host == '::1' else host}:{sb.port}"
        r = run(url, manifest, write_config(tmp_path), tmp_path / "r.csv")
        assert r.code == 0, r.out + r.err
        assert len(sb.calls()) == 1


def _redirect_to(target: str, status: int, what: str):
    def handler(conn: Conn) -> None:
        while (req := conn.read_request()) is not None:
            conn.read_body(req.length)
            if what in req.path:
                conn.answer(status, b'{"detail": "moved"}', {"Location": target + req.path})
            elif req.path == "/users/invite":
                conn.answer(201, b"{}")
            else:
                conn.answer(200, b'{"id": "here"}')

    return handler


@pytest.mark.parametrize("status, what", [(301, UPLOAD), (302, UPLOAD), (303, UPLOAD), (307, UPLOAD),
                                          (308, UPLOAD), (307, "/users/invite")])
def test_a_redirect_to_another_host_is_never_followed(tmp_path, monkeypatch, status, what):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", CANARY)
    manifest, rows = write_manifest(tmp_path, n=2, agents=1)

    def elsewhere_handler(conn: Conn) -> None:  # would take the call (and the key) if it ever got a request
        if (req := conn.read_request()) is not None:
            conn.read_body(req.length)
            conn.answer(200, b'{"id": "stolen"}')

    with ScriptedServer(elsewhere_handler) as elsewhere, \
            ScriptedServer(_redirect_to(elsewhere.url, status, what)) as api:
        r = run(api.url, manifest, write_config(tmp_path), tmp_path / "r.csv")
        assert elsewhere.hits == 0, "a redirect was followed"
    assert r.code == 1
    lines = check_results_file(tmp_path / "r.csv", rows)
    expected = "agent_failed" if what == "/users/invite" else "failed"
    assert [x["import_status"] for x in lines] == [expected] * 2
    assert f"redirect to {elsewhere.url}{what} not followed" in lines[0]["import_error"]


# --- 12. what a server says is neutralised and truncated ---------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_hostile_server_messages_are_neutralised_and_truncated(tmp_path, monkeypatch):
    manifest, rows = write_manifest(tmp_path, n=7, agents=2)  # agent0: rows 2,4,6,8; agent1: rows 3,5,7
    cfg = write_config(tmp_path, workers=1, agents={"workers": 1})
    huge = "A" * 1_000_000
    with Sandbox(data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        # agent0's invite (the first) is refused with a message built to spoof the terminal
        sb.inject("/users/invite", ("status", 422, json.dumps(
            {"detail": "\x1b[2J\x1b]0;pwned\x07@SUM(1+1)\r\nuploaded: 100%\u202e" + huge})))
        sb.inject(UPLOAD,
                  ("status", 422, json.dumps({"detail": "=cmd|' /C calc'!A0"})),
                  ("status", 400, b"\t-2+3\x1b[31m red \x00\x9b\r\nnext line " + huge.encode()),
                  ("status", 200, json.dumps({"id": '=HYPERLINK("http://evil.example")\x1b[0m'})))
        r = run(sb.url, manifest, cfg, tmp_path / "r.csv")
    assert r.code == 1
    lines = check_results_file(tmp_path / "r.csv", rows)
    assert [x["import_status"] for x in lines[0::2]] == ["agent_failed"] * 4
    agent1 = lines[1::2]
    assert [x["import_status"] for x in agent1] == ["failed", "failed", "uploaded"]
    assert agent1[0]["import_error"] == "'=cmd|' /C calc'!A0"  # a formula, neutralised
    assert agent1[1]["import_error"].startswith("'-2+3 [31m red")  # cleaned, then neutralised
    assert "next line AAAA" in agent1[1]["import_error"]  # one line
    assert agent1[1]["import_error"].endswith("…") and len(agent1[1]["import_error"]) <= 301
    assert agent1[2]["import_call_id"] == "'=HYPERLINK(\"http://evil.example\") [0m"
    for x in lines:
        for column in ("import_error", "import_call_id"):
            assert len(x[column]) <= 500 and not _CONTROL.search(x[column]) and "\n" not in x[column]
            assert not x[column].startswith(("=", "+", "-", "@", "\t", "\r"))
    raw = (tmp_path / "r.csv").read_text(encoding="utf-8-sig")
    assert not _CONTROL.search(raw.replace("\r\n", ""))
    # The terminal shows the invite failure on one short, clean line.
    shown = r.out + r.err
    [line] = [x for x in shown.splitlines() if "inviting agent agent0@example.com failed (HTTP 422: " in x]
    assert "pwned" in line and "@SUM(1+1)" in line and "uploaded: 100%" in line and line.endswith("…)")
    assert not _CONTROL.search(shown), "an escape sequence reached the terminal"
    assert max(len(x) for x in shown.splitlines()) < 600
    assert not any(x.startswith("uploaded: 100%") for x in shown.splitlines()), "a spoofed line"
