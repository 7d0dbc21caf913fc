"""The `files:` section of config.yaml: where relative file cells resolve, and how remote stores are reached.

Kept out of config.py because it nests two levels deep (`files.s3.endpoint_url`) where every other section
is flat. Credentials are never config values: only the *names* of environment variables and the paths of
the standard files (AWS's, SSH's) appear here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError, UsageError
from .safety import check_base_url, is_loopback_host

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None  # S3-compatible stores; AWS_ENDPOINT_URL works too
    region: str | None = None
    profile: str | None = None  # else the AWS environment variables and shared files


@dataclass(frozen=True)
class SftpConfig:
    username: str | None = None
    key_file: str | None = None  # else the SSH agent and ~/.ssh keys
    password_env: str | None = None  # the name of an environment variable holding the password
    known_hosts: str = DEFAULT_KNOWN_HOSTS


@dataclass(frozen=True)
class HttpsConfig:
    headers_env: tuple[tuple[str, str], ...] = ()  # (header, environment variable holding its value)


@dataclass(frozen=True)
class FilesConfig:
    root: str | None = None  # where relative cells resolve; None = the manifest's folder
    s3: S3Config = field(default_factory=S3Config)
    sftp: SftpConfig = field(default_factory=SftpConfig)
    https: HttpsConfig = field(default_factory=HttpsConfig)


_SUBSECTIONS: dict[str, type] = {"s3": S3Config, "sftp": SftpConfig, "https": HttpsConfig}


def parse_files(value: Any, source: str) -> FilesConfig:
    if value is None:
        return FilesConfig()
    mapping = _mapping(value, "files", source)
    refuse_unknown(mapping, ["root", *_SUBSECTIONS], source, "files.")
    out: dict[str, Any] = {}
    for key, raw in mapping.items():
        if key == "root":
            out[key] = _root(raw, source)
        else:
            out[key] = _parse_sub(key, raw, source)
    return FilesConfig(**out)


def _parse_sub(name: str, value: Any, source: str) -> Any:
    cls = _SUBSECTIONS[name]
    if value is None:
        return cls()
    mapping = _mapping(value, f"files.{name}", source)
    refuse_unknown(mapping, [f.name for f in fields(cls)], source, f"files.{name}.")
    out: dict[str, Any] = {}
    for key, raw in mapping.items():
        dotted = f"files.{name}.{key}"
        if dotted == "files.https.headers_env":
            out[key] = _headers_env(raw, dotted, source)
        elif dotted == "files.sftp.known_hosts":
            out[key] = _opt_text(raw, dotted, source) or DEFAULT_KNOWN_HOSTS
        else:
            out[key] = _opt_text(raw, dotted, source)
    if out.get("endpoint_url"):
        try:
            out["endpoint_url"] = check_base_url(out["endpoint_url"], "files.s3.endpoint_url")
        except UsageError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if name == "sftp" and out.get("password_env") and not _is_env_name(out["password_env"]):
        raise ConfigError(
            f"{source}: 'files.sftp.password_env' must be the NAME of an environment variable "
            "(for example SFTP_PASSWORD), never the password itself"
        )
    return cls(**out)


def _headers_env(raw: Any, dotted: str, source: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(
            f"{source}: '{dotted}' must map header names to environment variable names "
            "(for example Authorization: RECORDINGS_AUTH)"
        )
    for header, env in raw.items():
        if not header.strip() or any(c in header for c in ":\r\n ") or not header.isascii():
            raise ConfigError(f"{source}: '{dotted}': {header!r} is not an HTTP header name")
        if not _is_env_name(env):
            raise ConfigError(
                f"{source}: '{dotted}.{header}' must be the NAME of an environment variable holding the value "
                "(for example RECORDINGS_AUTH), never the value itself"
            )
    return tuple((k.strip(), v.strip()) for k, v in raw.items())


def _is_env_name(text: str) -> bool:
    text = text.strip()
    return bool(text) and text.isascii() and (text[0].isalpha() or text[0] == "_") and all(
        c.isalnum() or c == "_" for c in text
    )


def _mapping(value: Any, dotted: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{dotted}' must be a mapping of keys, got {type(value).__name__}")
    return value


def _root(raw: Any, source: str) -> str | None:
    """A local folder, or a URL of a scheme we read (http only for loopback hosts, as for the API)."""
    text = _opt_text(raw, "files.root", source)
    if text is None or "://" not in text:
        return text
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    host = rest.split("/", 1)[0].rpartition("@")[2].rsplit(":", 1)[0] if rest else ""
    if scheme not in ("s3", "sftp", "https", "http") or not host:
        raise ConfigError(
            f"{source}: 'files.root' must be a folder or an s3://, sftp:// or https:// URL with a host "
            f"(got {text!r})"
        )
    if scheme == "http" and not is_loopback_host(host):
        raise ConfigError(f"{source}: 'files.root': http:// is only allowed for loopback hosts; use https://")
    return text if text.endswith("/") else text + "/"


def refuse_unknown(data: dict[str, Any], allowed: list[str], source: str, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'; allowed here: {', '.join(allowed)}")


def _opt_text(raw: Any, dotted: str, source: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{source}: '{dotted}' must be non-empty text or null (got {raw!r})")
    return raw.strip()
