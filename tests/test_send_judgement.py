"""What reached the server, judged on the wire (TCP_INFO), a write timeout of its own, and outages ridden out.

Real sockets on loopback: a scripted server that lets the client fill its kernel buffers and then resets,
one that stalls reading for longer than the connect timeout, and the sandbox stopped and started again.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

import pytest
from faultkit import (
    assert_exactly_once,
    check_results_file,
    free_port,
    invite_then,
    make_big_wav,
    wait_until,
    write_config,
    write_manifest,
)
from runkit import run_cli

from importer.sandbox import Sandbox
from importer.transport import parse_tcp_info, read_tcp_info

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is read on Linux only")


def run(url: str, manifest, cfg, tmp_path, *extra):
    return run_cli("run", manifest, "--config", cfg, "--api-url", url, "--results", tmp_path / "r.csv",
                   "--log-file", tmp_path / "run.log", "--summary-json", tmp_path / "s.json", *extra)


def test_a_short_tcp_info_is_not_read():
    assert parse_tcp_info(b"\x00" * 147) is None  # an old kernel: the caller keeps the cautious rule


@linux_only
def test_tcp_info_counts_what_the_peer_acknowledged_and_what_never_left():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        with client, peer:
            client.sendall(b"x" * 1000)
            assert wait_until(lambda: read_tcp_info(client).acked == 1001)  # the SYN counts as one
            client.setblocking(False)
            with pytest.raises(BlockingIOError):
                while True:
                    client.send(b"y" * 65536)
            assert read_tcp_info(client).notsent > 0  # queued in our kernel, never transmitted


@linux_only
def test_tcp_info_says_what_the_connection_sees_of_the_path():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        with client, peer:
            for _ in range(20):  # a request and an answer, 20 times: round trips measured on loopback
                client.sendall(b"x" * 20_000)
                got = 0
                while got < 20_000:
                    got += len(peer.recv(65536))
                peer.sendall(b"ok")
                assert client.recv(2) == b"ok"
            info = read_tcp_info(client)
            assert 0 < info.min_rtt < 0.1 and 0 < info.rtt < 0.1  # seconds: loopback is quick
            assert info.segs_out >= 20 and info.retrans == 0  # nothing lost on loopback


def _upload_then(first_attempt):
    attempts = []

    def upload(conn, req):
        attempts.append(req)
        if len(attempts) == 1:
            return first_attempt(conn, req)
        conn.read_body(req.length)
        conn.answer(200, b'{"id": "call-1"}')
        return True

    return upload, attempts


def _one_big_upload(tmp_path, monkeypatch, upload, nbytes: int, **config) -> dict[str, str]:
    """One row of `nbytes` sent to a scripted server (a 4 KB receive buffer) whose uploads `upload` answers;
    the run must end 0; returns the row's results line."""
    from faultkit import ScriptedServer

    manifest, rows = write_manifest(tmp_path, n=1, agents=1)
    make_big_wav(tmp_path / rows[0].file, nbytes)
    cfg = write_config(tmp_path, workers=1, max_attempts=3, **config)
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "k")
    with ScriptedServer(invite_then(upload), rcvbuf=4096) as srv:
        r = run(srv.url, manifest, cfg, tmp_path, "--quiet")
    assert r.code == 0, r.out + r.err
    (line,) = check_results_file(tmp_path / "r.csv", rows)
    return line


@linux_only
def test_a_reset_while_the_body_sits_unsent_in_our_kernel_is_retried_not_unknown(tmp_path, monkeypatch):
    def reset_after_the_client_handed_everything(conn, req):
        time.sleep(1.0)  # the 1 MB body now sits in the client's socket buffer, the server read none of it
        conn.reset()
        return False

    upload, attempts = _upload_then(reset_after_the_client_handed_everything)
    line = _one_big_upload(tmp_path, monkeypatch, upload, 1_000_000)
    assert (line["import_status"], line["import_attempts"]) == ("uploaded", "2")
    log = (tmp_path / "run.log").read_text()
    assert "never transmitted (TCP_INFO): the server cannot hold the whole call" in log
    assert len(attempts) == 2


def test_sending_gets_the_write_timeout_not_the_connect_timeout(tmp_path, monkeypatch):
    def stall_then_read(conn, req):
        time.sleep(2.5)  # longer than the 1 s connect timeout, shorter than the 20 s write timeout
        conn.read_body(req.length)
        conn.answer(200, b'{"id": "call-1"}')
        return True

    attempts = []

    def upload(conn, req):
        attempts.append(req)
        return stall_then_read(conn, req)

    # 16 MB: more than both kernels buffer, so the send itself blocks while the server stalls
    line = _one_big_upload(tmp_path, monkeypatch, upload, 16_000_000, connect_timeout_seconds=1, timeout_seconds=20)
    assert (line["import_status"], line["import_attempts"]) == ("uploaded", "1")
    assert len(attempts) == 1


def test_an_api_outage_is_ridden_out_said_so_and_counted_honestly(tmp_path, monkeypatch):
    """The sandbox goes away for 5 s (refused connections) and comes back empty (it forgot its agents)."""
    manifest, rows = write_manifest(tmp_path, n=80, agents=4)
    cfg = write_config(tmp_path, max_attempts=3)  # 3 attempts would last 1-2 s: riding out does the rest
    port = free_port()
    first = Sandbox(port=port, data_dir=tmp_path / "a", latency_ms=30).start()
    second = Sandbox(port=port, data_dir=tmp_path / "b", latency_ms=30)
    monkeypatch.setenv("ALLOBRAIN_API_KEY", first.api_key)

    def outage():
        wait_until(lambda: len(first.calls()) >= 20, timeout=60)
        first.stop()
        time.sleep(5)
        second.start()

    t = threading.Thread(target=outage)
    t.start()
    try:
        r = run(first.url, manifest, cfg, tmp_path)  # progress as plain lines: stderr is not a terminal
    finally:
        t.join()
        second.stop()
    assert r.code in (0, 1), r.out + r.err
    lines = check_results_file(tmp_path / "r.csv", rows)
    by_status = assert_exactly_once(lines, rows, first.calls() + second.calls(), allowed={"uploaded", "unknown"})
    assert len(by_status["uploaded"]) >= 80 - 4  # only rows cut off inside the server may be unknown
    assert "API not answering for" in r.err and "retrying for up to 120s" in r.err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["counts"]["failed"] == 0
    # The new server knew none of the agents: each was invited again, and the summary says so.
    assert summary["agents"]["reinvited"] == len(second.agents()) >= 1
    assert summary["agents"]["invited"] == 4
    assert f"agents: {len(second.agents())} invited again (the API no longer knew them)" in r.out
