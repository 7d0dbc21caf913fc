"""The body of an upload: the recording hashed as it is read, the multipart stream that counts what left,
and the stable boundary that makes every attempt of one call byte-identical."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from requests_toolbelt import MultipartEncoder


class Keyed(Protocol):
    """What names a call in the ledger (a validated row satisfies it)."""

    campaign_id: str
    agent_email: str
    timestamp: int
    file_name: str
    file_size: int


class CountingBody:
    """A streaming request body that remembers how much of itself has been handed to the socket,
    so a failure can be judged: before the whole body left, the server cannot have taken the call.
    `take(n)` (a bandwidth cap, pacing.ByteBucket) holds each slice until its bytes may be sent."""

    def __init__(self, encoder: MultipartEncoder, take: Callable[[int], object] | None = None) -> None:
        self._encoder = encoder
        self._take = take
        self.len = encoder.len
        self.sent = 0

    def __len__(self) -> int:
        return self.len

    def read(self, size: int = -1) -> bytes:
        chunk = self._encoder.read(size if size and size > 0 else 64 * 1024)
        if self._take is not None:
            self._take(len(chunk))
        self.sent += len(chunk)
        return chunk

    @property
    def fully_sent(self) -> bool:
        return self.sent >= self.len


class HashingReader:
    """A recording as the multipart body reads it, hashed on the way: the fingerprint of exactly the bytes
    that were sent costs one pass the upload makes anyway."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self._fh = fh
        self.len = size  # requests-toolbelt sizes a part by `len`
        self._hash = hashlib.sha256()
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self._hash.update(chunk)
        self.read_bytes += len(chunk)
        self.len = max(0, self.len - len(chunk))
        return chunk

    @property
    def fingerprint(self) -> str:
        return self._hash.hexdigest()


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """The same fingerprint as an upload of `path` records (sha256 of its bytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def multipart_boundary(call: Keyed) -> str:
    """Stable per call (its ledger key), so every attempt sends the same bytes."""
    key = f"{call.campaign_id}|{call.agent_email}|{call.timestamp}|{call.file_name}|{call.file_size}"
    return "----allobrain" + hashlib.sha256(key.encode()).hexdigest()[:32]


def metadata_json(metadata: Sequence[tuple[str, str]]) -> str:
    return json.dumps([{"key": k, "value": v} for k, v in metadata], ensure_ascii=False, separators=(",", ":"))
