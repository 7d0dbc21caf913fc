"""What the page remembers while its server runs: the folder it offers, the manifest chosen, the column
mappings saved, where to send (the sandbox or the API, and a key typed in), the runs and the results files
it may show. All in memory; the only files it writes are the ones the CLI writes too (config.yaml beside the
manifest, results beside the manifest) and the uploaded manifest itself.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import prepare
from ..config import DEFAULT_CONFIG_NAME, ColumnsConfig, Config, load_config
from ..errors import ConfigError, UsageError
from ..prepare import check_api_key, env_api_key, state_dir_of
from ..safety import check_base_url
from . import roundtrip
from .jobs import Job

if TYPE_CHECKING:
    from ..sandbox import Sandbox


@dataclass(frozen=True)
class Destination:
    """Where a run goes: the built-in sandbox, or the API with a key (None when there is none yet)."""

    sandbox: bool
    api_url: str
    api_key: str | None
    key_source: str  # "sandbox", "environment", "typed" or "none"
    state_dir: Path


class Workspace:
    def __init__(self, folder: Path, config_flag: Path | None = None) -> None:
        self.folder = folder.resolve()
        self.config_flag = config_flag.resolve() if config_flag else None
        self.chosen: Path | None = None
        self.columns: dict[Path, ColumnsConfig] = {}  # mappings saved on this page, by manifest
        self.jobs: list[Job] = []
        self.results: dict[str, Path] = {}  # key -> a results file the page may show
        self.lock = threading.RLock()
        self._typed_key: str | None = None  # memory only: never written, logged or shown
        self._sandbox: Sandbox | None = None
        self._sandbox_tmp: tempfile.TemporaryDirectory[str] | None = None
        self.sandbox_on = env_api_key(load_config(self.config_flag)) is None
        self._flashes: list[tuple[str, str]] = []

    def flash(self, kind: str, text: str) -> None:
        """A message for the next page shown ("ok" or "error"): the answer to a form, after its redirect."""
        with self.lock:
            self._flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        with self.lock:
            taken, self._flashes = self._flashes, []
            return taken

    # --- the config ------------------------------------------------------------------------------

    def config_for(self, manifest: Path) -> Config:
        """The config a run of `manifest` uses, found as the CLI finds it (prepare.config_for), with the
        columns saved on this page (they matter when --config names another file than the one they went to)."""
        cfg, _origin = prepare.config_for(manifest, self.config_flag)
        columns = self.columns.get(manifest)
        return replace(cfg, columns=columns) if columns is not None else cfg

    def save_columns(self, manifest: Path, mapping: dict[str, str]) -> Path:
        """Write config.yaml beside the manifest with this mapping; the config in use seeds the other keys."""
        target = manifest.parent / DEFAULT_CONFIG_NAME
        in_use = self.config_for(manifest).source
        source = target if target.is_file() else (Path(in_use) if in_use else None)
        base: dict[str, Any] | None = None
        if source is not None:
            try:
                loaded = yaml.safe_load(source.read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read {source}: {exc}") from None
            base = loaded if isinstance(loaded, dict) else {}
        text = roundtrip.config_text(manifest, mapping, base)
        columns = ColumnsConfig(**{**_defaults_absent(mapping), **mapping})
        try:
            if target.is_file():
                target.with_name(target.name + ".bak").write_bytes(target.read_bytes())
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
        self.columns[manifest] = columns
        return target

    # --- where to send ---------------------------------------------------------------------------

    def set_key(self, typed: str) -> None:
        self._typed_key = check_api_key(typed, "the key typed in the page") or None

    def forget_key(self) -> None:
        self._typed_key = None

    def destination(self, cfg: Config) -> Destination:
        if self.sandbox_on:
            sb = self.sandbox()
            assert self._sandbox_tmp is not None
            return Destination(True, sb.url, sb.api_key, "sandbox", Path(self._sandbox_tmp.name) / "state")
        url = check_base_url(cfg.api.base_url)
        key, source = self._typed_key, "typed"
        if key is None:
            key, source = env_api_key(cfg), "environment"
        return Destination(False, url, key, source if key else "none", state_dir_of(cfg))

    def key_source(self, cfg: Config) -> str:
        if self._typed_key:
            return "typed"
        return "environment" if env_api_key(cfg) else "none"

    def sandbox(self) -> Sandbox:
        """One sandbox for the server's life, with its own ledger, so "rerun what is left" on it sends only
        what is left (as it would against the API)."""
        from ..sandbox import Sandbox

        with self.lock:
            if self._sandbox is None:
                self._sandbox_tmp = tempfile.TemporaryDirectory(prefix="allobrain-ui-sandbox-")
                self._sandbox = Sandbox(data_dir=Path(self._sandbox_tmp.name) / "data").start()
            return self._sandbox

    # --- runs and results ------------------------------------------------------------------------

    def remember(self, results: Path) -> str:
        key = hashlib.sha256(str(results).encode()).hexdigest()[:16]
        self.results[key] = results
        return key

    def job(self, number: int) -> Job | None:
        return next((j for j in self.jobs if j.number == number), None)

    def running_job(self) -> Job | None:
        return next((j for j in self.jobs if j.running), None)

    def close(self, timeout: float = 60.0) -> None:
        """Stop every run as Ctrl-C would (in-flight uploads finish, results complete), then the sandbox."""
        for job in self.jobs:
            job.stop.request()
        for job in self.jobs:
            if job.thread is not None:
                job.thread.join(timeout)
        if self._sandbox is not None:
            self._sandbox.stop()
        if self._sandbox_tmp is not None:
            self._sandbox_tmp.cleanup()


def _defaults_absent(mapping: dict[str, str]) -> dict[str, str]:
    """Fields left out of the mapping keep their default header (which the file does not have)."""
    return {f: f for f in roundtrip.FIELDS if f not in mapping}
