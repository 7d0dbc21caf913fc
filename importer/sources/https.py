"""Recordings behind https:// URLs (Twilio, Aircall, RingCentral hand these out), with requests.

Validation is one GET per URL with `Range: bytes=0-63`: a 206 gives the size (Content-Range) and the first
bytes at once; a server without Range support answers 200, and we read the first bytes and hang up. The
object is pinned by its ETag (else Last-Modified) and sent with `If-Match` (else `If-Unmodified-Since`);
the answer's size and ETag are compared as well, for servers that ignore conditions.

Headers (an Authorization token...) come from the environment variables `files.https.headers_env` names,
and are dropped when a redirect leaves the host. The CA bundle and proxies are requests' own
(REQUESTS_CA_BUNDLE, HTTPS_PROXY); ~/.netrc is never read. http:// only for loopback hosts.
"""

from __future__ import annotations

import email.utils
import io
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

from ..errors import SourceError
from ..files_config import HttpsConfig
from ..safety import clean_text, is_loopback_host
from .base import SNIFF_POOL, Checked, GuardedStream, Listed, PinnedLike, RangedReader, SourceProblem, changed

TIMEOUT = (10.0, 60.0)
MAX_REDIRECTS = 5


class _NoNetrc(requests.auth.AuthBase):
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


class HttpsBackend:
    def __init__(self, cfg: HttpsConfig) -> None:
        self._headers: dict[str, str] = {"User-Agent": "allobrain-import/0.1", "Accept-Encoding": "identity"}
        for header, env in cfg.headers_env:
            value = os.environ.get(env, "")
            if not value:
                raise SourceError(f"files.https.headers_env: the environment variable {env} (for the {header} "
                                  "header of https:// recordings) is not set; export it before the run")
            self._headers[header] = value
        self._secret = {h for h, _ in cfg.headers_env}
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._heads: dict[str, bytes] = {}
        self._ranged: set[str] = set()  # URLs whose server answered a Range request with 206

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.auth = _NoNetrc()  # any session auth keeps requests from reading ~/.netrc
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def _get(self, url: str, extra: dict[str, str]) -> requests.Response:
        """GET, following redirects ourselves: each hop must pass the URL rules, and the configured
        headers go only to the host they were configured for."""
        first = urlsplit(url).hostname
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname)):
                raise SourceProblem(f"redirected to {clean_text(url, 120)}: only https:// is followed",
                                    retryable=False)
            headers = {k: v for k, v in self._headers.items() if parts.hostname == first or k not in self._secret}
            response = self._session().get(url, headers=headers | extra, timeout=TIMEOUT, stream=True,
                                           allow_redirects=False)
            if response.status_code not in (301, 302, 303, 307, 308) or "Location" not in response.headers:
                return response
            response.close()
            url = urljoin(url, response.headers["Location"])
        raise SourceProblem(f"more than {MAX_REDIRECTS} redirects", retryable=False)

    # --- validation -----------------------------------------------------------------------------

    def stat_many(self, locations: Sequence[str]) -> list[Listed]:
        with ThreadPoolExecutor(max_workers=SNIFF_POOL, thread_name_prefix="https-stat") as pool:
            return list(pool.map(self._stat, locations))

    def _stat(self, url: str) -> Listed:
        try:
            response = self._get(url, {"Range": "bytes=0-63"})
        except SourceProblem as exc:
            return Listed(url, 0, 0, "", f"{exc.message}: {_shown(url)}")
        except requests.exceptions.SSLError as exc:
            raise SourceError(f"TLS error reaching {urlsplit(url).hostname} for the https:// recordings "
                              f"({clean_text(exc, 120)}); if it uses a private CA, set REQUESTS_CA_BUNDLE to "
                              "the CA file") from None
        except requests.RequestException as exc:
            raise SourceError(f"cannot reach {urlsplit(url).hostname} for the https:// recordings "
                              f"({clean_text(exc, 120)}); check the URLs and the network") from None
        with response:
            status = response.status_code
            if status in (404, 410):
                return Listed(url, 0, 0, "", f"file not found: {_shown(url)} (HTTP {status})")
            if status in (401, 403):
                return Listed(url, 0, 0, "", f"the server refused access (HTTP {status}): {_shown(url)}; check "
                                             "files.https.headers_env")
            if status not in (200, 206):
                return Listed(url, 0, 0, "", f"the server answered HTTP {status}: {_shown(url)}")
            size = _total_size(response)
            if size is None:
                return Listed(url, 0, 0, "", f"the server does not give the size of {_shown(url)} (no Content-Length)")
            try:
                head = response.raw.read(64)
            except Exception as exc:  # urllib3 raises its own types mid-body
                return Listed(url, size, 0, "", f"cannot read {_shown(url)} ({clean_text(exc, 120)})")
        with self._lock:
            self._heads[url] = head
            if status == 206:
                self._ranged.add(url)
        return Listed(url, size, _mtime_ns(response), _version(response), "")

    def read_head(self, item: Listed, n: int) -> bytes:
        with self._lock:
            return self._heads.pop(item.location, b"")[:n]

    # --- upload and durations -------------------------------------------------------------------

    def open(self, pinned: PinnedLike) -> BinaryIO:
        url = str(pinned.file_path)
        kind, _, value = pinned.file_version.partition(" ")
        extra = {"If-Match": value} if kind == "etag" else {"If-Unmodified-Since": value} if value else {}
        response = self._fetch(url, extra)
        if response.status_code != 200:
            response.close()
            raise SourceProblem(f"the server answered HTTP {response.status_code} for {_shown(url)}",
                                retryable=response.status_code in (206, 416))
        size = _total_size(response)
        now = _version(response)
        if size != pinned.file_size or (pinned.file_version and now != pinned.file_version):
            response.close()
            what = f"size {pinned.file_size} -> {size} bytes" if size != pinned.file_size else "ETag differs"
            raise changed(_shown(url), what)
        return GuardedStream(response.raw, pinned.file_size, _shown(url), response.close)  # type: ignore[return-value]

    def _fetch(self, url: str, extra: dict[str, str]) -> requests.Response:
        try:
            response = self._get(url, extra)
        except requests.RequestException as exc:
            raise SourceProblem(f"cannot reach the server of {_shown(url)} ({clean_text(exc, 120)})", retryable=True) from None
        status = response.status_code
        if status in (404, 410, 412):
            response.close()
            raise changed(_shown(url), "the server answered 412: ETag differs" if status == 412 else "deleted")
        if status in (401, 403):
            response.close()
            raise SourceProblem(f"the server refused access to {_shown(url)} (HTTP {status})", retryable=False)
        if status >= 500 or status == 429:
            response.close()
            raise SourceProblem(f"the server answered HTTP {status} for {_shown(url)}", retryable=True)
        return response

    def reader(self, checked: Checked, budget: int) -> BinaryIO | None:
        url = str(checked.path)
        if url not in self._ranged:
            return None  # no Range support: a duration would cost the whole download

        def fetch(start: int, length: int) -> bytes:
            try:
                response = self._fetch(url, {"Range": f"bytes={start}-{start + length - 1}"})
            except SourceProblem as exc:
                raise OSError(exc.message) from None
            with response:
                if response.status_code != 206:
                    raise OSError("no ranged answer")
                return response.raw.read(length)

        return io.BufferedReader(RangedReader(fetch, checked.size, budget), 16 * 1024)  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()


def _shown(url: str) -> str:
    """A URL as messages show it: without its query, where signed URLs carry their token."""
    parts = urlsplit(url)
    return url if not parts.query else url.split("?", 1)[0] + "?..."


def _total_size(response: requests.Response) -> int | None:
    crange = response.headers.get("Content-Range", "")
    if response.status_code == 206 and "/" in crange:
        total = crange.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _version(response: requests.Response) -> str:
    etag = response.headers.get("ETag", "")
    if etag and not etag.startswith("W/"):
        return f"etag {etag}"
    modified = response.headers.get("Last-Modified", "")
    return f"modified {modified}" if modified else ""


def _mtime_ns(response: requests.Response) -> int:
    modified = response.headers.get("Last-Modified")
    try:
        return int(email.utils.parsedate_to_datetime(modified).timestamp() * 1e9) if modified else 0
    except (TypeError, ValueError):
        return 0
