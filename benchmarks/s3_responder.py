"""A benchmark-only S3 responder: ListObjectsV2 and (ranged, If-Match) GetObject/HeadObject from memory.

NOT an S3 server and never used by the tests: it checks no signature, stores nothing but what it was given at
start, and knows three requests. It exists so that `bench_sources.py --store fast` measures the *client*:
moto's server (werkzeug) closes the connection after every answer and starts a thread per connection, so on
this 2-core machine it serves ~100 requests/s and a benchmark against it measures moto. This one keeps
connections alive (HTTP/1.1, as S3 does) in one asyncio loop, a few thousand requests/s on one core.

Requests are counted by kind as tests/s3kit.py counts them: LIST, HEAD, GET, GET_RANGE.
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
import hashlib
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape


@dataclass
class Stored:
    body: bytes
    etag: str  # quoted, as S3 sends it
    last_modified: str  # RFC 1123, for the Last-Modified header
    iso: str  # ISO 8601, for the listing

    @property
    def etag_xml(self) -> str:
        return self.etag.replace('"', "&quot;")


class Store:
    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, Stored]] = {}
        self._sorted: dict[str, list[str]] = {}
        self.counts: Counter[str] = Counter()

    def put(self, bucket: str, key: str, body: bytes, mtime: float) -> None:
        stamp = email.utils.formatdate(mtime, usegmt=True)
        iso = email.utils.parsedate_to_datetime(stamp).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        self.buckets.setdefault(bucket, {})[key] = Stored(body, f'"{hashlib.md5(body).hexdigest()}"', stamp, iso)
        self._sorted.pop(bucket, None)

    def keys(self, bucket: str) -> list[str]:
        if bucket not in self._sorted:
            self._sorted[bucket] = sorted(self.buckets.get(bucket, {}))
        return self._sorted[bucket]


def _error(status: str, code: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            "</Error>").encode()
    return status, [("Content-Type", "application/xml")], body


def list_objects(store: Store, bucket: str, query: dict[str, list[str]]) -> tuple[str, list[tuple[str, str]], bytes]:
    if bucket not in store.buckets:
        return _error("404 Not Found", "NoSuchBucket", "The specified bucket does not exist")
    one = {k: v[0] for k, v in query.items()}
    prefix, delimiter = one.get("prefix", ""), one.get("delimiter", "")
    max_keys = min(int(one.get("max-keys", "1000")), 1000)
    after = one.get("continuation-token") or one.get("start-after") or ""
    keys = store.keys(bucket)
    i = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
    contents: list[str] = []
    prefixes: list[str] = []
    last = ""
    truncated = False
    while i < len(keys):
        key = keys[i]
        if not key.startswith(prefix):
            break
        if len(contents) + len(prefixes) == max_keys:
            truncated = True
            break
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = key[: cut + len(delimiter)]
            prefixes.append(common)
            last = common + "\U0010ffff"  # past every key under this common prefix
            i = bisect.bisect_right(keys, last)
            continue
        item = store.buckets[bucket][key]
        contents.append(f"<Contents><Key>{escape(key)}</Key><LastModified>{item.iso}</LastModified>"
                        f"<ETag>{item.etag_xml}</ETag><Size>{len(item.body)}</Size>"
                        "<StorageClass>STANDARD</StorageClass></Contents>")
        last = key
        i += 1
    token = f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if truncated else ""
    body = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(contents) + len(prefixes)}"
            f"</KeyCount><MaxKeys>{max_keys}</MaxKeys><Delimiter>{escape(delimiter)}</Delimiter>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{token}{''.join(contents)}"
            + "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes)
            + "</ListBucketResult>").encode()
    return "200 OK", [("Content-Type", "application/xml")], body


def get_object(store: Store, bucket: str, key: str, headers: dict[str, str],
               head: bool) -> tuple[str, list[tuple[str, str]], bytes]:
    item = store.buckets.get(bucket, {}).get(key)
    if item is None:
        return _error("404 Not Found", "NoSuchKey", "The specified key does not exist.")
    if_match = headers.get("if-match")
    if if_match and if_match != "*" and item.etag not in [t.strip() for t in if_match.split(",")]:
        return _error("412 Precondition Failed", "PreconditionFailed", "At least one of the preconditions failed")
    common = [("ETag", item.etag), ("Last-Modified", item.last_modified), ("Accept-Ranges", "bytes"),
              ("Content-Type", "audio/wav")]
    size = len(item.body)
    wanted = headers.get("range", "")
    if wanted.startswith("bytes=") and size:
        first, _, end = wanted[6:].partition("-")
        start = int(first) if first else max(0, size - int(end))
        stop = min(int(end), size - 1) if first and end else size - 1
        if start >= size:
            return _error("416 Requested Range Not Satisfiable", "InvalidRange", "The range is not satisfiable")
        body = b"" if head else item.body[start : stop + 1]
        return "206 Partial Content", [*common, ("Content-Range", f"bytes {start}-{stop}/{size}"),
                                       ("Content-Length", str(stop - start + 1))], body
    return "200 OK", [*common, ("Content-Length", str(size))], b"" if head else item.body


class Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; requests without bodies (GET, HEAD), one after another on a connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            lines = head.split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if length:  # not a request this responder knows (PUT...): its body is dropped with the connection
                self.transport.close()  # type: ignore[attr-defined]
                return
            self.answer(method, target, headers)

    def answer(self, method: str, target: str, headers: dict[str, str]) -> None:
        path, _, query_text = target.partition("?")
        bucket, _, key = unquote(path.lstrip("/")).partition("/")
        query = parse_qs(query_text, keep_blank_values=True)
        if method == "GET" and not key:
            self.store.counts["LIST"] += 1
            status, extra, body = list_objects(self.store, bucket, query)
        elif method in ("GET", "HEAD"):
            self.store.counts["HEAD" if method == "HEAD" else "GET_RANGE" if "range" in headers else "GET"] += 1
            status, extra, body = get_object(self.store, bucket, key, headers, method == "HEAD")
        else:
            self.store.counts[method] += 1
            status, extra, body = _error("501 Not Implemented", "NotImplemented", "benchmark responder")
        if not any(name == "Content-Length" for name, _ in extra):
            extra = [*extra, ("Content-Length", str(len(body)))]
        out = [f"HTTP/1.1 {status}", "Server: bench-s3-responder", "x-amz-request-id: bench",
               *(f"{name}: {value}" for name, value in extra), "", ""]
        head = "\r\n".join(out).encode("latin-1")
        if len(body) < 65536:  # one send for a small answer; a large body is not copied
            self.transport.write(head + body)  # type: ignore[attr-defined]
        else:
            self.transport.writelines((head, body))  # type: ignore[attr-defined]


async def serve(store: Store, host: str = "127.0.0.1", port: int = 0) -> asyncio.base_events.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: Http(store), host, port, backlog=1024)
