"""network.py and tls.py alone: proxy variables and NO_PROXY, proxy credentials kept out of logs, the session
reading the environment once, a TLS failure not retried by the client, and the wording of what follows."""

# The fixtures come from tlskit: pytest passes them by name, which ruff reads as a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import warnings
from pathlib import Path

import pytest
from proxykit import ConnectProxy
from tlskit import KEY, clean_env, https_sandbox, pki  # noqa: F401

from importer import network, tls
from importer.client import ApiClient
from importer.errors import NetworkSetupError, UsageError
from importer.report import next_steps
from importer.runner import RunSummary

URL = "https://api.qm.allobrain.com"


# --- which proxy ------------------------------------------------------------------------------------------


def test_https_proxy_lowercase_first_then_all_proxy() -> None:
    env = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128", "ALL_PROXY": "http://all:1"}
    assert network.proxy_for(URL, env).shown == "lower:3128"
    assert network.proxy_for(URL, env).setting == "https_proxy"
    assert network.proxy_for(URL, {"ALL_PROXY": "all.corp:8080"}).url == "http://all.corp:8080"
    assert network.proxy_for(URL, {"HTTP_PROXY": "http://p:1"}) is None, "an https URL does not use HTTP_PROXY"
    assert network.proxy_for("http://127.0.0.1:8000", {"HTTP_PROXY": "http://p:1"}).shown == "p:1"
    assert network.proxy_for(URL, {"HTTPS_PROXY": "  "}) is None
    assert network.proxy_for(URL, {}) is None


def test_a_proxy_we_cannot_use_is_named_without_its_password() -> None:
    with pytest.raises(UsageError) as e:
        network.proxy_for(URL, {"HTTPS_PROXY": "socks5://bob:hunter22@p:1080"})
    assert str(e.value).startswith("HTTPS_PROXY: write the proxy as http://host:port") and "hunter22" not in str(e.value)
    with pytest.raises(UsageError) as e:
        network.proxy_for(URL, {"https_proxy": "http://bob:hunter22@p:port"})
    assert str(e.value).startswith("https_proxy: the proxy's port is not a number") and "hunter22" not in str(e.value)


@pytest.mark.parametrize(("no_proxy", "host", "port", "bypass"), [
    ("*", "api.qm.allobrain.com", None, True),
    ("allobrain.com", "api.qm.allobrain.com", None, True),
    (".allobrain.com", "api.qm.allobrain.com", None, True),
    ("*.allobrain.com", "api.qm.allobrain.com", None, True),
    ("brain.com", "api.qm.allobrain.com", None, False),  # a suffix only on a label boundary
    ("api.qm.allobrain.com:443", "api.qm.allobrain.com", 443, True),
    ("api.qm.allobrain.com:8443", "api.qm.allobrain.com", 443, False),
    ("intranet, 127.0.0.0/8", "127.0.0.1", 8000, True),
    ("10.0.0.0/8", "127.0.0.1", 8000, False),
    ("::1", "[::1]", 8000, True),
    ("LOCALHOST", "localhost", None, True),
    ("", "localhost", None, False),
])
def test_no_proxy(no_proxy: str, host: str, port: int | None, bypass: bool) -> None:
    assert network.bypassed(host, port, no_proxy) is bypass


def test_no_proxy_is_honoured_by_proxy_for() -> None:
    env = {"HTTPS_PROXY": "http://p:1", "no_proxy": "qm.allobrain.com"}
    assert network.proxy_for(URL, env) is None
    assert network.proxy_for("https://other.example", env).shown == "p:1"


def test_proxy_secrets_as_typed_and_decoded() -> None:
    env = {"HTTPS_PROXY": "http://dom%5Cbob:p%40ss-word@p:1", "http_proxy": "http://p:2"}
    assert set(network.proxy_secrets(env)) == {"dom%5Cbob", "dom\\bob", "p%40ss-word", "p@ss-word"}


def test_the_log_never_shows_proxy_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from importer.cli.logs import setup_logging

    monkeypatch.setenv("HTTPS_PROXY", "http://bobby-proxy:hunter22-x@p:1")
    log = tmp_path / "log.txt"
    setup_logging(argparse.Namespace(verbose=False, log_file=log), KEY)
    logger = logging.getLogger("importer.test")
    logger.info("proxy said %s with key %s", "http://bobby-proxy:hunter22-x@p:1", KEY)
    try:
        raise RuntimeError("hunter22-x")
    except RuntimeError:
        logger.exception("boom")
    for h in logging.getLogger("importer").handlers:
        h.flush()
    text = log.read_text()
    assert "hunter22-x" not in text and "bobby-proxy" not in text and KEY not in text
    assert text.count("[redacted]") >= 3


# --- the session reads the environment once -------------------------------------------------------------


def test_a_session_keeps_the_proxy_it_started_with(https_sandbox, pki, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        session = network.make_session(sb.url, str(pki.ca_pem))
        monkeypatch.delenv("HTTPS_PROXY")  # changed after the session was made: not seen by it
        for _ in range(2):
            r = session.get(sb.url + "/_sandbox/agents", headers={"x-api-key": KEY, "Connection": "close"})
            assert r.status_code == 200
        session.close()
        assert len(proxy.connects) == 2
        assert network.make_session(sb.url, str(pki.ca_pem)).proxies == {}, "a new session reads the new value"


def test_verify_false_cannot_turn_checks_off(https_sandbox) -> None:
    sb = https_sandbox("good")
    session = network.make_session(sb.url)
    import requests

    with pytest.raises(requests.exceptions.SSLError):
        session.get(sb.url + "/", verify=False)


# --- a TLS failure in the client: classified, not retried ----------------------------------------------------


def test_the_client_does_not_retry_a_tls_failure(https_sandbox) -> None:
    sb = https_sandbox("good")
    client = ApiClient(sb.url, KEY, max_attempts=6)
    try:
        result = client.invite("a@example.com", "A")
    finally:
        client.close()
    assert result.attempts == 1 and sb.tls_handshakes == 1
    assert result.setup_problem is not None and result.setup_problem.kind == "untrusted"
    assert result.message == result.setup_problem.line


def test_a_tls_version_older_than_1_2_is_named(pki) -> None:
    chain, key = pki.certs["good"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn, pytest.raises(ssl.SSLError):
            ctx.wrap_socket(conn, server_side=True)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with pytest.raises(NetworkSetupError) as e:
        network.preflight(f"https://127.0.0.1:{port}", ca_bundle=str(pki.ca_pem), environ={})
    t.join(5)
    server.close()
    assert e.value.problem.kind == "tls_version"
    assert str(e.value) == (
        f"cannot connect securely to the API at 127.0.0.1:{port}: it offers only TLS versions older than 1.2 "
        "(TLSV1_ALERT_PROTOCOL_VERSION); fix: the server (or the proxy that inspects TLS) must offer TLS 1.2 or "
        "later; no setting here allows older versions")


def test_preflight_leaves_a_refused_connection_to_the_run() -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    network.preflight(f"https://127.0.0.1:{port}", environ={}, timeout=2)  # no exception: the run's guards decide


def test_the_summary_names_the_setting_after_a_tls_stop(tmp_path: Path) -> None:
    problem = tls.ConnectProblem("untrusted", "api.qm.allobrain.com", "cannot connect securely ...",
                                 "put the CA in api.ca_bundle")
    s = RunSummary(tmp_path / "r.csv", {"not_attempted": 3, "agent_failed": 2}, 5, halted=problem.reason,
                   setup_problem=problem)
    assert next_steps(s, "allobrain-import run r.csv") == [
        "next (api.qm.allobrain.com): put the CA in api.ca_bundle; then rerun what is left: allobrain-import run r.csv"]


def test_the_sandbox_needs_both_tls_files(tmp_path: Path, pki) -> None:
    from runkit import run_cli

    chain, _ = pki.certs["good"]
    r = run_cli("sandbox", "--port", "65000", "--tls-cert", chain)
    assert r.code == 2 and r.err == "error: sandbox: --tls-cert and --tls-key go together: give both (PEM files)\n"
    r = run_cli("sandbox", "--port", "65000", "--tls-cert", chain, "--tls-key", chain)
    assert r.code == 2 and r.err.startswith(f"error: sandbox: cannot load the TLS certificate {chain} with the key")


def test_the_preflight_names_any_https_endpoint(https_sandbox) -> None:
    """Recording sources (a later issue) get the same classification, in their own words."""
    sb = https_sandbox("expired")
    with pytest.raises(NetworkSetupError) as e:
        network.preflight(sb.url, environ={}, what="the recording source", url_setting="files.root")
    assert str(e.value).startswith(f"cannot connect securely to the recording source at 127.0.0.1:{sb.port}: its "
                                   "certificate is not trusted")  # not trusted before expiry is even checked
    assert sb.tls_handshakes == 1


def test_a_proxy_that_cannot_reach_the_api_is_left_to_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """502 to the CONNECT: the API is down behind the proxy, which retries and the reachability guard handle."""
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with ConnectProxy() as proxy:
        network.preflight(f"https://127.0.0.1:{port}", environ={"HTTPS_PROXY": proxy.url}, timeout=2)
    assert proxy.connects == [(f"127.0.0.1:{port}", True)]
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = ApiClient(f"https://127.0.0.1:{port}", KEY, max_attempts=2, rng=random.Random(1))
        try:
            result = client.invite("a@example.com", "A")
        finally:
            client.close()
    assert result.setup_problem is None and result.attempts == 2 and len(proxy.connects) == 2
    assert result.message == "gave up after 2 attempts: the proxy could not reach the API"
