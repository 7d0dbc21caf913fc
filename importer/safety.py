"""Security rules: which API URLs are acceptable, and how untrusted text is made safe to show or store."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from .errors import UsageError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def is_loopback_host(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1, judged on the URL's parsed host (never on the raw text)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, origin: str = "api.base_url") -> str:
    """Return the URL without a trailing slash, or raise UsageError before any connection is opened.

    https is always accepted; http only for a loopback host. Credentials, queries and fragments are refused:
    `http://localhost:1@evil.example` parses to host evil.example and is refused on both counts.
    """
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UsageError(f"{origin}: not a valid URL: {text!r} ({exc})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise UsageError(f"{origin}: the API URL must start with https:// and name a host (got {text!r})")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UsageError(f"{origin}: the API URL must not contain credentials or '@' (got host {host!r})")
    if parts.query or parts.fragment:
        raise UsageError(f"{origin}: the API URL must not have a query or fragment: {text!r}")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise UsageError(
            f"{origin}: http:// is only allowed for loopback hosts (localhost, 127.0.0.1, ::1); "
            f"use https:// for {host}"
        )
    return text.rstrip("/")


def clean_text(text: object, limit: int = 300) -> str:
    """Server or file text made safe for a terminal line or a CSV cell: no control characters, one line, short."""
    s = _SPACES.sub(" ", _CONTROL.sub(" ", str(text))).strip()
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return s


def neutralize_cell(value: object) -> str:
    """Guard a value we write into an import_* column against spreadsheet formula injection."""
    s = "" if value is None else str(value)
    return "'" + s if s.startswith(FORMULA_PREFIXES) else s


def redact(text: str, secret: str | None) -> str:
    """Remove a secret from text (defence in depth for log records and error messages)."""
    if secret and len(secret) >= 4 and secret in text:
        return text.replace(secret, "[redacted]")
    return text


def canonical_api(url: str) -> str:
    """One spelling per API, for the ledger's key: scheme and host lowercased, default port dropped, no
    trailing slash, and `localhost` as 127.0.0.1 (so `HTTP://LocalHost:8000/` and `http://127.0.0.1:8000`
    cannot be mistaken for two APIs and have the same call sent to each)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if host == "localhost":
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), "", ""))
