"""Reading an answer: at most MAX_RESPONSE_BYTES of it, and the call id it carries."""

from __future__ import annotations

import json

import requests

from .safety import clean_text

MAX_RESPONSE_BYTES = 64 * 1024


def read_capped(response: requests.Response) -> bytes | None:
    """Read at most MAX_RESPONSE_BYTES of an answer: a hostile server cannot make us hold megabytes."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(16 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_RESPONSE_BYTES:
                break
    except requests.RequestException:
        return None
    finally:
        response.close()
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]


def call_id_of(body: bytes | None) -> str | None:
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("id", "call_id", "_id"):
            value = data.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return clean_text(value, 100)
    return None
