"""`ledger.url`: a PostgreSQL URL without a password (libpq's conventions supply it: PGPASSWORD, ~/.pgpass).

A password written in config.yaml would end up in shells' history, in tickets and in logs; the tool refuses it
rather than guess which of those the user meant to avoid. TLS comes from PGSSLMODE, PGSSLROOTCERT and the
other libpq variables, which psycopg reads as they are.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError

SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMS = {"password", "sslpassword"}


def url_problem(url: str) -> str | None:
    """What is wrong with a ledger URL, in words that never repeat a password; None when it is usable."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not a valid URL (expected postgresql://user@host:5432/database)"
    if parts.scheme not in SCHEMES:
        return "must start with postgresql:// (e.g. postgresql://importer@db.internal:5432/allobrain)"
    if parts.password is not None or any(k.lower() in _SECRET_PARAMS for k, _ in parse_qsl(parts.query)):
        return ("carries a password: remove it from the URL and give it in the environment variable PGPASSWORD "
                "or in ~/.pgpass (libpq's usual ways)")
    if not parts.hostname and "host=" not in parts.query:
        return "names no host (expected postgresql://user@host:5432/database)"
    if not parts.path.strip("/"):
        return "names no database (expected postgresql://user@host:5432/database)"
    return None


def display_url(url: str) -> str:
    """The URL as messages show it: scheme, user, host, port and database; never a query string."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{parts.path}"


def ledger_url_setting(raw: Any, source: str) -> str | None:
    """config.yaml's `ledger.url`, checked; the message never repeats the URL (it may hold the password)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{source}: 'ledger.url' must be a postgresql:// URL or null (SQLite in state_dir)")
    problem = url_problem(raw.strip())
    if problem:
        raise ConfigError(f"{source}: 'ledger.url' {problem}")
    return raw.strip()
