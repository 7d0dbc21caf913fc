"""How the tool reaches a host: the CAs it trusts, the proxy it goes through, and a preflight.

- Trust: the default CAs (certifi's bundle, as requests ships it; `REQUESTS_CA_BUNDLE`, else `CURL_CA_BUNDLE`,
  else `SSL_CERT_FILE` replaces it, as each does for requests and OpenSSL), plus `api.ca_bundle` on top. Certificates and
  host names are always verified: nothing here, and no setting, turns that off.
- Proxies: `HTTPS_PROXY` / `HTTP_PROXY` (then `ALL_PROXY`), the lowercase spelling first as curl reads them,
  and `NO_PROXY`. Read here, once per session, instead of by requests on every request.
- `preflight()`: one cheap request (no key, no call) before the run sends anything, so a certificate or proxy
  problem stops it with one line (`NetworkSetupError`) instead of failing every row after retries.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import certifi
import requests
from requests.adapters import HTTPAdapter

from . import tls
from .errors import ConfigError, NetworkSetupError, UsageError

log = logging.getLogger("importer.network")

USER_AGENT = "allobrain-import/0.1"
CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")  # in this order, as requests reads the first two


# --- proxies -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    url: str  # as requests needs it, credentials included: never print this
    setting: str  # the variable it came from
    shown: str  # host:port, what messages say

    def __repr__(self) -> str:
        return f"Proxy({self.shown!r} from {self.setting})"


def _env(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for key in (name.lower(), name.upper()):
        value = (environ.get(key) or "").strip()
        if value:
            return key, value
    return None


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy the environment asks for to reach `url`, or None (none set, or NO_PROXY covers the host)."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    found = _env(env, f"{parts.scheme}_proxy") or _env(env, "all_proxy")
    if found is None:
        return None
    no_proxy = _env(env, "no_proxy")
    if no_proxy and bypassed(parts.hostname or "", parts.port, no_proxy[1]):
        return None
    setting, value = found
    raw = value if "://" in value else "http://" + value  # `proxy:3128` means http, as for curl and requests
    p = urlsplit(raw)
    try:
        host, port = p.hostname, p.port
    except ValueError:  # a port that is not a number (the value is not echoed: it may hold a password)
        raise UsageError(f"{setting}: the proxy's port is not a number; write it as http://host:port") from None
    if p.scheme not in ("http", "https") or not host:
        got = f"a {p.scheme}:// proxy" if p.scheme not in ("http", "https") else "no host name"
        raise UsageError(f"{setting}: write the proxy as http://host:port (only http:// and https:// proxies "
                         f"are supported; got {got})")
    return Proxy(raw, setting, f"{host}:{port or (443 if p.scheme == 'https' else 80)}")


def bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: `*`, host names matching themselves and their subdomains (`.corp.example`
    or `corp.example`), an optional `:port`, and IP addresses or CIDR ranges."""
    host = host.strip("[]").lower()
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if want_port and want_port.isdigit() and port is not None and int(want_port) != port:
            continue
        name = name.strip("[]").lstrip("*").lstrip(".")
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                return True
            continue
        except ValueError:
            pass
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The user names and passwords of every proxy variable, as typed and decoded: redacted from logs."""
    env = os.environ if environ is None else environ
    secrets: set[str] = set()
    for name in ("https_proxy", "http_proxy", "all_proxy"):
        found = _env(env, name)
        if not found or "@" not in found[1]:
            continue
        userinfo = found[1].split("://", 1)[-1].rsplit("@", 1)[0]
        for part in userinfo.split(":", 1):
            secrets |= {part, unquote(part)} - {""}
    return tuple(sorted(secrets, key=len, reverse=True))


# --- trust --------------------------------------------------------------------------------------------


def _base_bundle(environ: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(variable, path) of the bundle that replaces the default CAs, if the environment names one."""
    env = os.environ if environ is None else environ
    for name in CA_ENV:
        value = (env.get(name) or "").strip()
        if value:
            return name, value
    return None


def trust_context(ca_bundle: str | None = None, environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """The SSL context every connection uses: verification on, the trusted CAs as described above."""
    setting, base = _base_bundle(environ) or ("the default CA bundle", certifi.where())
    return _context(base, setting, ca_bundle)


def trusted_description(ca_bundle: str | None = None, environ: Mapping[str, str] | None = None,
                        ca_setting: str = "api.ca_bundle") -> str:
    base = _base_bundle(environ)
    text = f"{base[0]} ({base[1]})" if base else "the default CAs"
    return text + (f" and {ca_setting} ({ca_bundle})" if ca_bundle else "")


@functools.lru_cache(maxsize=8)
def _context(base: str, base_setting: str, extra: str | None) -> ssl.SSLContext:
    # Built once per set of files and shared by every session: loading a bundle costs ~10 ms.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, base, base_setting, UsageError)
    if extra:
        _load(ctx, extra, "api.ca_bundle", ConfigError)
    return ctx


def _load(ctx: ssl.SSLContext, path: str, setting: str, error: type[Exception]) -> None:
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            ctx.load_verify_locations(capath=str(p))
        else:
            ctx.load_verify_locations(cafile=str(p))
    except FileNotFoundError:
        raise error(f"{setting}: CA file not found: {p}") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise error(f"{setting}: {p} is not a readable PEM file of CA certificates ({why})") from None


class _TrustAdapter(HTTPAdapter):
    """An adapter whose every connection (direct or through a proxy tunnel) uses our SSL context, and which
    never lets a `verify` value turn verification off or swap the CAs."""

    def __init__(self, context: ssl.SSLContext, **kwargs: object) -> None:
        self._context = context
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]

    def proxy_manager_for(self, proxy: str, **kwargs: object):  # type: ignore[no-untyped-def]
        kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **kwargs)

    def cert_verify(self, conn, url, verify, cert) -> None:  # type: ignore[no-untyped-def]
        # requests would load certifi's file into the context on every connection (or turn checks off for
        # verify=False); the context already holds the CAs and always verifies.
        if url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = conn.ca_cert_dir = None


class _NoNetrc(requests.auth.AuthBase):
    """Setting any session auth stops requests from reading ~/.netrc; this one adds nothing."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def make_session(url: str, ca_bundle: str | None = None, environ: Mapping[str, str] | None = None) -> requests.Session:
    """A session for `url`: no ~/.netrc, no retries in urllib3, our trust, the proxy resolved now, once.
    (With trust_env left on, requests rescans os.environ on every request: a quarter of the client's CPU
    per call in the benchmarks.)"""
    s = requests.Session()
    s.auth = _NoNetrc()
    s.headers["User-Agent"] = USER_AGENT
    adapter = _TrustAdapter(trust_context(ca_bundle, environ), pool_connections=1, pool_maxsize=1, max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    proxy = proxy_for(url, environ)
    s.proxies = {urlsplit(url).scheme: proxy.url} if proxy else {}
    s.trust_env = False
    return s


def endpoint(url: str, ca_bundle: str | None = None, environ: Mapping[str, str] | None = None,
             **names: str) -> tls.Endpoint:
    """What messages about `url` name: its host[:port], the proxy, the CA file (see tls.Endpoint)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    shown = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    proxy = proxy_for(url, environ)
    trusted = trusted_description(ca_bundle, environ, names.get("ca_setting", "api.ca_bundle"))
    return tls.Endpoint(shown, trusted=trusted, proxy=proxy.shown if proxy else None,
                        proxy_setting=proxy.setting if proxy else None, **names)


def preflight(url: str, *, ca_bundle: str | None = None, timeout: float = 10.0,
              environ: Mapping[str, str] | None = None, **names: str) -> None:
    """Raise NetworkSetupError when `url` cannot be reached for a TLS or proxy reason; else return (other
    failures, such as a refused connection, are left to the run's retries and guards). Sends one HEAD
    request without the key: any HTTP answer proves the tunnel and the certificate."""
    trust_context(ca_bundle, environ)  # a bad CA file is reported even when nothing below connects
    where = endpoint(url, ca_bundle, environ, **names)
    if urlsplit(url).scheme != "https" and where.proxy is None:
        return  # plain http to loopback, no proxy: nothing to check
    session = make_session(url, ca_bundle, environ)
    try:
        response = session.head(url.rstrip("/") + "/", timeout=(timeout, timeout), allow_redirects=False)
        response.close()
    except requests.RequestException as exc:
        problem = tls.classify(exc, where)
        if problem is not None:
            raise NetworkSetupError(problem) from None
        log.info("preflight of %s: %s; left to the run", where.host, type(exc).__name__)
        return
    finally:
        session.close()
    if response.status_code == 407 and where.proxy:  # a plain-http request through the proxy
        raise NetworkSetupError(tls.proxy_refused(where, "407", response.reason or ""))
    log.info("preflight of %s: HTTP %d", where.host, response.status_code)
