"""HTTPS as companies run it, end to end on loopback: real certificates (trustme), the sandbox serving HTTPS,
a real CONNECT proxy thread (proxykit). Every failure: exit 2, one exact line, no call stored, no retry storm.
"""

# The fixtures come from tlskit: pytest passes them by name, which ruff reads as a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest
from proxykit import ConnectProxy
from runkit import read_results, run_cli, write_config, write_manifest
from tlskit import KEY, PROXY_PASSWORD, Pki, clean_env, https_sandbox, pki  # noqa: F401

from importer.sandbox import Sandbox


def _config(tmp_path: Path, ca_bundle: str | None = None) -> Path:
    extra = {"api": f"\n  ca_bundle: {ca_bundle}"} if ca_bundle else {}
    return write_config(tmp_path, **extra)


def _run(tmp_path: Path, config: Path, url: str, *more: str):
    manifest = write_manifest(tmp_path, n=6, agents=2)
    results = tmp_path / "out" / "results.csv"
    r = run_cli("run", manifest, "--config", config, "--api-url", url, "--quiet", "--workers", "4",
                "--results", results, *more)
    return r, results


# --- trust ------------------------------------------------------------------------------------------------


def test_a_company_ca_in_api_ca_bundle_is_trusted(tmp_path: Path, pki: Pki, https_sandbox) -> None:
    sb = https_sandbox("good")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(pki.ca_pem.read_bytes())
    config = _config(tmp_path, "certs/ca.pem")  # relative: read from the config file's folder
    r, results = _run(tmp_path, config, f"https://localhost:{sb.port}")
    assert r.code == 0, r.err
    assert len(sb.calls()) == 6
    assert results.exists()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_a_ca_bundle_from_the_environment_is_trusted(tmp_path: Path, pki: Pki, https_sandbox,
                                                     monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    sb = https_sandbox("good")
    monkeypatch.setenv(variable, str(pki.ca_pem))
    r, _ = _run(tmp_path, _config(tmp_path), sb.url)
    assert r.code == 0, r.err
    assert len(sb.calls()) == 6


def _assert_stopped_before_any_call(r, results: Path, sb: Sandbox, line: str) -> None:
    assert r.code == 2
    assert r.err == f"error: {line}\n"  # one line, and nothing else on stderr
    assert sb.calls() == [] and sb.agents() == [] and sb.requests_log() == []
    assert not results.exists(), "no results file: nothing was attempted"
    assert sb.tls_handshakes == 1, "one handshake (the preflight), not one per attempt per worker"


UNTRUSTED_FIX = ("fix: put the certificate of the CA that signed it (a PEM file; your IT team has it when a company "
                 "proxy inspects TLS) in api.ca_bundle, or point REQUESTS_CA_BUNDLE at it")


def test_an_unknown_ca_stops_the_run_in_one_line(tmp_path: Path, pki: Pki, https_sandbox) -> None:
    sb = https_sandbox("good")
    r, results = _run(tmp_path, _config(tmp_path), sb.url)
    _assert_stopped_before_any_call(r, results, sb, (
        f"cannot connect securely to the API at 127.0.0.1:{sb.port}: its certificate is not trusted: it is signed "
        f"by an unknown authority (checked against the default CAs); {UNTRUSTED_FIX}"))


def test_the_wrong_ca_bundle_names_what_was_checked(tmp_path: Path, pki: Pki, https_sandbox,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca_pem))
    r, results = _run(tmp_path, _config(tmp_path, str(pki.other_ca_pem)), sb.url)
    _assert_stopped_before_any_call(r, results, sb, (
        f"cannot connect securely to the API at 127.0.0.1:{sb.port}: its certificate is not trusted: it is signed "
        f"by an unknown authority (checked against REQUESTS_CA_BUNDLE ({pki.other_ca_pem}) and api.ca_bundle "
        f"({pki.other_ca_pem})); {UNTRUSTED_FIX}"))


def test_an_expired_certificate_stops_the_run_in_one_line(tmp_path: Path, pki: Pki, https_sandbox) -> None:
    sb = https_sandbox("expired")
    r, results = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), sb.url)
    _assert_stopped_before_any_call(r, results, sb, (
        f"cannot connect securely to the API at 127.0.0.1:{sb.port}: its certificate has expired; fix: check this "
        "machine's date and time; if they are right, the certificate must be renewed by whoever runs that server "
        "(or the company proxy)"))


def test_a_certificate_for_another_host_stops_the_run_in_one_line(tmp_path: Path, pki: Pki, https_sandbox) -> None:
    sb = https_sandbox("other_host")
    r, results = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), f"https://localhost:{sb.port}")
    _assert_stopped_before_any_call(r, results, sb, (
        f"cannot connect securely to the API at localhost:{sb.port}: its certificate is for another host name, "
        "not localhost; fix: check the host name in api.base_url (or --api-url): use the name the certificate was "
        "issued for"))


def test_https_to_a_plain_http_port_says_so(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.api_key = KEY
    r, results = _run(tmp_path, _config(tmp_path), f"https://127.0.0.1:{sandbox.port}")
    assert r.code == 2
    assert r.err == (f"error: cannot connect securely to the API at 127.0.0.1:{sandbox.port}: the connection closed "
                     "during the TLS handshake (UNEXPECTED_EOF_WHILE_READING); fix: check the port in api.base_url (or "
                     "--api-url) (a plain http:// port, or a firewall that cuts TLS, does this)\n")
    assert sandbox.calls() == [] and not results.exists()


def test_a_ca_bundle_that_is_not_pem_is_a_config_error(tmp_path: Path, https_sandbox) -> None:
    sb = https_sandbox("good")
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    r, _ = _run(tmp_path, _config(tmp_path, "ca.pem"), sb.url)
    assert r.code == 2
    assert r.err.startswith(f"error: api.ca_bundle: {tmp_path / 'ca.pem'} is not a readable PEM file of CA "
                            "certificates")
    assert sb.tls_handshakes == 0


def test_a_missing_ca_bundle_is_named_by_validate_too(tmp_path: Path) -> None:
    config = _config(tmp_path, "nowhere/ca.pem")
    manifest = write_manifest(tmp_path, n=1)
    r = run_cli("validate", manifest, "--config", config)
    assert r.code == 2
    assert f"'api.ca_bundle': file not found: {tmp_path / 'nowhere' / 'ca.pem'}" in r.err


# --- proxies ----------------------------------------------------------------------------------------------


def test_the_run_goes_through_https_proxy(tmp_path: Path, pki: Pki, https_sandbox,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        r, _ = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), sb.url)
    assert r.code == 0, r.err
    assert len(sb.calls()) == 6
    assert proxy.connects and {t for t, _ in proxy.connects} == {f"127.0.0.1:{sb.port}"}
    assert sb.tls_handshakes == len(proxy.connects), "every connection went through the tunnel"


def test_no_proxy_covering_the_host_connects_directly(tmp_path: Path, pki: Pki, https_sandbox,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "intranet.example,127.0.0.0/8")
        r, _ = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), sb.url)
    assert r.code == 0, r.err
    assert len(sb.calls()) == 6
    assert proxy.connects == []


def test_a_proxy_asking_for_credentials_is_named_not_the_api(tmp_path: Path, pki: Pki, https_sandbox,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    with ConnectProxy(credentials=("alice", PROXY_PASSWORD)) as proxy:
        monkeypatch.setenv("https_proxy", proxy.url_with("alice", "wrong-" + PROXY_PASSWORD))
        r, results = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), sb.url)
    assert r.code == 2
    assert r.err == (
        f"error: the proxy {proxy.address} (https_proxy) refused to open a connection to 127.0.0.1:{sb.port}: "
        "HTTP 407 Proxy Authentication Required; fix: the proxy wants credentials: put them in https_proxy "
        "(http://user:password@host:port, with special characters percent-encoded)\n")
    assert proxy.connects == [(f"127.0.0.1:{sb.port}", False)], "asked once: no retry storm"
    assert sb.tls_handshakes == 0 and sb.calls() == [] and not results.exists()
    assert "alice" not in r.err and PROXY_PASSWORD not in r.err


def test_a_proxy_that_is_down_is_named(tmp_path: Path, pki: Pki, https_sandbox,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    with ConnectProxy() as closed:
        port = closed.port  # a port nothing listens on once the proxy is gone
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    r, results = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), sb.url)
    assert r.code == 2
    assert r.err == (f"error: cannot reach the proxy 127.0.0.1:{port} (HTTPS_PROXY) on the way to "
                     f"127.0.0.1:{sb.port}: it refused the connection; fix: check the host and port in HTTPS_PROXY, "
                     "or add 127.0.0.1 to NO_PROXY to connect directly\n")
    assert sb.tls_handshakes == 0 and not results.exists()


def test_key_and_proxy_credentials_never_appear(tmp_path: Path, pki: Pki, https_sandbox,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    sb.inject("/calls/audio", 503)  # a retried row, so the log has failure lines too
    log, summary = tmp_path / "run.log", tmp_path / "summary.json"
    with ConnectProxy(credentials=("alice-proxy-user", PROXY_PASSWORD)) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with("alice-proxy-user", PROXY_PASSWORD))
        r, results = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), sb.url, "-v", "--log-file", str(log),
                          "--summary-json", str(summary))
    assert r.code == 0, r.err
    assert all(allowed for _, allowed in proxy.connects) and len(sb.calls()) == 6
    assert "attempt 1 -> HTTP 503" in log.read_text()
    texts = {"stdout": r.out, "stderr": r.err, "log": log.read_text(), "results": results.read_text(),
             "summary": summary.read_text(), "run-info": Path(str(results) + ".run.json").read_text()}
    from urllib.parse import quote
    for where, text in texts.items():
        for secret in (KEY, PROXY_PASSWORD, quote(PROXY_PASSWORD, safe=""), "alice-proxy-user"):
            assert secret not in text, f"{secret!r} in {where}"
    assert json.loads(summary.read_text())["setup_problem"] is None


def test_a_proxy_refusing_after_the_preflight_stops_the_run_without_retries(
        tmp_path: Path, pki: Pki, https_sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    with ConnectProxy(refuse_status=403, refuse_after=1) as proxy:  # the preflight passes, then every tunnel is refused
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        r, results = _run(tmp_path, _config(tmp_path, str(pki.ca_pem)), sb.url)
    assert r.code == 2
    target = f"127.0.0.1:{sb.port}"
    assert (f"STOPPED: the proxy {proxy.address} (HTTPS_PROXY) refused to open a connection to {target}: HTTP 403 "
            "Forbidden.") in r.out
    assert (f"next ({proxy.address}): ask the proxy's administrators to allow {target}, or add 127.0.0.1 to "
            "NO_PROXY to connect directly; then rerun what is left: ") in r.out
    assert sb.calls() == [] and sb.agents() == []
    rows = read_results(results)
    assert {row["import_status"] for row in rows} == {"not_attempted"}
    # The preflight, then at most one CONNECT per agent invite (2 agents): none of them retried.
    assert 2 <= len(proxy.connects) <= 3


def test_run_sandbox_never_goes_through_a_company_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ConnectProxy() as dead:
        port = dead.port
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")  # a proxy that could not reach our loopback
    monkeypatch.setenv("NO_PROXY", "intranet.example")
    manifest = write_manifest(tmp_path, n=3)
    r = run_cli("run", manifest, "--config", write_config(tmp_path), "--sandbox", "--quiet")
    assert r.code == 0, r.out + r.err
    assert "sandbox received 3 calls" in r.out
    import os
    assert "no_proxy" not in os.environ and os.environ["NO_PROXY"] == "intranet.example", "restored"


def test_an_untrusted_certificate_behind_a_proxy_suspects_the_proxy(tmp_path: Path, https_sandbox,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sb = https_sandbox("good")
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        r, results = _run(tmp_path, _config(tmp_path), sb.url)
    assert r.code == 2
    assert r.err == (
        f"error: cannot connect securely to the API at 127.0.0.1:{sb.port}: its certificate is not trusted: it is "
        f"signed by an unknown authority (checked against the default CAs) (through the proxy {proxy.address}, "
        f"which may be re-signing TLS with its own CA); {UNTRUSTED_FIX}\n")
    assert len(proxy.connects) == 1 and sb.tls_handshakes == 1 and not results.exists()
