"""What the sandbox answers: a status, a body and headers, with FastAPI-style error bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Response

from . import faults


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Answer first and read the unread body afterwards (413: not worth reading before refusing).
    drain_after: bool = False


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Answer(status, body, headers=dict(headers or {}))


def detail(status: int, value: Any, headers: dict[str, str] | None = None) -> Answer:
    return json_answer(status, {"detail": value}, headers)


def error(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    """One item of a 422 `detail` list."""
    return {"loc": loc, "msg": msg, "type": type_}


def too_large(message: str) -> Answer:
    answer = detail(413, message)
    answer.drain_after = True
    return answer


def fault_answer(fault: faults.Fault) -> Answer:
    status = fault.status or 500
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    if fault.body is None:
        return detail(status, faults.default_detail(status), headers)
    return Answer(status, fault.body, _sniff_content_type(fault.body), headers)


def _sniff_content_type(body: bytes) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def make_response(answer: Answer) -> Response:
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    for name, value in answer.headers.items():
        response.headers[name] = value
    response.headers["Content-Length"] = str(len(answer.body))
    return response
