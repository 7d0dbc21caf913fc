"""A real S3 server for the tests: moto's standalone server (ThreadedMotoServer) on a free loopback port,
with a small WSGI layer in front that counts the requests it receives by kind and can inject the faults a
real store shows (a 403 on one object, a connection dropped in the middle of an object)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote

import pytest
import sourcekit

MISSING = "moto[server] and boto3 are test dependencies (pip install -e '.[test]')"


def require() -> None:
    sourcekit.require("boto3", "moto.server")


def kind_of(environ: dict) -> str:
    method = environ["REQUEST_METHOD"]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    path = environ.get("PATH_INFO", "/").lstrip("/")
    is_bucket = "/" not in path
    if method == "GET" and is_bucket and ("list-type" in query or not query or "prefix" in query):
        return "LIST"
    if method == "GET":
        return "GET_RANGE" if environ.get("HTTP_RANGE") else "GET"
    return method


class CountingS3:
    """`counts` by kind (LIST, HEAD, GET, GET_RANGE, PUT...); `deny(key)` answers 403 to GETs of that key;
    `drop(key, after, times)` cuts the connection `after` bytes into the next `times` full GETs;
    `fail(key, times)` answers 503 SlowDown to the next `times` GETs of that key; `home(bucket, region)` makes
    the bucket live in `region` as AWS does: listings say so (x-amz-bucket-region), and an object GET signed
    for another region is refused with 400 and that header (`wrong_region` counts those)."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app

        self.counts: Counter[str] = Counter()
        self.counting = True
        self._denied: set[str] = set()
        self._drops: dict[str, list[int]] = {}
        self._fails: dict[str, int] = {}
        self._homes: dict[str, str] = {}
        self.wrong_region = 0
        self._lock = threading.Lock()
        outer = self

        class Server(ThreadedMotoServer):
            def _server_entry(self) -> None:
                from moto.moto_server.threaded_moto_server import MotoRequestHandler
                from werkzeug.serving import make_server

                app = DomainDispatcherApplication(create_backend_app)
                self._server = make_server(self._ip_address, self._port, outer._wrap(app), True,
                                           request_handler=MotoRequestHandler)
                self._server_ready_event.set()
                self._server.serve_forever()

        self._server = Server(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> CountingS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def deny(self, key: str) -> None:
        self._denied.add(key)

    def drop(self, key: str, after: int, times: int = 1) -> None:
        self._drops[key] = [after, times]

    def fail(self, key: str, times: int) -> None:
        self._fails[key] = times

    def home(self, bucket: str, region: str) -> None:
        self._homes[bucket] = region

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def put_many(self, bucket: str, keys: list[str], body: bytes) -> None:
        """Store many objects straight into the server's own backend (the server runs in this process):
        25 ms a PUT over HTTP would make a 2,000-object case slow; what validation sees is the same."""
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        backend = get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]
        for key in keys:
            backend.put_object(bucket, key, body)

    def _wrap(self, app):  # type: ignore[no-untyped-def]
        def counting(environ, start_response):  # type: ignore[no-untyped-def]
            kind = kind_of(environ)
            key = unquote(environ.get("PATH_INFO", "/").lstrip("/")).partition("/")[2]
            with self._lock:
                if self.counting:
                    self.counts[kind] += 1
                drop = self._drops.get(key) if kind == "GET" else None
                if drop and drop[1] > 0:
                    drop[1] -= 1
                else:
                    drop = None
            bucket = unquote(environ.get("PATH_INFO", "/").lstrip("/")).partition("/")[0]
            home = self._homes.get(bucket)
            if home and kind in ("GET", "GET_RANGE") and _signed_region(environ) != home:
                with self._lock:
                    self.wrong_region += 1
                return _error(start_response, "400 Bad Request", "AuthorizationQueryParametersError",
                              [("x-amz-bucket-region", home)])
            if kind in ("GET", "GET_RANGE") and key in self._denied:
                return _error(start_response, "403 Forbidden", "AccessDenied")
            with self._lock:
                failing = self._fails.get(key, 0) if kind in ("GET", "GET_RANGE") else 0
                if failing:
                    self._fails[key] = failing - 1
            if failing:
                return _error(start_response, "503 Slow Down", "SlowDown")
            if home and kind == "LIST":
                def with_region(status, headers, *rest):  # type: ignore[no-untyped-def]
                    return start_response(status, [*headers, ("x-amz-bucket-region", home)], *rest)

                return app(environ, with_region)
            if drop:
                return self._cut(app(environ, start_response), drop[0])
            return app(environ, start_response)

        return counting

    @staticmethod
    def _cut(chunks, after: int) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        sent = 0
        for chunk in chunks:
            if sent + len(chunk) >= after:
                yield chunk[: after - sent]
                raise ConnectionAbortedError("the test store drops the connection mid-object")
            sent += len(chunk)
            yield chunk


def _signed_region(environ: dict) -> str:
    """The region a request was signed for: the credential scope of its query (presigned) or header."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    scope = query.get("X-Amz-Credential", [""])[0]
    if not scope:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = auth.partition("Credential=")[2].partition(",")[0]
    parts = scope.split("/")
    return parts[2] if len(parts) > 2 else ""


def _error(start_response, status: str, code: str, extra: list | None = None) -> list[bytes]:  # type: ignore[no-untyped-def]
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{code}</Message>"
            "</Error>").encode()
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                            *(extra or [])])
    return [body]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[CountingS3]:  # type: ignore[no-untyped-def]
    """A fresh S3 server with credentials in the environment (and no user files or instance metadata)."""
    require()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a log record per request slows moto down
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    server = CountingS3().start()
    try:
        yield server
    finally:
        server.stop()
