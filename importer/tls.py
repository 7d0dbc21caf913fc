"""What a failed TLS or proxy connection means, in words a person can act on. Pure: no I/O.

A certificate problem or a proxy refusal does not change between attempts, so it is never retried: the
run stops with one line naming the host, the reason and the setting that fixes it.

    classify(exc, host=..., proxy=...)  ->  ConnectProblem | None   (None: not a TLS or proxy problem)
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from .safety import clean_text

# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code); any other code (self-signed,
# unknown issuer, ...) means the chain is not trusted.
_NOT_YET_VALID = 9
_EXPIRED = 10
_HOST_MISMATCH = frozenset({62, 64})  # host name, IP address

_TUNNEL_STATUS = re.compile(r"Tunnel connection failed:\s*(\d{3})\s*([^'\")]*)")


@dataclass(frozen=True)
class ConnectProblem:
    """A TLS or proxy failure: `kind` for tests and scripts, `reason` and `fix` for people."""

    kind: str  # untrusted, expired, not_yet_valid, host_mismatch, handshake, tls_version, proxy_refused,
    #            proxy_unreachable
    host: str  # host:port of the endpoint (or of the proxy, for proxy kinds)
    reason: str
    fix: str

    @property
    def line(self) -> str:
        return f"{self.reason}; fix: {self.fix}"


@dataclass(frozen=True)
class Endpoint:
    """Who we were talking to, and which settings change that, so the fix can name them."""

    host: str  # host:port
    what: str = "the API"
    url_setting: str = "api.base_url (or --api-url)"
    ca_setting: str = "api.ca_bundle"
    trusted: str = "the default CAs"  # where the trusted CAs came from, for an "untrusted" message
    proxy: str | None = None  # host:port of the proxy in use (never its credentials)
    proxy_setting: str | None = None  # the variable it came from (HTTPS_PROXY, https_proxy, ...)

    @property
    def name(self) -> str:
        """The host name alone, as NO_PROXY and certificates spell it."""
        has_port = self.host.count(":") == 1 or (self.host.startswith("[") and "]:" in self.host)
        return self.host.rsplit(":", 1)[0] if has_port else self.host


def classify(exc: BaseException, where: Endpoint) -> ConnectProblem | None:
    """The problem behind a connection failure, or None when it is something else (refused, timed out,
    DNS, reset): those keep their own handling (retries, the reachability guard)."""
    chain = list(_causes(exc))
    if where.proxy and any(_is_proxy_error(e) for e in chain):
        return _proxy_problem(chain, where)
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return _certificate_problem(e, where)
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return _handshake_problem(e, where)
    if any(type(e).__name__ == "SSLError" for e in chain):  # urllib3/requests wrappers without the ssl cause
        return _handshake_problem(None, where)
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 -> ssl), each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException)]
        todo += [x for x in e.args if isinstance(x, BaseException)]


def _is_proxy_error(e: BaseException) -> bool:
    return type(e).__name__ == "ProxyError" or bool(_TUNNEL_STATUS.search(str(e)))


_WHY_UNTRUSTED = {
    18: "it is self-signed",
    19: "its chain ends in a self-signed CA",
    20: "it is signed by an unknown authority",
    21: "it is signed by an unknown authority",
}


def _certificate_problem(e: ssl.SSLCertVerificationError, w: Endpoint) -> ConnectProblem:
    code = getattr(e, "verify_code", None)
    at = f"{w.what} at {w.host}"
    via = f" (through the proxy {w.proxy}, which may be re-signing TLS with its own CA)" if w.proxy else ""
    if code == _EXPIRED:
        return ConnectProblem(
            "expired", w.host, f"cannot connect securely to {at}: its certificate has expired{via}",
            "check this machine's date and time; if they are right, the certificate must be renewed by whoever "
            "runs that server (or the company proxy)")
    if code == _NOT_YET_VALID:
        return ConnectProblem(
            "not_yet_valid", w.host, f"cannot connect securely to {at}: its certificate is not valid yet{via}",
            "check this machine's date and time")
    if code in _HOST_MISMATCH:
        return ConnectProblem(
            "host_mismatch", w.host,
            f"cannot connect securely to {at}: its certificate is for another host name, not {w.name}",
            f"check the host name in {w.url_setting}: use the name the certificate was issued for")
    # Our own words for the common codes (stable across OpenSSL versions); OpenSSL's for the rare ones.
    why = _WHY_UNTRUSTED.get(code or 0) or clean_text(getattr(e, "verify_message", "") or e.reason or e, 100)
    return ConnectProblem(
        "untrusted", w.host,
        f"cannot connect securely to {at}: its certificate is not trusted: {why} (checked against {w.trusted}){via}",
        f"put the certificate of the CA that signed it (a PEM file; your IT team has it when a company proxy "
        f"inspects TLS) in {w.ca_setting}, or point REQUESTS_CA_BUNDLE at it")


_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"})
_OLD_TLS = frozenset({"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"})


def _handshake_problem(e: ssl.SSLError | None, w: Endpoint) -> ConnectProblem:
    code = (e.reason if e is not None and e.reason else "") or ""
    at = f"{w.what} at {w.host}"
    shown = f" ({code})" if code else ""
    if code in _NOT_TLS:
        return ConnectProblem(
            "handshake", w.host, f"cannot connect securely to {at}: it does not speak TLS on that port{shown}",
            f"check the port in {w.url_setting} (a plain http:// port answers this way)")
    if code in _OLD_TLS:
        return ConnectProblem(
            "tls_version", w.host, f"cannot connect securely to {at}: it offers only TLS versions older than 1.2"
            f"{shown}", "the server (or the proxy that inspects TLS) must offer TLS 1.2 or later; no setting here "
            "allows older versions")
    if isinstance(e, ssl.SSLEOFError) or "EOF" in code:
        return ConnectProblem(
            "handshake", w.host, f"cannot connect securely to {at}: the connection closed during the TLS "
            f"handshake{shown}", f"check the port in {w.url_setting} (a plain http:// port, or a firewall that "
            "cuts TLS, does this)")
    return ConnectProblem(
        "handshake", w.host, f"cannot connect securely to {at}: the TLS handshake failed{shown}",
        "the server (or a proxy or firewall in between) refused the TLS versions and ciphers this tool offers "
        f"(TLS 1.2 or later): check {w.url_setting}" + (f" and {w.proxy_setting}" if w.proxy_setting else ""))


def proxy_refused(w: Endpoint, status: str, text: str = "") -> ConnectProblem:
    """The proxy answered our CONNECT (or, for plain http, our request) with an error status."""
    setting = w.proxy_setting or "HTTPS_PROXY"
    said = f"HTTP {status} {clean_text(text, 60)}".strip()
    if status == "407":
        fix = (f"the proxy wants credentials: put them in {setting} "
               "(http://user:password@host:port, with special characters percent-encoded)")
    else:
        fix = f"ask the proxy's administrators to allow {w.host}, or add {w.name} to NO_PROXY to connect directly"
    return ConnectProblem("proxy_refused", w.proxy or "",
                          f"the proxy {w.proxy} ({setting}) refused to open a connection to {w.host}: {said}", fix)


def _proxy_problem(chain: list[BaseException], w: Endpoint) -> ConnectProblem | None:
    for e in chain:
        m = _TUNNEL_STATUS.search(str(e))
        if m and m.group(1) in ("502", "503", "504"):
            return None  # the proxy could not reach the host: the host is down, as a refused connection says
        if m:
            return proxy_refused(w, m.group(1), m.group(2))
    setting = w.proxy_setting or "HTTPS_PROXY"
    refused = any(isinstance(e, ConnectionRefusedError) or "refused" in str(e) for e in chain)
    return ConnectProblem(
        "proxy_unreachable", w.proxy or "",
        f"cannot reach the proxy {w.proxy} ({setting}) on the way to {w.host}: "
        + ("it refused the connection" if refused else "it did not answer"),
        f"check the host and port in {setting}, or add {w.name} to NO_PROXY to connect directly")
