"""The HTTP client against the real sandbox on loopback: every status, both sides of each retry class."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from importer.client import ApiClient, RateLimiter, metadata_json
from importer.errors import UsageError
from importer.policy import Verdict

CAMPAIGN = "665dc5c57275b74ce35c03ab"


@dataclass(frozen=True)
class Call:
    file_path: Path
    agent_email: str = "john.doe@example.com"
    timestamp: int = 1704067200
    campaign_id: str = CAMPAIGN
    metadata: tuple[tuple[str, str], ...] = (("client_phone", "+33612345678"), ("site", "Lyon"))
    row: int = 2
    file_mtime_ns: int = 0
    file_name: str = field(init=False)
    file_size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "file_name", self.file_path.name)
        object.__setattr__(self, "file_size", self.file_path.stat().st_size)


def client_for(sb, **kw) -> ApiClient:
    kw.setdefault("max_attempts", 4)
    kw.setdefault("timeout", 5)
    return ApiClient(sb.url, sb.api_key, **kw)


def uploads(sb) -> list[dict]:
    return [r for r in sb.requests_log() if r["path"] == "/calls/audio"]


def test_invite_then_upload_matches_the_vendor_curl_fields(sandbox, wav_factory):
    c = client_for(sandbox)
    wav = wav_factory("recording.wav")
    before = c.upload(Call(wav))
    assert (before.verdict, before.http_status) == (Verdict.PERMANENT, 404)
    assert "not found" in before.message.lower()

    inv = c.invite("john.doe@example.com", "John Doe")
    assert (inv.verdict, inv.http_status) == (Verdict.SUCCESS, 201)
    again = c.invite("JOHN.DOE@example.com", "John Doe")
    assert (again.verdict, again.http_status) == (Verdict.SUCCESS, 409)

    res = c.upload(Call(wav))
    assert res.verdict is Verdict.SUCCESS and res.http_status == 200 and res.call_id
    [stored] = sandbox.calls()
    assert stored["id"] == res.call_id
    assert stored["file_field"] == "file" and stored["file_name"] == "recording.wav"
    assert stored["fields"] == {
        "campaign_id": CAMPAIGN,
        "conversation_timestamp": "1704067200",
        "agent_email": "john.doe@example.com",
        "metadata": '[{"key":"client_phone","value":"+33612345678"},{"key":"site","value":"Lyon"}]',
    }
    assert stored["size"] == wav.stat().st_size
    assert stored["sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()
    [agent] = sandbox.agents()
    assert agent["role"] == "agent" and agent["send_invite_email"] is False and agent["name"] == "John Doe"


def test_metadata_json_is_compact_and_keeps_accents():
    assert metadata_json([("site", "Orléans")]) == '[{"key":"site","value":"Orléans"}]'
    assert metadata_json([]) == "[]"


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_permanent_statuses_are_never_retried(sandbox, wav_factory, status):
    sandbox.add_agent("john.doe@example.com")
    sandbox.inject("/calls/audio", status)
    res = client_for(sandbox).upload(Call(wav_factory()))
    assert (res.verdict, res.http_status, res.attempts) == (Verdict.PERMANENT, status, 1)
    assert len(uploads(sandbox)) == 1 and sandbox.calls() == []


@pytest.mark.parametrize("status", [429, 503])
def test_retryable_statuses_are_retried_with_an_identical_body(sandbox, wav_factory, status):
    sandbox.add_agent("john.doe@example.com")
    sandbox.inject("/calls/audio", (status, "0"), (status, "0"))
    res = client_for(sandbox).upload(Call(wav_factory()))
    assert (res.verdict, res.http_status, res.attempts) == (Verdict.SUCCESS, 200, 3)
    log = uploads(sandbox)
    assert [r["status"] for r in log] == [status, status, 200]
    assert len({r["body_sha256"] for r in log}) == 1, "the resent multipart body must be byte-identical"
    assert len(sandbox.calls()) == 1


def test_retries_are_bounded_by_max_attempts(sandbox, wav_factory):
    sandbox.add_agent("john.doe@example.com")
    sandbox.inject("/calls/audio", *[(503, "0")] * 10)
    res = client_for(sandbox, max_attempts=3).upload(Call(wav_factory()))
    assert res.verdict is Verdict.RETRY and res.attempts == 3
    assert "gave up after 3 attempts" in res.message
    assert len(uploads(sandbox)) == 3 and sandbox.calls() == []


@pytest.mark.parametrize("fault", ["store_then_500", "store_then_502", "store_then_504", "store_then_drop"])
def test_ambiguous_outcomes_are_not_resent(sandbox, wav_factory, fault):
    sandbox.add_agent("john.doe@example.com")
    sandbox.inject("/calls/audio", fault)
    res = client_for(sandbox).upload(Call(wav_factory()))
    assert res.verdict is Verdict.AMBIGUOUS and res.attempts == 1
    assert len(uploads(sandbox)) == 1
    assert len(sandbox.calls()) == 1  # stored once, never twice
    if fault == "store_then_drop":
        assert "after the whole call was sent" in res.message


def test_reset_while_sending_is_retried_with_a_rebuilt_body(sandbox, wav_factory):
    sandbox.add_agent("john.doe@example.com")
    # 8 MiB: far more than the loopback socket buffers hold, so the reset lands while we are still sending
    wav = wav_factory(seconds=1)
    wav.write_bytes(wav.read_bytes() + bytes(range(256)) * (32 * 1024))
    sandbox.inject("/calls/audio", "reset_mid_body")
    res = client_for(sandbox).upload(Call(wav))
    assert res.verdict is Verdict.SUCCESS and res.attempts == 2
    [stored] = sandbox.calls()
    assert stored["sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()


def test_a_server_that_never_answers_ends_in_the_read_timeout(sandbox, wav_factory):
    sandbox.add_agent("john.doe@example.com")
    sandbox.inject("/calls/audio", "hang")
    t0 = time.monotonic()
    res = client_for(sandbox, timeout=0.5).upload(Call(wav_factory()))
    assert time.monotonic() - t0 < 5
    assert res.verdict is Verdict.AMBIGUOUS
    assert "read timeout" in res.message


def test_connection_refused_is_retried_then_gives_up(wav_factory):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = ApiClient(f"http://127.0.0.1:{port}", "k", max_attempts=2, timeout=1, connect_timeout=1)
    res = c.upload(Call(wav_factory()))
    assert res.verdict is Verdict.RETRY and res.attempts == 2
    assert "connection refused" in res.message


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_stop_at_once(sandbox, wav_factory, status):
    if status == 401:
        c = ApiClient(sandbox.url, "wrong-key", max_attempts=4)
    else:
        sandbox.inject("/calls/audio", 403)
        c = client_for(sandbox)
    res = c.upload(Call(wav_factory()))
    assert (res.verdict, res.http_status, res.attempts) == (Verdict.AUTH, status, 1)


def test_invite_retries_an_ambiguous_answer_and_409_means_ready(sandbox):
    sandbox.inject("/users/invite", "store_then_500")
    res = client_for(sandbox).invite("a@b.fr", "A B")
    # the first attempt stored the agent; the retry answers 409, which means ready
    assert res.verdict is Verdict.SUCCESS and res.http_status == 409 and res.attempts == 2
    assert len(sandbox.agents()) == 1


def test_invite_refused_is_permanent(sandbox):
    res = client_for(sandbox).invite("not-an-email", "A B")
    assert (res.verdict, res.http_status) == (Verdict.PERMANENT, 422)


def test_retry_after_is_honoured_and_shared(sandbox, wav_factory):
    sandbox.add_agent("john.doe@example.com")
    sandbox.inject("/calls/audio", (429, "1"))
    t0 = time.monotonic()
    res = client_for(sandbox).upload(Call(wav_factory()))
    assert res.verdict is Verdict.SUCCESS and time.monotonic() - t0 >= 1.0


def test_file_changed_or_deleted_after_validation_fails_clearly(sandbox, wav_factory):
    sandbox.add_agent("john.doe@example.com")
    wav = wav_factory()
    call = Call(wav)
    wav.write_bytes(wav.read_bytes() + b"\0" * 10)
    res = client_for(sandbox).upload(call)
    assert res.verdict is Verdict.PERMANENT and "file changed after validation" in res.message
    wav.unlink()
    res = client_for(sandbox).upload(call)
    assert res.verdict is Verdict.PERMANENT and "file disappeared" in res.message
    assert uploads(sandbox) == []


def test_redirects_are_not_followed(sandbox, wav_factory):
    sandbox.add_agent("john.doe@example.com")
    sandbox.inject("/calls/audio", ("status", 307, '{"detail": "moved"}'))
    res = client_for(sandbox).upload(Call(wav_factory()))
    assert res.verdict is Verdict.PERMANENT and res.http_status == 307
    assert "not followed" in res.message


def test_netrc_cannot_replace_the_key(sandbox, tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login x password netrc-secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    res = ApiClient(sandbox.url, "", max_attempts=1).invite("a@b.fr", "A B")
    assert res.http_status == 401


def test_the_key_never_appears_in_results_or_reprs(sandbox, wav_factory):
    canary = "CANARY-KEY-7f3a9c"
    c = ApiClient(sandbox.url, canary, max_attempts=1)
    res = c.upload(Call(wav_factory()))
    assert canary not in repr(c) and canary not in repr(res) and canary not in res.message


def test_http_to_a_remote_host_is_refused_before_any_connection():
    with pytest.raises(UsageError):
        ApiClient("http://localhost:1@evil.example", "k")


def test_rate_limiter_spaces_requests_across_threads():
    limiter = RateLimiter(50)
    stamps: list[float] = []
    lock = threading.Lock()

    def take():
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(stamps) == 40
    # 40 requests at 50/s cannot take less than 39 intervals (a floor, never a timing ceiling)
    assert stamps[-1] - stamps[0] >= 39 * 0.02 * 0.95
    assert min(gaps) >= 0


def _limiters(rate: float) -> list:
    from importer.ledger.pg_rate import SharedRateLimiter

    # The fleet's limiter leases its slots from the ledger; an idle schedule (lease starts now) stands in here.
    return [RateLimiter(rate), SharedRateLimiter(rate, lambda span: 0.0)]


@pytest.mark.parametrize("kind", [0, 1])
def test_after_a_pause_extended_while_threads_wait_they_leave_spaced_not_in_one_burst(kind):
    limiter = _limiters(10.0)[kind]  # one request per 0.1 s
    start = time.monotonic()
    limiter.pause_until(start + 0.2)
    woke: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        limiter.acquire(threading.Event())
        with lock:
            woke.append(time.monotonic())

    threads = [threading.Thread(target=take) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    limiter.pause_until(start + 1.0)  # another thread's 429 while they wait
    for t in threads:
        t.join(10)
    woke.sort()
    assert len(woke) == 5 and woke[0] >= start + 1.0
    assert all(b - a >= 0.09 for a, b in zip(woke, woke[1:], strict=False)), woke  # a floor, never a ceiling


def test_a_pause_that_comes_while_a_thread_waits_holds_that_thread_too():
    # Worker A got a 429 (Retry-After 0.3) and waits; worker B's 429 a moment later says 0.6 from the start.
    # A must not send at 0.3 into a pause the server asked for: the race behind a flaky 429-storm test.
    limiter = RateLimiter(0)
    start = time.monotonic()
    limiter.pause_until(start + 0.3)
    woke: list[float] = []
    waiter = threading.Thread(target=lambda: (limiter.acquire(threading.Event()), woke.append(time.monotonic())))
    waiter.start()
    time.sleep(0.1)
    limiter.pause_until(start + 0.6)
    waiter.join(5)
    assert woke and woke[0] >= start + 0.6


def test_a_stop_while_held_by_a_pause_returns_false_at_once():
    limiter = RateLimiter(0)
    limiter.pause_until(time.monotonic() + 30)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    t0 = time.monotonic()
    assert limiter.acquire(stop) is False
    assert time.monotonic() - t0 < 10  # held 30 s otherwise
