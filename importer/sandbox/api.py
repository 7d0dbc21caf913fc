"""The endpoints of the contract: POST /users/invite and POST /calls/audio, their validation and storage.

Multipart bodies go through Werkzeug's streaming form parser, whose file parts are written straight to
disk, so a 1 GB upload never sits in memory; a call's file is then moved under data_dir/calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from email_validator import EmailNotValidError, validate_email
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header
from werkzeug.utils import secure_filename

from .answers import Answer, detail, error, json_answer, too_large
from .store import new_id

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.wrappers import Request

    from .http import HashingReader
    from .store import SandboxStore

CALLS_PATH = "/calls/audio"
INVITE_PATH = "/users/invite"
API_ROUTES = {CALLS_PATH: "POST", INVITE_PATH: "POST"}
_ROLES = ("agent", "supervisor", "admin")
_CALL_FIELDS = ("campaign_id", "conversation_timestamp", "agent_email")

MIB = 1024 * 1024
# Non-file form fields are held in memory; Starlette (behind FastAPI) caps a part at 1 MiB too.
_FORM_FIELD_LIMIT = MIB
_FORM_MAX_PARTS = 1000
# Content-Length covers the fields and multipart framing as well as the file, so the early check
# leaves this much room; the exact limit is enforced on the file bytes while they stream to disk.
_FORM_OVERHEAD = MIB
_JSON_BODY_LIMIT = MIB
# Above this a "timestamp" is surely milliseconds (10**11 s is the year 5138).
_MAX_TIMESTAMP = 10**11
_DIGITS = re.compile(r"[0-9]+")


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
class Exchange:
    """One request in flight."""

    environ: WSGIEnvironment
    request: Request
    reader: HashingReader
    entry: dict[str, Any]
    sinks: list[_UploadSink] = field(default_factory=list)
    stored: bool = False
    logged: bool = False


def discard_uploads(ex: Exchange) -> None:
    for sink in ex.sinks:
        sink.close()
        with contextlib.suppress(OSError):
            sink.path.unlink(missing_ok=True)  # a stored file was moved away already


# ---------------------------------------------------------------------- POST /users/invite


def invite(ex: Exchange, store: SandboxStore) -> Answer:
    raw = ex.request.stream.read(_JSON_BODY_LIMIT + 1)
    if len(raw) > _JSON_BODY_LIMIT:
        return too_large("Request body too large")
    try:
        body = json.loads(raw)
    except ValueError:
        return detail(422, [error(["body"], "JSON decode error", "json_invalid")])
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        return detail(422, [error(["body"], msg, "model_attributes_type")])

    errors: list[dict[str, Any]] = []
    email = _string_field(body, "email", errors)
    if email is not None:
        try:
            # What pydantic's EmailStr does behind FastAPI.
            validate_email(email, check_deliverability=False)
        except EmailNotValidError as exc:
            errors.append(
                error(["body", "email"], f"value is not a valid email address: {exc}", "value_error")
            )
    name = _string_field(body, "name", errors)
    if name is not None and not name.strip():
        errors.append(error(["body", "name"], "String should have at least 1 character", "string_too_short"))
    role = body.get("role")
    if role is None:
        errors.append(error(["body", "role"], "Field required", "missing"))
    elif role not in _ROLES:
        errors.append(error(["body", "role"], "Input should be 'agent', 'supervisor' or 'admin'", "enum"))
    send_invite = body.get("send_invite_email", True)
    if not isinstance(send_invite, bool):
        errors.append(error(["body", "send_invite_email"], "Input should be a valid boolean", "bool_type"))
    if errors:
        return detail(422, errors)

    assert isinstance(email, str) and isinstance(name, str) and isinstance(role, str)
    record = store.create_agent(email, name, role, send_invite)
    if record is None:
        return detail(409, "User already exists")
    ex.stored = True
    return json_answer(201, {k: record[k] for k in ("id", "email", "name", "role")})


def _string_field(body: dict[str, Any], name: str, errors: list[dict[str, Any]]) -> str | None:
    """body[name] when it is a string; else None, with the 422 error for it added to `errors`."""
    value = body.get(name)
    if value is None:
        errors.append(error(["body", name], "Field required", "missing"))
    elif not isinstance(value, str):
        errors.append(error(["body", name], "Input should be a valid string", "string_type"))
    else:
        return value
    return None


# ---------------------------------------------------------------------- POST /calls/audio


def calls_audio(
    ex: Exchange, store: SandboxStore, *, campaigns: frozenset[str], max_upload: int, data_dir: Path
) -> Answer:
    """Parse, check and store one call; an empty `campaigns` accepts every campaign id."""
    request = ex.request
    too_large_message = f"File too large: the limit is {max_upload / MIB:g} MB"
    declared = request.content_length
    if declared is not None and declared > max_upload + _FORM_OVERHEAD:
        return too_large(too_large_message)
    mimetype, options = parse_options_header(request.headers.get("Content-Type"))
    if mimetype != "multipart/form-data":
        return detail(400, "Expected a multipart/form-data body")

    budget = [max_upload]
    incoming = data_dir / "incoming"

    def stream_factory(
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        sink = _UploadSink(incoming / f"{new_id()}.part", budget)
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
        return too_large(too_large_message)
    except RequestEntityTooLarge:
        return too_large(f"A form field is over 1 MB or the form has over {_FORM_MAX_PARTS} parts")
    return _validate_and_store(ex, form, files, store, campaigns, data_dir)


def _validate_and_store(
    ex: Exchange,
    form: MultiDict[str, str],
    files: MultiDict[str, FileStorage],
    store: SandboxStore,
    campaigns: frozenset[str],
    data_dir: Path,
) -> Answer:
    upload = files.get("file")
    missing = [] if upload is not None else ["file"]
    missing += [name for name in _CALL_FIELDS if not (form.get(name) or "").strip()]
    if missing:
        message = f"Missing required field(s): {', '.join(missing)}"
        if upload is None and "file" in form:
            message += " ('file' must be a file part with a filename)"
        return detail(400, message)
    assert upload is not None
    sink = upload.stream
    assert isinstance(sink, _UploadSink)
    if sink.size == 0:
        return detail(400, f"Empty file: {upload.filename}")

    errors: list[dict[str, Any]] = []
    raw_ts = form["conversation_timestamp"]
    timestamp = int(raw_ts) if _DIGITS.fullmatch(raw_ts) else None
    if timestamp is None or not 0 < timestamp <= _MAX_TIMESTAMP:
        msg = "conversation_timestamp must be a positive integer of Unix seconds"
        errors.append(error(["body", "conversation_timestamp"], msg, "value_error"))
    metadata, metadata_error = _parse_metadata(form.get("metadata"))
    if metadata_error is not None:
        errors.append(error(["body", "metadata"], metadata_error, "value_error"))
    if errors:
        return detail(422, errors)

    agent_email = form["agent_email"]
    campaign_id = form["campaign_id"]
    if not store.has_agent(agent_email):
        return detail(404, f"Agent not found: {agent_email}")
    if campaigns and campaign_id not in campaigns:
        return detail(404, f"Campaign not found: {campaign_id}")

    call_id = new_id()
    stored = data_dir / "calls" / f"{call_id}-{secure_filename(upload.filename or '') or 'upload'}"
    sink.close()
    os.replace(sink.path, stored)
    store.add_call(
        {
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
    )
    ex.stored = True
    return json_answer(200, {"id": call_id})


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
