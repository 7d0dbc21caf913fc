"""A stand-in for the AlloBrain QM API on loopback: the contract of the vendor doc, plus fault injection.

A real HTTP server (Werkzeug's threaded dev server, HTTP/1.1 keep-alive) with a WSGI app. Multipart
bodies go through Werkzeug's streaming form parser, whose file parts are written straight to disk, so a
1 GB upload never sits in memory. State lives in memory behind one lock; uploaded files under data_dir.

    with Sandbox(campaigns=["665dc5c57275b74ce35c03ab"]) as api:
        api.inject("/calls/audio", 503, "store_then_drop")
        ...  # talk to api.url with header x-api-key: api.api_key
        api.calls()

This module is the public face: lifecycle and inspection. The rest, one concern a module:
`app` (the WSGI app: request log, routing, key, faults), `api` (the endpoints),
`answers` (answers and error bodies), `store` (the state), `faults` (the fault
model) and `http` (sockets and the request handler).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import faults
from . import http as transport
from .api import API_ROUTES, MIB
from .app import SandboxApp
from .store import SandboxStore

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

__all__ = ["SANDBOX_API_KEY", "Sandbox"]

SANDBOX_API_KEY = "sandbox-0000-key"


class Sandbox:
    """The stand-in API. `start()` serves in a daemon thread; `serve_forever()` blocks (Ctrl-C ends it)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = SANDBOX_API_KEY,
        campaigns: Iterable[str] | None = None,
        latency_ms: int = 0,
        rate_limit: float = 0,
        fail_rate: float = 0.0,
        drop_rate: float = 0.0,
        max_upload_mb: float = 2048,
        daily_quota: int = 0,
        data_dir: str | Path | None = None,
        seed: int | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        max_concurrency: int = 0,
    ) -> None:
        if not latency_ms >= 0:  # written so that NaN fails too
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms!r}")
        if not (0 <= rate_limit < math.inf):
            raise ValueError(f"rate_limit must be a number >= 0, got {rate_limit!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 0:
            raise ValueError(f"max_concurrency must be a whole number >= 0 (0 = no limit), got {max_concurrency!r}")
        if not (0 < max_upload_mb < math.inf):
            raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb!r}")
        if not (0 <= port <= 65535):
            raise ValueError(f"port must be from 1 to 65535, got {port!r}")
        if not api_key:
            raise ValueError("the API key must not be empty")
        self._tls = (transport.server_tls_context(str(tls_cert or ""), str(tls_key or ""))
                     if tls_cert or tls_key else None)
        self.host = host
        self.port = port
        self.url = ""
        self._faults = faults.FaultPlan(paths=API_ROUTES, fail_rate=fail_rate, drop_rate=drop_rate, seed=seed)
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None

        self._store = SandboxStore()
        self._stopping = threading.Event()
        self._app = SandboxApp(
            store=self._store,
            api_key=api_key,
            campaigns=frozenset(campaigns or ()),
            latency=latency_ms / 1000,
            limiter=faults.TokenBucket(rate_limit) if rate_limit > 0 else None,
            # 429 with Retry-After = seconds until a slot frees, once N uploads were accepted in 24 h
            quota=faults.DailyQuota(daily_quota) if daily_quota else None,
            fault_plan=self._faults,
            max_upload=int(max_upload_mb * MIB),
            stopping=self._stopping,
            max_concurrency=max_concurrency,
        )

        self._lifecycle = threading.Lock()
        self._registry = transport.ConnectionRegistry()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False

    # The app reads these on every request, so they live on it; to callers they are plain attributes.

    @property
    def api_key(self) -> str:
        return self._app.api_key

    @api_key.setter
    def api_key(self, value: str) -> None:
        self._app.api_key = value

    @property
    def data_dir(self) -> Path | None:
        return self._app.data_dir

    @data_dir.setter
    def data_dir(self, value: Path | None) -> None:
        self._app.data_dir = value

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Sandbox:
        self._bind()
        assert self._server is not None
        self._serving = True
        # A short poll interval keeps stop() quick: shutdown() waits for the loop to notice it.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sandbox-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._bind()
        assert self._server is not None
        self._serving = True
        try:
            # Werkzeug's serve_forever returns on Ctrl-C (it catches KeyboardInterrupt).
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        with self._lifecycle:
            if self._server is None or self._stopped:
                return
            self._stopped = True
            self._stopping.set()  # releases "hang" faults and latency sleeps
            if self._serving:
                self._server.shutdown()
            self._server.server_close()
            self._registry.close_all(timeout=5.0)
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(5.0)
            self._store.close()
            if self._data_dir_arg is None and self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _bind(self) -> None:
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("this Sandbox was already started; create a new one")
            self._server = transport.listen(self.host, self.port, self._app, self._registry, self._tls)
            self.port = self._server.port
            if self._data_dir_arg is None:
                self.data_dir = Path(tempfile.mkdtemp(prefix="allobrain-sandbox-"))
            else:
                self.data_dir = self._data_dir_arg
            (self.data_dir / "calls").mkdir(parents=True, exist_ok=True)
            (self.data_dir / "incoming").mkdir(parents=True, exist_ok=True)
            if self._data_dir_arg is not None:
                self._store.keep_in(self.data_dir / "sandbox-state.jsonl")
            shown = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"{'https' if self._tls else 'http'}://{shown}:{self.port}"

    # ------------------------------------------------------------------ inspection and setup

    def agents(self) -> list[dict[str, Any]]:
        return self._store.agents()

    def calls(self) -> list[dict[str, Any]]:
        return self._store.calls()

    @property
    def tls_handshakes(self) -> int:
        """TLS handshakes begun on this sandbox (0 when it serves plain http)."""
        return self._registry.handshakes

    def requests_log(self) -> list[dict[str, Any]]:
        return self._store.requests_log()

    def inject(self, path: str, *actions: object) -> None:
        self._faults.inject(path, actions)

    def pending_faults(self, path: str) -> int:
        """How many injected faults on `path` no request has consumed yet."""
        return self._faults.pending(path)

    @property
    def peak_in_flight(self) -> int:
        """With max_concurrency: the most API requests it served at once (the 429s it answered not counted)."""
        return self._app.peak_in_flight

    def add_agent(self, email: str, name: str = "Existing Agent") -> None:
        self._store.add_agent(email, name)
