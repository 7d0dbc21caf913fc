"""The sandbox's WSGI app: what stands around the endpoints of `api.py`.

Every request is logged (with the size and SHA-256 of the body bytes read); then come the inspection
routes, the concurrency limit, latency, the rate limit, routing, the API key and injected or random faults,
in that order.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request, Response

from . import faults
from . import http as transport
from .answers import Answer, detail, fault_answer, json_answer, make_response
from .api import (
    API_ROUTES,
    CALLS_PATH,
    Exchange,
    calls_audio,
    discard_uploads,
    invite,
)
from .store import SandboxStore, now

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("importer.sandbox")

_HANG_SECONDS = 120.0


class SandboxApp:
    """The WSGI callable. `api_key` and `data_dir` are the owning Sandbox's, read on every request."""

    def __init__(
        self,
        *,
        store: SandboxStore,
        api_key: str,
        campaigns: frozenset[str],
        latency: float,
        limiter: faults.TokenBucket | None,
        quota: faults.DailyQuota | None = None,
        fault_plan: faults.FaultPlan,
        max_upload: int,
        stopping: threading.Event,
        max_concurrency: int = 0,
    ) -> None:
        self.api_key = api_key
        self.data_dir: Path | None = None  # set once the Sandbox is bound
        self._store = store
        self._campaigns = campaigns
        self._latency = latency
        self._limiter = limiter
        self._quota = quota
        self._faults = fault_plan
        self._max_upload = max_upload
        self._stopping = stopping  # set by stop(): releases "hang" faults and latency sleeps
        self._max_concurrency = max_concurrency  # 0 = no limit; above it, 429 (as an API gateway does)
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.peak_in_flight = 0  # the most API requests ever served at once (429s not counted)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        reader = transport.HashingReader(environ["wsgi.input"])
        environ["wsgi.input"] = reader
        request = Request(environ)
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": None,
            "fault": None,
            "body_size": 0,
            "body_sha256": None,
            "content_type": request.headers.get("Content-Type"),
            "received_at": now(),
        }
        ex = Exchange(environ, request, reader, entry)
        counted = False
        try:
            if self._max_concurrency and request.path in API_ROUTES:
                counted = self._enter()
                if not counted:
                    ex.entry["fault"] = "max_concurrency"
                    answer = detail(429, f"Too Many Requests: more than {self._max_concurrency} at once")
                    return self._respond(ex, answer, start_response)
            answer = self._handle(ex)
            if answer is None:
                return Response(b"")(environ, start_response)  # dropped: Werkzeug's write fails quietly
            return self._respond(ex, answer, start_response)
        except (ClientDisconnected, OSError) as exc:
            # The client went away mid-body, or sent a broken chunked body: nobody is left to answer.
            lost = "client_disconnected" if isinstance(exc, ClientDisconnected) else "unreadable_body"
            ex.entry["fault"] = ex.entry["fault"] or lost
            self._record(ex, None)
            transport.drop_connection(environ)
            return Response(b"")(environ, start_response)
        except Exception:
            logger.exception("sandbox: unexpected error on %s %s", request.method, request.path)
            transport.force_close(environ)
            answer = detail(500, "Internal Server Error")
            self._record(ex, answer.status)
            return make_response(answer)(environ, start_response)
        finally:
            if counted:
                with self._in_flight_lock:
                    self._in_flight -= 1
            discard_uploads(ex)

    def _enter(self) -> bool:
        """Count this request in; False when it is one too many: refused at the door, it is not counted
        (while its body drains it must not make the next request look like one too many)."""
        with self._in_flight_lock:
            if self._in_flight >= self._max_concurrency:
                return False
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            return True

    # ------------------------------------------------------------------ answering and the request log

    def _respond(self, ex: Exchange, answer: Answer, start_response: StartResponse) -> Iterable[bytes]:
        if not answer.drain_after:
            transport.drain(ex.request.stream)
            self._record(ex, answer.status)
            return make_response(answer)(ex.environ, start_response)
        self._record(ex, answer.status)
        response = make_response(answer)
        response.response = self._answer_then_drain(ex, answer.body)
        return response(ex.environ, start_response)

    def _answer_then_drain(self, ex: Exchange, body: bytes) -> Iterator[bytes]:
        # Werkzeug writes the answer as soon as it is yielded; reading the rest of the body afterwards
        # lets a client that sends everything before reading (requests does) see the 413, not a reset.
        yield body
        try:
            transport.drain(ex.request.stream)
        except (ClientDisconnected, OSError):
            transport.force_close(ex.environ)
        self._store.update_entry(ex.entry, body_size=ex.reader.size, body_sha256=ex.reader.sha256)

    def _record(self, ex: Exchange, status: int | None) -> None:
        if ex.logged:
            return
        ex.logged = True
        ex.entry.update(status=status, body_size=ex.reader.size, body_sha256=ex.reader.sha256)
        self._store.log(ex.entry)

    def _drop(self, ex: Exchange) -> None:
        self._record(ex, None)
        transport.drop_connection(ex.environ)

    # ------------------------------------------------------------------ routing and faults

    def _handle(self, ex: Exchange) -> Answer | None:
        request = ex.request
        path = request.path
        if path.startswith("/_sandbox/"):
            return self._inspect(request)

        if self._latency:
            self._stopping.wait(self._latency)
        if self._limiter is not None:
            wait = self._limiter.take()
            if wait:
                ex.entry["fault"] = "rate_limit"
                retry = faults.retry_after_seconds(wait)
                return detail(429, "Too Many Requests", {"Retry-After": retry})
        method = API_ROUTES.get(path)
        if method is None:
            return detail(404, "Not Found")
        if request.method != method:
            return detail(405, "Method Not Allowed", {"Allow": method})
        key = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode("utf-8", "surrogateescape"), self.api_key.encode("utf-8")):
            return detail(401, "Invalid or missing API key")

        fault = self._faults.next_fault(path, droppable=path == CALLS_PATH)
        if fault is not None:
            ex.entry["fault"] = fault.label
            if fault.kind == faults.STATUS:
                return fault_answer(fault)
            if fault.kind == faults.RESET_MID_BODY:
                self._reset_mid_body(ex)
                return None
            if fault.kind == faults.HANG:
                # The client's read timeout is what is under test: hold the request, then drop it.
                self._record(ex, None)
                self._stopping.wait(_HANG_SECONDS)
                transport.drop_connection(ex.environ)
                return None

        if self._quota is not None and path == CALLS_PATH:
            wait = self._quota.reserve()
            if wait:
                ex.entry["fault"] = "daily_quota"
                return detail(429, f"Daily quota of {self._quota.limit} uploads reached; try again later",
                              {"Retry-After": faults.retry_after_seconds(wait)})
            try:
                answer = self._endpoint(ex)
            finally:
                self._quota.settle(ex.stored)
        else:
            answer = self._endpoint(ex)
        if fault is not None and ex.stored:
            if fault.kind == faults.STORE_THEN_DROP:
                transport.drain(request.stream)
                self._drop(ex)
                return None
            if fault.kind == faults.STORE_THEN_STATUS and fault.status is not None:
                return detail(fault.status, faults.default_detail(fault.status))
        return answer

    def _endpoint(self, ex: Exchange) -> Answer:
        if ex.request.path != CALLS_PATH:
            return invite(ex, self._store)
        assert self.data_dir is not None
        return calls_audio(
            ex,
            self._store,
            campaigns=self._campaigns,
            max_upload=self._max_upload,
            data_dir=self.data_dir,
        )

    def _reset_mid_body(self, ex: Exchange) -> None:
        declared = ex.request.content_length
        left = declared // 2 if declared else 64 * 1024
        stream = ex.request.stream
        while left > 0 and (chunk := stream.read(min(left, 64 * 1024))):
            left -= len(chunk)
        self._drop(ex)

    def _inspect(self, request: Request) -> Answer:
        views = {"/_sandbox/agents": self._store.agents, "/_sandbox/calls": self._store.calls}
        view = views.get(request.path)
        if view is None:
            return detail(404, "Not Found")
        if request.method != "GET":
            return detail(405, "Method Not Allowed", {"Allow": "GET"})
        return json_answer(200, view())
