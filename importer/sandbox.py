"""A stand-in for the AlloBrain QM API on loopback: the contract of the vendor doc, plus fault injection.

A real HTTP server (Werkzeug's threaded dev server, HTTP/1.1 keep-alive) with a WSGI app. Multipart
bodies go through Werkzeug's streaming form parser, whose file parts are written straight to disk, so a
1 GB upload never sits in memory. State lives in memory behind one lock; uploaded files under data_dir.

    with Sandbox(campaigns=["665dc5c57275b74ce35c03ab"]) as api:
        api.inject("/calls/audio", 503, "store_then_drop")
        ...  # talk to api.url with header x-api-key: api.api_key
        api.calls()
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from email_validator import EmailNotValidError, validate_email
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.utils import secure_filename
from werkzeug.wrappers import Request, Response

from importer import sandbox_faults as faults

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["SANDBOX_API_KEY", "Sandbox"]

logger = logging.getLogger("importer.sandbox")

SANDBOX_API_KEY = "sandbox-0000-key"

CALLS_PATH = "/calls/audio"
INVITE_PATH = "/users/invite"
_API_ROUTES = {CALLS_PATH: "POST", INVITE_PATH: "POST"}
_ROLES = ("agent", "supervisor", "admin")
_CALL_FIELDS = ("campaign_id", "conversation_timestamp", "agent_email")

_MIB = 1024 * 1024
# Non-file form fields are held in memory; Starlette (behind FastAPI) caps a part at 1 MiB too.
_FORM_FIELD_LIMIT = _MIB
_FORM_MAX_PARTS = 1000
# Content-Length covers the fields and multipart framing as well as the file, so the early check
# leaves this much room; the exact limit is enforced on the file bytes while they stream to disk.
_FORM_OVERHEAD = _MIB
_JSON_BODY_LIMIT = _MIB
# Above this a "timestamp" is surely milliseconds (10**11 s is the year 5138).
_MAX_TIMESTAMP = 10**11
_HANG_SECONDS = 120.0
_DIGITS = re.compile(r"[0-9]+")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _new_id() -> str:
    return secrets.token_hex(12)


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Answer first and read the unread body afterwards (413: not worth reading before refusing).
    drain_after: bool = False


def _json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Answer:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return _Answer(status, body, headers=dict(headers or {}))


def _detail(status: int, detail: Any, headers: dict[str, str] | None = None) -> _Answer:
    return _json_answer(status, {"detail": detail}, headers)


def _error(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


class _UploadTooLarge(Exception):
    """A file part grew past max_upload_mb while streaming (not a ValueError: the parser would hide it)."""


class _UploadSink:
    """Where Werkzeug's parser writes one file part: a file on disk, hashed and counted as it arrives."""

    def __init__(self, path: Path, budget: list[int]) -> None:
        self.path = path
        self._budget = budget  # [bytes left]: shared by every file part of the request
        self._fh = open(path, "w+b")  # noqa: SIM115 - lives as long as the request
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._budget[0] -= len(data)
        if self._budget[0] < 0:
            raise _UploadTooLarge
        self._fh.write(data)
        self._sha.update(data)
        self.size += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    @property
    def closed(self) -> bool:
        return self._fh.closed

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


@dataclass
class _Exchange:
    """One request in flight."""

    environ: WSGIEnvironment
    request: Request
    reader: faults.HashingReader
    entry: dict[str, Any]
    sinks: list[_UploadSink] = field(default_factory=list)
    stored: bool = False
    logged: bool = False


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
        data_dir: str | Path | None = None,
        seed: int | None = None,
    ) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {latency_ms!r}")
        if rate_limit < 0:
            raise ValueError(f"rate_limit must be >= 0, got {rate_limit!r}")
        if max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb!r}")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.url = ""
        self._campaigns = frozenset(campaigns or ())
        self._latency = latency_ms / 1000
        self._limiter = faults.TokenBucket(rate_limit) if rate_limit > 0 else None
        self._faults = faults.FaultPlan(
            paths=_API_ROUTES, fail_rate=fail_rate, drop_rate=drop_rate, seed=seed
        )
        self._max_upload = int(max_upload_mb * _MIB)
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self.data_dir: Path | None = None

        self._lock = threading.Lock()
        self._agents: dict[str, dict[str, Any]] = {}  # lowercased email -> record
        self._calls: list[dict[str, Any]] = []
        self._log: list[dict[str, Any]] = []

        self._stopping = threading.Event()
        self._lifecycle = threading.Lock()
        self._registry = faults.ConnectionRegistry()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False

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
            # Werkzeug prints to stderr and calls sys.exit(1) when it cannot bind; bind here instead so
            # the caller gets an OSError it can report, and hand Werkzeug the listening socket.
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((self.host, self.port))
                listener.listen(128)
            except OSError as exc:
                listener.close()
                raise OSError(exc.errno, f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
            handler = type(
                "BoundSandboxRequestHandler", (faults.SandboxRequestHandler,), {"registry": self._registry}
            )
            try:
                self._server = make_server(
                    self.host,
                    listener.getsockname()[1],
                    self._wsgi,
                    threaded=True,
                    request_handler=handler,
                    fd=listener.fileno(),
                )
            finally:
                listener.close()  # the server holds its own duplicate of the descriptor
            self.port = self._server.port
            if self._data_dir_arg is None:
                self.data_dir = Path(tempfile.mkdtemp(prefix="allobrain-sandbox-"))
            else:
                self.data_dir = self._data_dir_arg
            (self.data_dir / "calls").mkdir(parents=True, exist_ok=True)
            (self.data_dir / "incoming").mkdir(parents=True, exist_ok=True)
            shown = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"http://{shown}:{self.port}"

    # ------------------------------------------------------------------ inspection and setup

    def agents(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._agents.values()))

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._calls)

    def requests_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._log)

    def inject(self, path: str, *actions: object) -> None:
        self._faults.inject(path, actions)

    def pending_faults(self, path: str) -> int:
        """How many injected faults on `path` no request has consumed yet."""
        return self._faults.pending(path)

    def add_agent(self, email: str, name: str = "Existing Agent") -> None:
        with self._lock:
            self._agents.setdefault(email.lower(), self._agent_record(email, name, "agent", False))

    @staticmethod
    def _agent_record(email: str, name: str, role: str, send_invite_email: bool) -> dict[str, Any]:
        return {
            "id": _new_id(),
            "email": email,
            "name": name,
            "role": role,
            "send_invite_email": send_invite_email,
            "created_at": _now(),
        }

    # ------------------------------------------------------------------ WSGI

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        reader = faults.HashingReader(environ["wsgi.input"])
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
            "received_at": _now(),
        }
        ex = _Exchange(environ, request, reader, entry)
        try:
            answer = self._handle(ex)
            if answer is None:
                return Response(b"")(environ, start_response)  # dropped: Werkzeug's write fails quietly
            return self._respond(ex, answer, start_response)
        except (ClientDisconnected, OSError) as exc:
            # The client went away mid-body, or sent a broken chunked body: nobody is left to answer.
            lost = "client_disconnected" if isinstance(exc, ClientDisconnected) else "unreadable_body"
            ex.entry["fault"] = ex.entry["fault"] or lost
            self._record(ex, None)
            faults.drop_connection(environ)
            return Response(b"")(environ, start_response)
        except Exception:
            logger.exception("sandbox: unexpected error on %s %s", request.method, request.path)
            faults.force_close(environ)
            answer = _detail(500, "Internal Server Error")
            self._record(ex, answer.status)
            return self._make_response(answer)(environ, start_response)
        finally:
            self._discard_sinks(ex)

    def _respond(self, ex: _Exchange, answer: _Answer, start_response: StartResponse) -> Iterable[bytes]:
        if not answer.drain_after:
            _drain(ex.request.stream)
            self._record(ex, answer.status)
            return self._make_response(answer)(ex.environ, start_response)
        self._record(ex, answer.status)
        response = self._make_response(answer)
        response.response = self._answer_then_drain(ex, answer.body)
        return response(ex.environ, start_response)

    def _answer_then_drain(self, ex: _Exchange, body: bytes) -> Iterator[bytes]:
        # Werkzeug writes the answer as soon as it is yielded; reading the rest of the body afterwards
        # lets a client that sends everything before reading (requests does) see the 413, not a reset.
        yield body
        try:
            _drain(ex.request.stream)
        except (ClientDisconnected, OSError):
            faults.force_close(ex.environ)
        with self._lock:
            ex.entry["body_size"] = ex.reader.size
            ex.entry["body_sha256"] = ex.reader.sha256

    @staticmethod
    def _make_response(answer: _Answer) -> Response:
        response = Response(answer.body, status=answer.status, content_type=answer.content_type)
        for name, value in answer.headers.items():
            response.headers[name] = value
        response.headers["Content-Length"] = str(len(answer.body))
        return response

    def _record(self, ex: _Exchange, status: int | None) -> None:
        if ex.logged:
            return
        ex.logged = True
        ex.entry.update(status=status, body_size=ex.reader.size, body_sha256=ex.reader.sha256)
        with self._lock:
            self._log.append(ex.entry)

    def _drop(self, ex: _Exchange) -> None:
        self._record(ex, None)
        faults.drop_connection(ex.environ)

    # ------------------------------------------------------------------ routing and faults

    def _handle(self, ex: _Exchange) -> _Answer | None:
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
                return _detail(429, "Too Many Requests", {"Retry-After": retry})
        method = _API_ROUTES.get(path)
        if method is None:
            return _detail(404, "Not Found")
        if request.method != method:
            return _detail(405, "Method Not Allowed", {"Allow": method})
        key = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode("utf-8", "surrogateescape"), self.api_key.encode("utf-8")):
            return _detail(401, "Invalid or missing API key")

        fault = self._faults.next_fault(path, droppable=path == CALLS_PATH)
        if fault is not None:
            ex.entry["fault"] = fault.label
            if fault.kind == faults.STATUS:
                return _fault_answer(fault)
            if fault.kind == faults.RESET_MID_BODY:
                self._reset_mid_body(ex)
                return None
            if fault.kind == faults.HANG:
                # The client's read timeout is what is under test: hold the request, then drop it.
                self._record(ex, None)
                self._stopping.wait(_HANG_SECONDS)
                faults.drop_connection(ex.environ)
                return None

        answer = self._calls_audio(ex) if path == CALLS_PATH else self._invite(ex)
        if fault is not None and ex.stored:
            if fault.kind == faults.STORE_THEN_DROP:
                _drain(request.stream)
                self._drop(ex)
                return None
            if fault.kind == faults.STORE_THEN_STATUS and fault.status is not None:
                return _detail(fault.status, faults.default_detail(fault.status))
        return answer

    def _reset_mid_body(self, ex: _Exchange) -> None:
        declared = ex.request.content_length
        left = declared // 2 if declared else 64 * 1024
        stream = ex.request.stream
        while left > 0 and (chunk := stream.read(min(left, 64 * 1024))):
            left -= len(chunk)
        self._drop(ex)

    def _inspect(self, request: Request) -> _Answer:
        views = {"/_sandbox/agents": self.agents, "/_sandbox/calls": self.calls}
        view = views.get(request.path)
        if view is None:
            return _detail(404, "Not Found")
        if request.method != "GET":
            return _detail(405, "Method Not Allowed", {"Allow": "GET"})
        return _json_answer(200, view())

    # ------------------------------------------------------------------ POST /users/invite

    def _invite(self, ex: _Exchange) -> _Answer:
        raw = ex.request.stream.read(_JSON_BODY_LIMIT + 1)
        if len(raw) > _JSON_BODY_LIMIT:
            return self._too_large(ex, "Request body too large")
        try:
            body = json.loads(raw)
        except ValueError:
            return _detail(422, [_error(["body"], "JSON decode error", "json_invalid")])
        if not isinstance(body, dict):
            msg = "Input should be a valid dictionary or object to extract fields from"
            return _detail(422, [_error(["body"], msg, "model_attributes_type")])

        errors: list[dict[str, Any]] = []
        email = body.get("email")
        if email is None:
            errors.append(_error(["body", "email"], "Field required", "missing"))
        elif not isinstance(email, str):
            errors.append(_error(["body", "email"], "Input should be a valid string", "string_type"))
        else:
            try:
                # What pydantic's EmailStr does behind FastAPI.
                validate_email(email, check_deliverability=False)
            except EmailNotValidError as exc:
                errors.append(
                    _error(["body", "email"], f"value is not a valid email address: {exc}", "value_error")
                )
        name = body.get("name")
        if name is None:
            errors.append(_error(["body", "name"], "Field required", "missing"))
        elif not isinstance(name, str):
            errors.append(_error(["body", "name"], "Input should be a valid string", "string_type"))
        elif not name.strip():
            errors.append(
                _error(["body", "name"], "String should have at least 1 character", "string_too_short")
            )
        role = body.get("role")
        if role is None:
            errors.append(_error(["body", "role"], "Field required", "missing"))
        elif role not in _ROLES:
            errors.append(
                _error(["body", "role"], "Input should be 'agent', 'supervisor' or 'admin'", "enum")
            )
        send_invite = body.get("send_invite_email", True)
        if not isinstance(send_invite, bool):
            errors.append(
                _error(["body", "send_invite_email"], "Input should be a valid boolean", "bool_type")
            )
        if errors:
            return _detail(422, errors)

        assert isinstance(email, str) and isinstance(name, str) and isinstance(role, str)
        with self._lock:
            if email.lower() in self._agents:
                return _detail(409, "User already exists")
            record = self._agent_record(email, name, role, send_invite)
            self._agents[email.lower()] = record
        ex.stored = True
        return _json_answer(201, {k: record[k] for k in ("id", "email", "name", "role")})

    # ------------------------------------------------------------------ POST /calls/audio

    def _calls_audio(self, ex: _Exchange) -> _Answer:
        request = ex.request
        too_large = f"File too large: the limit is {self._max_upload / _MIB:g} MB"
        declared = request.content_length
        if declared is not None and declared > self._max_upload + _FORM_OVERHEAD:
            return self._too_large(ex, too_large)
        mimetype, options = parse_options_header(request.headers.get("Content-Type"))
        if mimetype != "multipart/form-data":
            return _detail(400, "Expected a multipart/form-data body")

        budget = [self._max_upload]
        assert self.data_dir is not None
        incoming = self.data_dir / "incoming"

        def stream_factory(
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None,
            content_length: int | None = None,
        ) -> IO[bytes]:
            sink = _UploadSink(incoming / f"{_new_id()}.part", budget)
            ex.sinks.append(sink)
            return sink  # type: ignore[return-value]

        parser = FormDataParser(
            stream_factory=stream_factory,
            max_form_memory_size=_FORM_FIELD_LIMIT,
            max_form_parts=_FORM_MAX_PARTS,
            silent=True,  # a malformed body parses as empty: answered below as missing fields
        )
        try:
            _, form, files = parser.parse(request.stream, mimetype, declared, options)
        except _UploadTooLarge:
            return self._too_large(ex, too_large)
        except RequestEntityTooLarge:
            return self._too_large(
                ex, f"A form field is over 1 MB or the form has over {_FORM_MAX_PARTS} parts"
            )
        return self._validate_and_store(ex, form, files)

    def _too_large(self, ex: _Exchange, detail: str) -> _Answer:
        answer = _detail(413, detail)
        answer.drain_after = True
        return answer

    def _validate_and_store(
        self, ex: _Exchange, form: MultiDict[str, str], files: MultiDict[str, FileStorage]
    ) -> _Answer:
        upload = files.get("file")
        missing = [] if upload is not None else ["file"]
        missing += [name for name in _CALL_FIELDS if not (form.get(name) or "").strip()]
        if missing:
            detail = f"Missing required field(s): {', '.join(missing)}"
            if upload is None and "file" in form:
                detail += " ('file' must be a file part with a filename)"
            return _detail(400, detail)
        assert upload is not None
        sink = upload.stream
        assert isinstance(sink, _UploadSink)
        if sink.size == 0:
            return _detail(400, f"Empty file: {upload.filename}")

        errors: list[dict[str, Any]] = []
        raw_ts = form["conversation_timestamp"]
        timestamp = int(raw_ts) if _DIGITS.fullmatch(raw_ts) else None
        if timestamp is None or not 0 < timestamp <= _MAX_TIMESTAMP:
            msg = "conversation_timestamp must be a positive integer of Unix seconds"
            errors.append(_error(["body", "conversation_timestamp"], msg, "value_error"))
        metadata, metadata_error = _parse_metadata(form.get("metadata"))
        if metadata_error is not None:
            errors.append(_error(["body", "metadata"], metadata_error, "value_error"))
        if errors:
            return _detail(422, errors)

        agent_email = form["agent_email"]
        campaign_id = form["campaign_id"]
        with self._lock:
            if agent_email.lower() not in self._agents:
                return _detail(404, f"Agent not found: {agent_email}")
        if self._campaigns and campaign_id not in self._campaigns:
            return _detail(404, f"Campaign not found: {campaign_id}")

        call_id = _new_id()
        assert self.data_dir is not None
        stored = self.data_dir / "calls" / f"{call_id}-{secure_filename(upload.filename or '') or 'upload'}"
        sink.close()
        os.replace(sink.path, stored)
        record = {
            "id": call_id,
            "campaign_id": campaign_id,
            "conversation_timestamp": timestamp,
            "agent_email": agent_email,
            "metadata": metadata,
            "fields": {name: form.get(name) for name in form},
            "file_name": upload.filename,
            "file_field": upload.name,
            "file_content_type": upload.content_type,
            "size": sink.size,
            "sha256": sink.sha256,
            "stored_path": str(stored),
            "received_at": ex.entry["received_at"],
        }
        with self._lock:
            self._calls.append(record)
        ex.stored = True
        return _json_answer(200, {"id": call_id})

    @staticmethod
    def _discard_sinks(ex: _Exchange) -> None:
        for sink in ex.sinks:
            sink.close()
            with contextlib.suppress(OSError):
                sink.path.unlink(missing_ok=True)  # a stored file was moved away already


def _parse_metadata(raw: str | None) -> tuple[list[dict[str, str]] | None, str | None]:
    """(parsed list, None) or (None, what is wrong). Absent or empty means no metadata."""
    if raw is None or raw == "":
        return None, None
    try:
        value = json.loads(raw)
    except ValueError:
        return None, 'metadata must be JSON: a list of {"key": ..., "value": ...} objects'
    if not isinstance(value, list):
        return None, 'metadata must be a JSON list of {"key": ..., "value": ...} objects'
    for index, item in enumerate(value):
        if not (
            isinstance(item, dict)
            and set(item) == {"key", "value"}
            and isinstance(item["key"], str)
            and isinstance(item["value"], str)
        ):
            return (
                None,
                f'metadata[{index}] must be an object with exactly a string "key" and a string "value"',
            )
    return value, None


def _drain(stream: IO[bytes]) -> None:
    """Read the rest of the body so the kept-alive connection is in step and its hash is complete."""
    while stream.read(64 * 1024):
        pass


def _fault_answer(fault: faults.Fault) -> _Answer:
    status = fault.status or 500
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if fault.body is None:
        return _detail(status, faults.default_detail(status), headers)
    return _Answer(status, fault.body, _sniff_content_type(fault.body), headers)


def _sniff_content_type(body: bytes) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"
