"""The HTTP client: invite an agent, upload a call, each with the spec's retry policy.

- one `requests.Session` per thread, no redirects, a timeout on every request, `~/.netrc` ignored;
- the key only ever travels as the `x-api-key` header to the configured base URL;
- an upload streams the recording from its source (disk, S3, SFTP, https: `sources`, reopened and checked
  against what validation saw on every attempt) through a multipart body rebuilt for every attempt, with a
  boundary derived from the call so that a resent body is byte-identical;
- what a response or a failure means is decided by `policy`, not here; the session (trusted CAs, the proxy)
  comes from `network`, and a TLS or proxy failure, classified by `tls`, is never retried.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import requests
from requests_toolbelt import MultipartEncoder

from . import network, tls, transport
from .body import CountingBody, HashingReader, metadata_json, multipart_boundary
from .outage import Outage
from .policy import (
    Verdict,
    classify_failure,
    classify_status,
    congestion_reason,
    error_message,
    quota_wait,
    retry_delay,
)
from .responses import call_id_of, read_capped
from .safety import check_base_url, clean_text, redact
from .slots import wait_for_slot
from .sources import SourceProblem, Sources
from .transport import Observer

log = logging.getLogger("importer.client")



class CallLike(Protocol):
    """What an upload needs to know about a call (a validated manifest row satisfies it)."""

    row: int
    file_path: Path | str
    file_name: str
    file_size: int
    file_mtime_ns: int
    file_version: str
    agent_email: str
    timestamp: int
    campaign_id: str
    metadata: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Attempted:
    """The end of one request and its retries."""

    verdict: Verdict
    http_status: int | None
    message: str
    attempts: int
    call_id: str | None = None
    interrupted: bool = False  # stopped (Ctrl-C or an auth abort) while waiting to retry: never taken
    fingerprint: str | None = None  # sha256 of the recording as it was sent (the same-recording rule)
    quota_seconds: float | None = None  # a 429 beyond max_retry_after: the API's quota, open again in this long
    setup_problem: tls.ConnectProblem | None = None  # a TLS or proxy failure: not retried, nothing was sent
    from_source: bool = False  # the recording's store failed, not the API (no reason to think the API down)


class RateLimiter:
    """Spaces requests evenly across all threads (`rate` per second; 0 = no limit), and lets a 429's
    Retry-After hold every thread, not only the one that got it."""

    def __init__(self, rate: float = 0.0) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def pause_until(self, when: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, when)

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a slot; False if `stop` was set while waiting."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next, self._paused_until)
            if self.interval:
                self._next = slot + self.interval
        return wait_for_slot(slot, self._after_pause, stop)

    def _after_pause(self) -> float | None:
        """A new slot, spaced like any other, when a 429 that came meanwhile holds every thread longer."""
        with self._lock:
            if self._paused_until <= time.monotonic():
                return None
            slot = max(self._paused_until, self._next)
            if self.interval:
                self._next = slot + self.interval
            return slot


class ApiClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        max_attempts: int = 6,
        max_retry_after: float = 120.0,
        limiter: RateLimiter | None = None,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
        bandwidth: Callable[[int], object] | None = None,  # a bandwidth cap (pacing.ByteBucket.take)
        ca_bundle: str | None = None,
        sources: Sources | None = None,
        observer: Observer | None = None,
        outage: Outage | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self._ca_bundle = ca_bundle
        self._where = network.endpoint(self.base_url, ca_bundle)
        self._key = api_key
        self.timeout = (connect_timeout, timeout)
        self.write_timeout = timeout  # sending gets the read timeout's patience, not the connect's (transport)
        self.observer = observer
        self.outage = outage or Outage(0.0)  # ridden out by run.py's choice (upload.ride_out_seconds)
        self.max_attempts = max_attempts
        self.max_retry_after = max_retry_after
        self.limiter = limiter or RateLimiter(0)
        self.stop = stop or threading.Event()
        self._rng = rng or random.Random()
        self.bandwidth = bandwidth
        self.sources = sources or Sources()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"ApiClient({self.base_url!r})"

    # --- sessions ---------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            # No ~/.netrc, our CAs, and the proxy read from the environment once (see network.make_session).
            # Redirects are refused by allow_redirects=False on every request. (max_redirects=0 must not be
            # used for that: requests then raises TooManyRedirects on any 3xx with a Location, which reads as
            # a lost connection after the body was sent, so the row became `unknown` instead of `failed`.)
            s = network.make_session(self.base_url, self._ca_bundle)
            transport.use_write_timeout(s, self.write_timeout)
            self._local.session = s
            with self._sessions_lock:
                self._sessions.append(s)
        return s

    def close(self) -> None:
        with self._sessions_lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()
        self.sources.close()

    # --- public calls -----------------------------------------------------------------------------

    def invite(self, email: str, name: str, *, role: str = "agent", send_invite_email: bool = False) -> Attempted:
        payload = json.dumps(
            {"email": email, "name": name, "role": role, "send_invite_email": send_invite_email}
        ).encode()

        def send(session: requests.Session) -> requests.Response:
            return session.post(
                self.base_url + "/users/invite",
                data=payload,
                headers={"x-api-key": self._key, "Content-Type": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )

        return self._with_retries(send, invite=True, label=f"invite {email}")

    def upload(self, call: CallLike) -> Attempted:
        boundary = multipart_boundary(call)
        content_type = mimetypes.guess_type(call.file_name)[0] or "application/octet-stream"
        fields_tail = [
            ("campaign_id", call.campaign_id),
            ("conversation_timestamp", str(call.timestamp)),
            ("agent_email", call.agent_email),
            ("metadata", metadata_json(call.metadata)),
        ]

        def send(session: requests.Session) -> requests.Response:
            fh = self.sources.open(call)  # SourceProblem: gone, changed since validation, or the store failing
            with fh:
                recording = HashingReader(fh, call.file_size)
                encoder = MultipartEncoder(
                    [("file", (call.file_name, recording, content_type)), *fields_tail], boundary=boundary
                )
                body = CountingBody(encoder, self._bandwidth if self.bandwidth else None)
                transport.watch(self.observer)  # the peer's acknowledged bytes go to the concurrency limiter
                try:
                    response = session.post(
                        self.base_url + "/calls/audio",
                        data=body,
                        headers={"x-api-key": self._key, "Content-Type": encoder.content_type},
                        timeout=self.timeout,
                        allow_redirects=False,
                        stream=True,
                    )
                except requests.RequestException as exc:
                    transport.take_back()
                    failure = getattr(fh, "failure", None)  # the store failed mid-object, not the API
                    if failure is not None:
                        raise failure from None
                    record = transport.current_record()
                    raise _Transport(exc, body.fully_sent and not (record and record.peer_lacks_part())) from None
                if not 200 <= response.status_code < 300:
                    transport.take_back()
                # The fingerprint of this attempt's bytes, when they were the whole recording.
                sent["fingerprint"] = recording.fingerprint if recording.read_bytes == call.file_size else None
                return response

        sent: dict[str, str | None] = {}
        result = self._with_retries(send, invite=False, label=f"row {call.row} upload {call.file_name}")
        if result.verdict is Verdict.SUCCESS and sent.get("fingerprint"):
            result = replace(result, fingerprint=sent["fingerprint"])
        return result

    # --- the retry loop ---------------------------------------------------------------------------

    def _with_retries(
        self, send: Callable[[requests.Session], requests.Response], *, invite: bool, label: str
    ) -> Attempted:
        attempt = 0
        last: Attempted | None = None
        while True:  # the attempt budget is checked below: max_attempts, or longer while riding out an outage
            if attempt and self.stop.is_set():
                return _interrupted(last, attempt)
            waiting = time.monotonic()
            if not self.limiter.acquire(self.stop):
                return _interrupted(last, attempt)
            self._waited(invite, time.monotonic() - waiting)
            attempt += 1
            started = time.monotonic()
            retry_after: str | None = None
            try:
                response = send(self._session())
            except SourceProblem as exc:
                log.info("%s: attempt %d: %s", label, attempt, exc.message)
                last = Attempted(Verdict.RETRY if exc.retryable else Verdict.PERMANENT, None, exc.message, attempt,
                                 from_source=True)
            except (_Transport, requests.RequestException) as exc:
                err = exc.error if isinstance(exc, _Transport) else exc
                fully_sent = exc.fully_sent if isinstance(exc, _Transport) else True
                verdict = classify_failure(fully_sent, invite=invite)
                problem = tls.classify(err, self._where)  # a certificate or a proxy refusal: not retried
                message = problem.line if problem else _describe_failure(err, None if invite else fully_sent)
                last = Attempted(verdict, None, message, attempt, setup_problem=problem)
                log.info("%s: attempt %d failed after %.2fs: %s", label, attempt, time.monotonic() - started, message)
                if problem:
                    return last
                if verdict is Verdict.RETRY:
                    self.outage.no_answer()
                self._congestion(invite, None, message)
            else:
                status = response.status_code
                body = read_capped(response)
                verdict = classify_status(status, invite=invite)
                retry_after = response.headers.get("Retry-After")
                if verdict is Verdict.SUCCESS:
                    last = Attempted(verdict, status, "", attempt, call_id_of(body))
                else:
                    message = error_message(status, body, secret=self._key)
                    if 300 <= status < 400:
                        where = clean_text(redact(response.headers.get("Location", "?"), self._key), 120)
                        message = f"redirect to {where} not followed; check api.base_url"
                    last = Attempted(verdict, status, message, attempt,
                                     quota_seconds=quota_wait(status, retry_after, max_retry_after=self.max_retry_after))
                log.info("%s: attempt %d -> HTTP %d in %.2fs", label, attempt, status, time.monotonic() - started)
                self.outage.answered()
                self._congestion(invite, status, None)
            if last.verdict is not Verdict.RETRY or last.quota_seconds is not None:
                return last  # a quota is not retried here: the run's pacer decides (stop, or wait for it)
            # An API that does not answer at all is ridden out for upload.ride_out_seconds, past max_attempts.
            riding = last.http_status is None and self.outage.riding()
            if attempt >= self.max_attempts and not riding:
                break
            delay = retry_delay(attempt, retry_after, max_retry_after=self.max_retry_after, rng=self._rng)
            if riding:
                delay = min(delay, self.outage.backoff_cap)
            if retry_after is not None:
                self.limiter.pause_until(time.monotonic() + delay)
            if self.stop.wait(delay):
                return _interrupted(last, attempt)
            self._waited(invite, delay)
        assert last is not None
        return Attempted(
            Verdict.RETRY,
            last.http_status,
            f"gave up after {attempt} attempts: {last.message}",
            attempt,
            from_source=last.from_source,
        )

    def _waited(self, invite: bool, seconds: float) -> None:
        """An upload's slot held by our own gates (rate, Retry-After, a retry's delay): not the server's doing."""
        if not invite and seconds > 0.001 and self.observer is not None:
            self.observer.waited(seconds)

    def _bandwidth(self, nbytes: int) -> None:
        assert self.bandwidth is not None
        waited = self.bandwidth(nbytes)
        if isinstance(waited, float):
            self._waited(False, waited)

    def _congestion(self, invite: bool, status: int | None, message: str | None) -> None:
        if not invite and self.observer is not None and (reason := congestion_reason(status, message)):
            self.observer.congestion(reason)


# --- helpers ----------------------------------------------------------------------------------------


class _Transport(Exception):
    def __init__(self, error: requests.RequestException, fully_sent: bool) -> None:
        super().__init__(str(type(error).__name__))
        self.error = error
        self.fully_sent = fully_sent


def _interrupted(last: Attempted | None, attempts: int) -> Attempted:
    why = "stopped before it was sent" if last is None else f"stopped while waiting to retry ({last.message})"
    return Attempted(Verdict.RETRY, last.http_status if last else None, why, attempts, interrupted=True)


    return None


def _describe_failure(err: BaseException, fully_sent: bool | None) -> str:
    """What went wrong, and for an upload whether the whole call had left (None: not relevant)."""
    if isinstance(err, requests.ConnectTimeout):
        what = "connection timed out"
    elif isinstance(err, requests.ReadTimeout):
        what = "no answer before the read timeout"
    elif isinstance(err, requests.exceptions.SSLError):
        what = "TLS error"
    elif isinstance(err, requests.exceptions.ProxyError):  # any other proxy failure is a tls.ConnectProblem
        what = "the proxy could not reach the API"
    elif isinstance(err, requests.ConnectionError):
        text = str(err)
        if "Connection refused" in text or "NewConnectionError" in text:
            what = "connection refused"
        elif "timed out" in text:  # a send that stalled past the write timeout
            what = "sending stalled past the write timeout"
        elif "NameResolution" in text or "Name or service not known" in text:
            what = "host name not found"
        else:
            what = "connection lost"
    else:
        what = type(err).__name__
    if fully_sent is None:
        return what
    when = "after the whole call was sent (the server may have stored it)" if fully_sent else "before the call was fully sent"
    return f"{what} {when}"
