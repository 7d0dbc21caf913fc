"""config.yaml: load, check every key, fill defaults, apply command-line overrides.

The result is a tree of frozen dataclasses; nothing else in the package reads YAML.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .concurrency import parse_workers
from .errors import ConfigError
from .files_config import FilesConfig, parse_files
from .files_config import refuse_unknown as _refuse_unknown

DEFAULT_BASE_URL = "https://api.qm.allobrain.com"
DEFAULT_CONFIG_NAME = "config.yaml"

ENCODINGS = ("auto", "utf-8", "utf-8-sig", "cp1252", "latin-1")
DELIMITERS = {"auto": "auto", ",": ",", ";": ";", "\t": "\t", "tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "ALLOBRAIN_API_KEY"
    ca_bundle: str | None = None  # a PEM file of extra trusted CAs; relative to the config file's folder


@dataclass(frozen=True)
class ManifestConfig:
    encoding: str = "auto"
    delimiter: str = "auto"  # "auto" or the delimiter character itself
    sheet: str | None = None
    header_row: int | str = "auto"  # "auto" (the first of the first 20 rows holding the headers) or a row
    timezone: str = "UTC"
    dayfirst: bool = True


@dataclass(frozen=True)
class ColumnsConfig:
    """Field -> manifest header. Matching is case-insensitive after trimming."""

    file_path: str = "file_path"
    agent_email: str = "agent_email"
    agent_name: str = "agent_name"
    agent_first_name: str = "agent_first_name"
    agent_last_name: str = "agent_last_name"
    conversation_timestamp: str = "conversation_timestamp"
    campaign_id: str = "campaign_id"


@dataclass(frozen=True)
class MetadataConfig:
    include: tuple[str, ...] | None = None  # None = all
    exclude: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()  # (manifest header, metadata key)
    phone_columns: tuple[str, ...] = ()
    default_region: str = "FR"

    @property
    def rename_map(self) -> dict[str, str]:
        return dict(self.rename)


@dataclass(frozen=True)
class UploadConfig:
    workers: int | str = "auto"  # a number: exactly that many uploads at once; "auto": adapt (concurrency.py)
    max_workers: int = 32  # the ceiling of "auto"
    ride_out_seconds: float = 120.0  # how long rows keep retrying an API that answers nothing (outage.py)
    max_per_second: float = 0.0
    max_attempts: int = 6
    timeout_seconds: float = 300.0
    connect_timeout_seconds: float = 10.0
    max_file_mb: float = 2048.0
    retry_unknown: bool = False
    max_retry_after_seconds: float = 120.0
    # Pacing (see pacing/): a rolling daily quota, a bandwidth cap, sending hours, and waiting for them.
    max_per_day: int = 0
    max_mb_per_second: float = 0.0
    hours: str | None = None
    wait: bool = False


@dataclass(frozen=True)
class AgentsConfig:
    send_invite_email: bool = False
    role: str = "agent"
    workers: int = 4


@dataclass(frozen=True)
class LedgerConfig:
    url: str | None = None  # null = SQLite in state_dir; postgresql://user@host:5432/db = a shared ledger
    lease_seconds: float = 60.0


@dataclass(frozen=True)
class Config:
    api: ApiConfig = field(default_factory=ApiConfig)
    campaign_id: str | None = None
    manifest: ManifestConfig = field(default_factory=ManifestConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    state_dir: str | None = None
    files: FilesConfig = field(default_factory=FilesConfig)  # files.root, files.s3/sftp/https (files_config.py)
    source: str | None = None  # the file it came from, for messages; not a config key

    def with_overrides(self, flags: dict[str, str] | None = None, **overrides: Any) -> Config:
        """Apply command-line flags: keys like `upload.workers` or `campaign_id`; None means not given.
        `flags` names the flag each key came from, so a bad value is reported against the flag."""
        cfg = self
        given: dict[str, str] = {}
        for dotted, value in overrides.items():
            if value is None:
                continue
            given[dotted] = (flags or {}).get(dotted, dotted)
            section, _, key = dotted.partition(".")
            if key:
                cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{key: value})})
            else:
                cfg = replace(cfg, **{section: value})
        _check_ranges(cfg, given if flags else None)
        return cfg

    def recorded(self) -> dict[str, Any]:
        """The settings that decide what a row's key is (how cells are read into a campaign, an agent and
        a time): recorded beside each results file so a rerun reads its rows the same way."""
        return {
            "campaign_id": self.campaign_id,
            "manifest": {"timezone": self.manifest.timezone, "dayfirst": self.manifest.dayfirst},
            "columns": dataclasses.asdict(self.columns),
        }

    def with_recorded(self, settings: dict[str, Any]) -> Config:
        """This config with the settings a results file's run recorded (see `recorded`)."""
        read = settings.get("manifest") or {}
        cols = settings.get("columns") or {}
        cfg = replace(
            self,
            manifest=replace(self.manifest, **{k: read[k] for k in ("timezone", "dayfirst") if k in read}),
            columns=replace(self.columns, **{k: v for k, v in cols.items() if k in _COLUMN_FIELDS and isinstance(v, str)}),
            campaign_id=settings.get("campaign_id", self.campaign_id),
        )
        _check_ranges(cfg)
        return cfg


# --- loading -------------------------------------------------------------------------------------


def resolve_config_path(path: str | os.PathLike[str] | None, cwd: Path | None = None,
                        manifest: Path | None = None) -> Path | None:
    """`--config PATH` wins; else the config.yaml beside the manifest; else ./config.yaml; else None
    (built-in defaults). The manifest's own folder comes first, so a run from another folder reads the
    manifest exactly as a run from its folder does (the time zone decides every row's key)."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (check the --config path)")
        return p
    folders = [Path(manifest).absolute().parent] if manifest is not None else []
    folders.append((cwd or Path.cwd()).absolute())
    return next((f / DEFAULT_CONFIG_NAME for f in folders if (f / DEFAULT_CONFIG_NAME).is_file()), None)


def load_config(path: str | os.PathLike[str] | None = None, cwd: Path | None = None,
                manifest: Path | None = None) -> Config:
    p = resolve_config_path(path, cwd, manifest)
    if p is None:
        return Config()
    p = p.absolute()
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {_yaml_problem(exc)}") from None
    cfg = parse_config(data if data is not None else {}, source=str(p))
    return _resolve_ca_bundle(cfg, p.parent)


def _resolve_ca_bundle(cfg: Config, folder: Path) -> Config:
    """`api.ca_bundle` is read relative to the config file's folder (as people write it beside the config);
    a missing file is reported here, by `validate` too, not at the first connection."""
    if cfg.api.ca_bundle is None:
        return cfg
    path = folder / Path(cfg.api.ca_bundle).expanduser()
    if not path.is_file():
        raise ConfigError(f"{cfg.source}: 'api.ca_bundle': file not found: {path} (a PEM file of CA "
                          "certificates; a relative path is read from the config file's folder)")
    return replace(cfg, api=replace(cfg.api, ca_bundle=str(path.resolve())))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines (with a drawing of the spot): one line, with the place."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def parse_config(data: Any, source: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (api:, manifest:, upload:, ...)")
    _refuse_unknown(data, _top_level_keys(), source, "")
    kwargs: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key in _SECTIONS:
            kwargs[key] = _parse_section(key, value, source)
        elif key == "campaign_id":
            kwargs[key] = _opt_str(value, "campaign_id", source)
        elif key == "state_dir":
            kwargs[key] = _opt_str(value, "state_dir", source)
        elif key == "files":
            kwargs[key] = parse_files(value, source)
    cfg = Config(**kwargs)
    _check_ranges(cfg)
    return cfg


# --- checking ------------------------------------------------------------------------------------

_SECTIONS: dict[str, type] = {
    "api": ApiConfig,
    "manifest": ManifestConfig,
    "columns": ColumnsConfig,
    "metadata": MetadataConfig,
    "upload": UploadConfig,
    "agents": AgentsConfig,
    "ledger": LedgerConfig,
}


_COLUMN_FIELDS = frozenset(f.name for f in fields(ColumnsConfig))


def _top_level_keys() -> list[str]:
    return [f.name for f in fields(Config) if f.name != "source"]


def _parse_section(name: str, value: Any, source: str) -> Any:
    cls = _SECTIONS[name]
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{name}' must be a mapping of keys, got {type(value).__name__}")
    allowed = [f.name for f in fields(cls)]
    _refuse_unknown(value, allowed, source, f"{name}.")
    types = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, raw in value.items():
        dotted = f"{name}.{key}"
        out[key] = _coerce(dotted, types[key], raw, source)
    return cls(**out)


def _coerce(dotted: str, f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    if dotted == "metadata.include":
        if raw is None or raw == "all":
            return None
        return _str_tuple(raw, dotted, source)
    if dotted in ("metadata.exclude", "metadata.phone_columns"):
        return () if raw is None else _str_tuple(raw, dotted, source)
    if dotted == "metadata.rename":
        if raw is None:
            return ()
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise ConfigError(f"{source}: '{dotted}' must map manifest headers to metadata keys (text: text)")
        return tuple(raw.items())
    if dotted == "manifest.delimiter":
        key = raw if isinstance(raw, str) else None
        if key not in DELIMITERS:
            raise ConfigError(f"{source}: '{dotted}' must be one of auto, ',', ';', tab (got {raw!r})")
        return DELIMITERS[key]
    if dotted == "upload.workers":
        return parse_workers(raw, f"{source}: '{dotted}'")
    if dotted == "manifest.header_row":
        if raw == "auto" or (isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1):
            return raw
        raise ConfigError(f"{source}: '{dotted}' must be auto or a row number from 1 (got {raw!r})")
    if dotted == "upload.hours":
        if raw is not None and not isinstance(raw, str):
            raise ConfigError(f"{source}: '{dotted}' must be text such as \"19:00-07:30\" (quoted), or null "
                              f"(got {raw!r})")
        return raw
    if dotted == "manifest.encoding":
        if not isinstance(raw, str) or raw.lower() not in ENCODINGS:
            raise ConfigError(f"{source}: '{dotted}' must be one of {', '.join(ENCODINGS)} (got {raw!r})")
        return raw.lower()
    default = f.default
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ConfigError(f"{source}: '{dotted}' must be true or false (got {raw!r})")
        return raw
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{source}: '{dotted}' must be a whole number (got {raw!r})")
        return raw
    if isinstance(default, float):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"{source}: '{dotted}' must be a number (got {raw!r})")
        return float(raw)
    if dotted == "ledger.url":
        from .ledger import ledger_url_setting

        return ledger_url_setting(raw, source)
    # strings, some optional (sheet)
    if raw is None and default is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{source}: '{dotted}' must be non-empty text (got {raw!r})")
    return raw.strip()


def _str_tuple(raw: Any, dotted: str, source: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError(f"{source}: '{dotted}' must be a list of column headers")
    return tuple(raw)


def _opt_str(value: Any, key: str, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: '{key}' must be text or null (got {value!r})")
    return value.strip()


def _check_ranges(cfg: Config, flags: dict[str, str] | None = None) -> None:
    """Every value in its range. A key set by a flag is reported against the flag (`flags`: key -> flag)."""
    src = cfg.source or "config"
    u = cfg.upload
    checks = [
        (u.workers == "auto" or 1 <= int(u.workers) <= 64, "upload.workers", "auto or a whole number from 1 to 64"),
        (1 <= u.max_workers <= 64, "upload.max_workers", "a whole number from 1 to 64"),
        (u.ride_out_seconds >= 0, "upload.ride_out_seconds", "0 (no riding out) or more seconds"),
        (u.max_per_second >= 0, "upload.max_per_second", "0 (no limit) or a positive number"),
        (1 <= u.max_attempts <= 50, "upload.max_attempts", "a whole number from 1 to 50"),
        (u.timeout_seconds > 0, "upload.timeout_seconds", "a positive number of seconds"),
        (u.connect_timeout_seconds > 0, "upload.connect_timeout_seconds", "a positive number of seconds"),
        (u.max_file_mb > 0, "upload.max_file_mb", "a positive number of megabytes"),
        (u.max_retry_after_seconds >= 0, "upload.max_retry_after_seconds", "0 or more seconds"),
        (u.max_per_day >= 0, "upload.max_per_day", "0 (no quota) or a positive whole number"),
        (u.max_mb_per_second >= 0 and math.isfinite(u.max_mb_per_second), "upload.max_mb_per_second",
         "0 (no cap) or a positive number of MB/s"),
        (1 <= cfg.agents.workers <= 32, "agents.workers", "a whole number from 1 to 32"),
        (3 <= cfg.ledger.lease_seconds <= 86400, "ledger.lease_seconds", "a number of seconds from 3 to 86400"),
        (bool(cfg.api.api_key_env.strip()), "api.api_key_env", "the name of an environment variable"),
    ]
    for ok, key, allowed in checks:
        if not ok:
            if flags and key in flags:
                raise ConfigError(f"{flags[key]} must be {allowed}")
            raise ConfigError(f"{src}: '{key}' must be {allowed}")
    try:
        ZoneInfo(cfg.manifest.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{src}: 'manifest.timezone' is not a known time zone: {cfg.manifest.timezone!r} "
            "(use an IANA name such as Europe/Paris or UTC)"
        ) from None
    if u.hours is not None:
        from .pacing import HoursError, parse_hours

        try:
            parse_hours(u.hours, cfg.manifest.timezone)
        except HoursError as exc:
            raise ConfigError(f"{src}: 'upload.hours': {exc}") from None
    try:
        import phonenumbers

        if cfg.metadata.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(
                f"{src}: 'metadata.default_region' is not a known region code: {cfg.metadata.default_region!r} "
                "(use a two-letter code such as FR)"
            )
    except ImportError:  # pragma: no cover - a declared dependency
        pass
