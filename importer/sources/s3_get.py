"""GetObject without boto3's per-call machinery: a presigned URL (botocore's own SigV4 signer) fetched through
one urllib3 pool shared by the threads.

Why: a boto3 `get_object` costs ~1.7 ms of client CPU (its event hooks, the endpoint rules, the request and
response models), and validation makes one per recording, an upload one per call: with 16 threads that CPU,
not the store, was the limit. Presigning costs ~0.2 ms and urllib3 ~0.3 ms (measured: BENCHMARKS.md).
What boto3 gave is kept: the ETag pinned with `If-Match` (a replaced object answers 412, never other bytes),
`Range` for the sniff, the body streamed from the socket (memory flat), three attempts for a store that
answers 5xx/SlowDown or drops the connection before answering, the client's credentials (refreshed as boto3
refreshes them), its endpoint and addressing style, the CA bundle the AWS settings name. The headers are
sent, not signed: SigV4 query signing covers the host, and S3 accepts other headers beside it.
"""

from __future__ import annotations

import random
import re
import threading
import time
from typing import Any

from ..safety import clean_text
from .base import SourceProblem, changed

ATTEMPTS = 3  # as boto3's "standard" retry mode, which the listing keeps
EXPIRES = 900  # seconds a presigned URL is good for; each request signs its own, so this only bounds a replay
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 307, 400})  # how S3 answers a request signed for another region
_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


class Body:
    """A GetObject body as boto3's StreamingBody reads: `read(n)`, `close()`. A body read to its end gives
    its connection back to the pool; one closed early drops it (draining a 1 GiB object to reuse a socket
    would cost more than a new connection)."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def read(self, n: int | None = -1) -> bytes:
        return self._response.read(None if n is None or n < 0 else n, decode_content=False)

    def close(self) -> None:
        response = self._response
        if response.length_remaining == 0:
            response.release_conn()
        else:
            response.close()


class PresignedGets:
    def __init__(self, client: Any, make_client: Any, pool: int, ca_bundle: str | None) -> None:
        import urllib3
        from botocore.httpsession import get_cert_path

        self._urllib3 = urllib3
        self._home = client.meta.region_name
        self._signers: dict[str, Any] = {self._home: client}  # region -> the client that signs for it
        self._make_client = make_client  # region -> a client like the first, for a bucket in another region
        self._region_of: dict[str, str] = {}
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(
            num_pools=8, maxsize=pool, cert_reqs="CERT_REQUIRED", ca_certs=get_cert_path(ca_bundle or True),
            timeout=urllib3.Timeout(connect=10, read=60), retries=False)

    def learn_region(self, bucket: str, region: str | None) -> None:
        """The region a listing answer named (`x-amz-bucket-region`): the GETs of that bucket sign for it."""
        if region:
            with self._lock:
                self._region_of[bucket] = region

    def _signer(self, bucket: str) -> Any:
        region = self._region_of.get(bucket, self._home)
        with self._lock:
            found = self._signers.get(region)
            if found is None:
                found = self._signers[region] = self._make_client(region)
            return found

    def get(self, url: str, bucket: str, key: str, etag: str, byte_range: str | None) -> tuple[Body, int]:
        headers = {"If-Match": etag} if etag else {}
        if byte_range:
            headers["Range"] = byte_range
        errors = self._urllib3.exceptions
        redirected = False
        attempt = 0
        while True:
            attempt += 1
            signed = self._signer(bucket).generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=EXPIRES)
            try:
                response = self._http.urlopen("GET", signed, headers=headers, preload_content=False,
                                              decode_content=False, redirect=False, retries=False)
            except (errors.HTTPError, OSError) as exc:
                if attempt < ATTEMPTS:
                    _pause(attempt)
                    continue
                raise SourceProblem(f"cannot read {url} from the store ({clean_text(_why(exc), 160)})",
                                    retryable=True) from None
            status = response.status
            if status in (200, 206):
                length = int(response.headers.get("Content-Length", "0") or 0)
                return Body(response), length
            code = _error_code(response)
            region = response.headers.get("x-amz-bucket-region")
            if (status in REDIRECT_STATUS and region and not redirected
                    and region != self._region_of.get(bucket, self._home)):
                redirected = True  # signed for the wrong region: once more, for the bucket's own
                self.learn_region(bucket, region)
                attempt -= 1
                continue
            if (status in RETRY_STATUS or code == "SlowDown") and attempt < ATTEMPTS:
                _pause(attempt)
                continue
            raise _problem(url, status, code)

    def close(self) -> None:
        self._http.clear()


def _error_code(response: Any) -> str:
    """The <Code> of an S3 error answer (it is small); the connection is dropped, not reused."""
    try:
        text = response.read(4096, decode_content=False)
    except Exception:  # the error body is a nicety: the status says enough
        text = b""
    finally:
        response.close()
    found = _CODE.search(text)
    return found.group(1).decode("ascii", "replace") if found else ""


def _problem(url: str, status: int, code: str) -> SourceProblem:
    """What an S3 error answer means for the row, worded as boto3's answers were."""
    if code in ("PreconditionFailed", "NoSuchKey") or status in (404, 412):
        return changed(url, "ETag differs" if status == 412 else "deleted")
    if code == "AccessDenied" or status == 403:
        return SourceProblem(f"the store refused access to {url} (HTTP 403 {code or 'AccessDenied'}): the "
                             "credentials need s3:GetObject on it", retryable=False)
    retry = status >= 500 or status == 429 or code == "SlowDown"
    return SourceProblem(f"the store answered {code or status} for {url}", retryable=retry)


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # urllib3 wraps the socket's error: show that one
    return f"{type(reason or exc).__name__}: {reason or exc}"


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.2 * 2**attempt))  # full jitter, as boto3's standard mode
