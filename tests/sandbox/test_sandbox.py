"""The sandbox API over real HTTP on loopback: the vendor contract, then every fault it can inject."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3 import encode_multipart_formdata

from importer.sandbox import SANDBOX_API_KEY, Sandbox

AGENT = "john.doe@example.com"
CAMPAIGN = "665dc5c57275b74ce35c03ab"
# Exactly the fields of the vendor doc's curl example.
VENDOR_FIELDS = {
    "campaign_id": "VOTRE_ID_DE_CAMPAGNE",
    "conversation_timestamp": "1704067200",
    "agent_email": AGENT,
    "metadata": '[{"key":"client_phone","value":"+33XXXXXXXXX"},{"key":"site","value":"xxx"}]',
}


def headers(sb: Sandbox) -> dict[str, str]:
    return {"x-api-key": sb.api_key}


def invite(sb: Sandbox, email: str = AGENT, session: Any = requests, **overrides: Any) -> requests.Response:
    body = {"email": email, "name": "John Doe", "role": "agent", "send_invite_email": False, **overrides}
    return session.post(f"{sb.url}/users/invite", json=body, headers=headers(sb), timeout=5)


def upload(
    sb: Sandbox,
    wav: Path,
    session: Any = requests,
    timeout: float = 5,
    **fields: str | None,
) -> requests.Response:
    data = {k: v for k, v in {**VENDOR_FIELDS, **fields}.items() if v is not None}
    with wav.open("rb") as fh:
        return session.post(
            f"{sb.url}/calls/audio",
            headers=headers(sb),
            files={"file": (wav.name, fh, "audio/wav")},
            data=data,
            timeout=timeout,
        )


@pytest.fixture
def wav(wav_factory: Any) -> Path:
    return wav_factory("recording.wav")


@pytest.fixture
def agent(sandbox: Sandbox) -> str:
    assert invite(sandbox).status_code == 201
    return AGENT


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Any]:
    """A sandbox with custom options, stopped after the test."""
    started: list[Sandbox] = []

    def factory(**options: Any) -> Sandbox:
        sb = Sandbox(data_dir=tmp_path / f"sandbox-{len(started)}", **options).start()
        started.append(sb)
        return sb

    yield factory
    for sb in started:
        sb.stop()


# ---------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize("key", [None, "wrong-key"])
@pytest.mark.parametrize("path", ["/users/invite", "/calls/audio"])
def test_missing_or_wrong_key_is_401(sandbox: Sandbox, path: str, key: str | None) -> None:
    sent = {"x-api-key": key} if key else {}
    response = requests.post(f"{sandbox.url}{path}", json={"email": AGENT}, headers=sent, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or missing API key"}
    assert sandbox.agents() == []


def test_default_key_and_inspection_need_no_key(sandbox: Sandbox) -> None:
    assert sandbox.api_key == SANDBOX_API_KEY == "sandbox-0000-key"
    assert requests.get(f"{sandbox.url}/_sandbox/agents", timeout=5).json() == []
    assert requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json() == []


def test_unknown_path_is_404_and_wrong_method_405(sandbox: Sandbox) -> None:
    response = requests.get(f"{sandbox.url}/nothing", headers=headers(sandbox), timeout=5)
    assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert requests.get(f"{sandbox.url}/calls/audio", headers=headers(sandbox), timeout=5).status_code == 405
    assert requests.post(f"{sandbox.url}/_sandbox/calls", timeout=5).status_code == 405


# -------------------------------------------------------------------------------------------- invite


def test_invite_created_then_conflict_in_any_case(sandbox: Sandbox) -> None:
    created = invite(sandbox)
    assert created.status_code == 201
    body = created.json()
    assert len(body["id"]) == 24 and int(body["id"], 16) >= 0
    assert {k: body[k] for k in ("email", "name", "role")} == {
        "email": AGENT,
        "name": "John Doe",
        "role": "agent",
    }

    again = invite(sandbox, email=AGENT.upper())
    assert (again.status_code, again.json()) == (409, {"detail": "User already exists"})
    [agent] = requests.get(f"{sandbox.url}/_sandbox/agents", timeout=5).json()
    assert agent == sandbox.agents()[0]
    assert set(agent) == {"id", "email", "name", "role", "send_invite_email", "created_at"}
    assert agent["send_invite_email"] is False


def test_add_agent_makes_invite_answer_409(sandbox: Sandbox) -> None:
    sandbox.add_agent("Old.Timer@Example.com")
    assert invite(sandbox, email="old.timer@example.com").status_code == 409


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "jean@"}, "email"),
        ({"role": "owner"}, "role"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"name": 42}, "name"),
        ({"send_invite_email": "maybe"}, "send_invite_email"),
    ],
)
def test_invite_validation_is_422(sandbox: Sandbox, overrides: dict[str, Any], field: str) -> None:
    response = invite(sandbox, **overrides)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field] and error["msg"] and error["type"]
    assert sandbox.agents() == []


def test_invite_that_is_not_json_is_422(sandbox: Sandbox) -> None:
    sent = {**headers(sandbox), "Content-Type": "application/json"}
    response = requests.post(f"{sandbox.url}/users/invite", data=b"{email:", headers=sent, timeout=5)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


# ------------------------------------------------------------------------------------------- calls


def test_call_for_unknown_agent_is_404_then_200_after_invite(sandbox: Sandbox, wav: Path) -> None:
    before = upload(sandbox, wav)
    assert (before.status_code, before.json()) == (404, {"detail": f"Agent not found: {AGENT}"})
    assert sandbox.calls() == []

    assert invite(sandbox).status_code == 201
    after = upload(sandbox, wav, agent_email=AGENT.upper())  # agents are matched case-insensitively
    assert after.status_code == 200
    call_id = after.json()["id"]
    assert len(call_id) == 24

    [call] = requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()
    assert call == sandbox.calls()[0]
    assert call["id"] == call_id
    assert call["fields"] == {**VENDOR_FIELDS, "agent_email": AGENT.upper()}
    assert call["campaign_id"] == "VOTRE_ID_DE_CAMPAGNE"
    assert call["conversation_timestamp"] == 1704067200
    assert call["metadata"] == [
        {"key": "client_phone", "value": "+33XXXXXXXXX"},
        {"key": "site", "value": "xxx"},
    ]
    assert (call["file_name"], call["file_field"], call["file_content_type"]) == (
        "recording.wav",
        "file",
        "audio/wav",
    )
    data = wav.read_bytes()
    assert call["size"] == len(data)
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
    assert Path(call["stored_path"]).read_bytes() == data


@pytest.mark.parametrize("missing", ["campaign_id", "conversation_timestamp", "agent_email"])
def test_missing_field_is_400(sandbox: Sandbox, agent: str, wav: Path, missing: str) -> None:
    response = upload(sandbox, wav, **{missing: None})
    assert response.status_code == 400
    assert missing in response.json()["detail"]


def test_missing_or_empty_file_is_400(sandbox: Sandbox, agent: str, wav_factory: Any, tmp_path: Path) -> None:
    no_file = requests.post(
        f"{sandbox.url}/calls/audio", headers=headers(sandbox), files=VENDOR_FIELDS, timeout=5
    )
    assert no_file.status_code == 400 and "file" in no_file.json()["detail"]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    response = upload(sandbox, empty)
    assert (response.status_code, response.json()) == (400, {"detail": "Empty file: empty.wav"})
    assert sandbox.calls() == []


def test_not_multipart_is_400(sandbox: Sandbox, agent: str) -> None:
    response = requests.post(
        f"{sandbox.url}/calls/audio", headers=headers(sandbox), json=VENDOR_FIELDS, timeout=5
    )
    assert response.status_code == 400


@pytest.mark.parametrize("timestamp", ["abc", "0", "-5", "1.5", " 1704067200", "1704067200000", "1e9"])
def test_bad_timestamp_is_422(sandbox: Sandbox, agent: str, wav: Path, timestamp: str) -> None:
    response = upload(sandbox, wav, conversation_timestamp=timestamp)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "conversation_timestamp"]


@pytest.mark.parametrize(
    "metadata",
    [
        "not json",
        '{"key": "a", "value": "b"}',
        '[{"key": "a"}]',
        '[{"key": "a", "value": 1}]',
        '[{"key": "a", "value": "b", "extra": "c"}]',
        '["a"]',
    ],
)
def test_bad_metadata_is_422(sandbox: Sandbox, agent: str, wav: Path, metadata: str) -> None:
    response = upload(sandbox, wav, metadata=metadata)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "metadata"]


def test_metadata_is_optional(sandbox: Sandbox, agent: str, wav: Path) -> None:
    assert upload(sandbox, wav, metadata=None).status_code == 200
    assert sandbox.calls()[0]["metadata"] is None


def test_restricted_campaigns(make_sandbox: Any, wav: Path) -> None:
    sb = make_sandbox(campaigns=[CAMPAIGN])
    assert invite(sb).status_code == 201
    refused = upload(sb, wav, campaign_id="665dc5c57275b74ce35c0000")
    assert (refused.status_code, refused.json()) == (
        404,
        {"detail": "Campaign not found: 665dc5c57275b74ce35c0000"},
    )
    assert upload(sb, wav, campaign_id=CAMPAIGN).status_code == 200
    assert [c["campaign_id"] for c in sb.calls()] == [CAMPAIGN]


def test_over_max_upload_is_413_streaming_and_early(make_sandbox: Any, wav_factory: Any) -> None:
    sb = make_sandbox(max_upload_mb=0.01)  # 10 KiB; a 1 s WAV is 16 KB
    assert invite(sb).status_code == 201
    session = requests.Session()
    streamed = upload(sb, wav_factory("one-second.wav"), session=session)
    assert streamed.status_code == 413 and "too large" in streamed.json()["detail"]
    # Refused by Content-Length before reading: still a clean 413, not a reset.
    early = upload(sb, wav_factory("long.wav", seconds=120), session=session)
    assert early.status_code == 413
    assert upload(sb, wav_factory("short.wav", seconds=0.2), session=session).status_code == 200
    assert len(sb.calls()) == 1
    assert sb.data_dir is not None and list((sb.data_dir / "incoming").iterdir()) == []


# ------------------------------------------------------------------------------------------ faults


def test_injected_429_and_503_carry_retry_after(sandbox: Sandbox, agent: str, wav: Path) -> None:
    http_date = "Wed, 21 Oct 2015 07:28:00 GMT"
    sandbox.inject("/calls/audio", 429, 503, (429, http_date), (503, "99999"))
    seen = [upload(sandbox, wav) for _ in range(4)]
    assert [r.status_code for r in seen] == [429, 503, 429, 503]
    assert [r.headers["Retry-After"] for r in seen] == ["1", "1", http_date, "99999"]
    assert seen[0].json() == {"detail": "Too Many Requests"}
    assert sandbox.calls() == []
    assert upload(sandbox, wav).status_code == 200  # the queue is used up
    assert [e["fault"] for e in sandbox.requests_log()[-5:]] == [
        "inject:429",
        "inject:503",
        "inject:429",
        "inject:503",
        None,
    ]


@pytest.mark.parametrize("status", [400, 404, 413, 422, 500, 502, 504])
def test_injected_status_is_not_stored(sandbox: Sandbox, agent: str, wav: Path, status: int) -> None:
    sandbox.inject("/calls/audio", status)
    response = upload(sandbox, wav)
    assert response.status_code == status
    assert "detail" in response.json()
    assert sandbox.calls() == []


def test_store_then_drop_stores_the_call_and_answers_nothing(sandbox: Sandbox, agent: str, wav: Path) -> None:
    sandbox.inject("/calls/audio", "store_then_drop")
    with pytest.raises(requests.ConnectionError):
        upload(sandbox, wav)
    [call] = sandbox.calls()
    assert call["sha256"] == hashlib.sha256(wav.read_bytes()).hexdigest()
    entry = sandbox.requests_log()[-1]
    assert (entry["status"], entry["fault"]) == (None, "inject:store_then_drop")


@pytest.mark.parametrize("status", [500, 502, 504])
def test_store_then_status(sandbox: Sandbox, agent: str, wav: Path, status: int) -> None:
    sandbox.inject("/calls/audio", f"store_then_{status}")
    assert upload(sandbox, wav).status_code == status
    assert len(sandbox.calls()) == 1


def test_store_then_drop_on_invite_creates_the_agent(sandbox: Sandbox) -> None:
    sandbox.inject("/users/invite", "store_then_drop")
    with pytest.raises(requests.ConnectionError):
        invite(sandbox)
    assert invite(sandbox).status_code == 409


def test_reset_mid_body_is_not_stored(sandbox: Sandbox, agent: str, tmp_path: Path) -> None:
    sandbox.inject("/calls/audio", "reset_mid_body")
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + bytes(8 * 1024 * 1024))  # far more than the socket buffers hold
    with pytest.raises(requests.ConnectionError):
        upload(sandbox, big)
    assert sandbox.calls() == []
    entry = sandbox.requests_log()[-1]
    assert entry["fault"] == "inject:reset_mid_body" and entry["status"] is None
    assert 0 < entry["body_size"] < big.stat().st_size


def test_hang_makes_the_client_time_out(sandbox: Sandbox, agent: str, wav: Path) -> None:
    sandbox.inject("/calls/audio", "hang")
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        upload(sandbox, wav, timeout=1)
    assert 0.9 < time.monotonic() - started < 3
    assert sandbox.calls() == []


def test_stop_releases_a_hang(tmp_path: Path, wav: Path) -> None:
    sb = Sandbox(data_dir=tmp_path / "data").start()
    assert invite(sb).status_code == 201
    sb.inject("/calls/audio", "hang")
    errors: list[BaseException] = []

    def send() -> None:
        try:
            upload(sb, wav, timeout=30)
        except requests.RequestException as exc:
            errors.append(exc)

    client = threading.Thread(target=send)
    client.start()
    deadline = time.monotonic() + 5
    while not sb.requests_log()[1:] and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sb.stop()
    client.join(5)
    assert time.monotonic() - started < 3
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)


@pytest.mark.parametrize("body", ["x" * 1_000_000, "bad\x1b[31m\r\nthings\x00", '{"detail": "custom"}'])
def test_custom_status_body_is_sent_verbatim(sandbox: Sandbox, body: str) -> None:
    sandbox.inject("/users/invite", ("status", 418, body))
    response = invite(sandbox)
    assert response.status_code == 418
    assert response.content == body.encode()
    assert sandbox.agents() == []


def test_bad_actions_are_refused_at_inject_time(sandbox: Sandbox) -> None:
    for bad in ("explode", 200, (429,), ("status", "x", "body"), True):
        with pytest.raises(ValueError):
            sandbox.inject("/calls/audio", bad)
    with pytest.raises(ValueError):
        sandbox.inject("/calls/audo", 500)
    with pytest.raises(ValueError):
        sandbox.inject("/users/invite", 500, "nonsense")
    assert sandbox.pending_faults("/users/invite") == 0  # nothing queued from a refused batch


def test_rate_limit_answers_429_with_retry_after(make_sandbox: Any) -> None:
    sb = make_sandbox(rate_limit=2)
    session = requests.Session()
    statuses = [invite(sb, email=f"a{i}@example.com", session=session) for i in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and [r.status_code for r in statuses[:2]] == [201, 201]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert requests.get(f"{sb.url}/_sandbox/agents", timeout=5).status_code == 200  # never limited
    assert len(sb.agents()) == 6 - len(limited)


def test_random_failures_are_seeded_and_never_store(make_sandbox: Any, wav: Path) -> None:
    runs = []
    for _ in range(2):
        sb = make_sandbox(fail_rate=0.5, seed=7)
        sb.add_agent(AGENT)
        runs.append([upload(sb, wav).status_code for _ in range(12)])
        assert len(sb.calls()) == runs[-1].count(200)
    assert runs[0] == runs[1]  # the same seed, the same faults
    assert set(runs[0]) == {200, 500, 503}


def test_random_drops_store_the_call(make_sandbox: Any, wav: Path) -> None:
    sb = make_sandbox(drop_rate=1.0, seed=1)
    assert invite(sb).status_code == 201  # invites are never dropped
    with pytest.raises(requests.ConnectionError):
        upload(sb, wav)
    assert len(sb.calls()) == 1
    assert sb.requests_log()[-1]["fault"] == "random:store_then_drop"


def test_latency_is_added(make_sandbox: Any) -> None:
    sb = make_sandbox(latency_ms=200)
    started = time.monotonic()
    invite(sb)
    assert time.monotonic() - started >= 0.2


def test_faults_print_nothing(
    sandbox: Sandbox, agent: str, wav: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sandbox.inject("/calls/audio", "store_then_drop", "reset_mid_body", "hang", 503)
    for _ in range(3):
        with pytest.raises(requests.RequestException):
            upload(sandbox, wav, timeout=0.5)
    assert upload(sandbox, wav).status_code == 503
    # A client that promises a body and leaves halfway.
    with socket.create_connection(("127.0.0.1", int(sandbox.url.rsplit(":", 1)[1]))) as raw:
        raw.sendall(b"POST /users/invite HTTP/1.1\r\nHost: x\r\nx-api-key: sandbox-0000-key\r\n")
        raw.sendall(b'Content-Length: 1000\r\n\r\n{"email": ')
    deadline = time.monotonic() + 3
    while sandbox.requests_log()[-1]["fault"] != "client_disconnected" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sandbox.requests_log()[-1]["fault"] == "client_disconnected"
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


# --------------------------------------------------------------------------------- transport, log


def test_keep_alive_reuses_one_connection(sandbox: Sandbox, agent: str, wav: Path) -> None:
    session = requests.Session()
    statuses = [upload(sandbox, wav, session=session).status_code for _ in range(3)]
    statuses.append(requests_post_unauthorised(sandbox, session).status_code)
    statuses.append(upload(sandbox, wav, session=session, agent_email="nobody@example.com").status_code)
    statuses.append(upload(sandbox, wav, session=session).status_code)
    assert statuses == [200, 200, 200, 401, 404, 200]
    pools = session.get_adapter(sandbox.url).poolmanager.pools  # type: ignore[attr-defined]
    [key] = pools.keys()
    pool = pools[key]
    assert (pool.num_connections, pool.num_requests) == (1, 6)


def requests_post_unauthorised(sb: Sandbox, session: requests.Session) -> requests.Response:
    return session.post(f"{sb.url}/calls/audio", files={"file": ("a.wav", b"RIFF" * 500)}, timeout=5)


def test_request_log_hashes_the_raw_body(sandbox: Sandbox, agent: str, wav: Path) -> None:
    fields = {"file": (wav.name, wav.read_bytes(), "audio/wav"), **VENDOR_FIELDS}
    body, content_type = encode_multipart_formdata(fields, boundary="fixed-boundary-0123456789")
    for _ in range(2):
        sent = {**headers(sandbox), "Content-Type": content_type}
        assert (
            requests.post(f"{sandbox.url}/calls/audio", data=body, headers=sent, timeout=5).status_code == 200
        )
    first, second = sandbox.requests_log()[-2:]
    assert first["body_sha256"] == second["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert first["body_size"] == len(body)
    assert first["content_type"] == content_type
    assert set(first) == {
        "method",
        "path",
        "status",
        "fault",
        "body_size",
        "body_sha256",
        "content_type",
        "received_at",
    }
    # Same file, different boundary: a different body.
    upload(sandbox, wav)
    assert sandbox.requests_log()[-1]["body_sha256"] != first["body_sha256"]


def test_large_upload_streams_to_disk(sandbox: Sandbox, agent: str, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    audio = (bytes(range(256)) * 4096)[: 1024 * 1024] * (size // (1024 * 1024))
    expected = hashlib.sha256(audio).hexdigest()
    boundary = "stream-boundary-42"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in VENDOR_FIELDS.items()
    ]
    head = "".join(parts) + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    )
    body_file = tmp_path / "body.bin"
    with body_file.open("wb") as out:
        out.write(head.encode())
        out.write(audio)
        out.write(f"\r\n--{boundary}--\r\n".encode())
    del audio

    sent = {**headers(sandbox), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    tracemalloc.start()
    try:
        with body_file.open("rb") as fh:
            response = requests.post(f"{sandbox.url}/calls/audio", data=fh, headers=sent, timeout=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    [call] = sandbox.calls()
    assert (call["size"], call["sha256"]) == (size, expected)
    assert Path(call["stored_path"]).stat().st_size == size
    assert peak < 8 * 1024 * 1024, f"server and client held {peak / 1e6:.1f} MB at peak"


# --------------------------------------------------------------------------------------- lifecycle


def test_temporary_data_dir_is_removed_on_stop(wav: Path) -> None:
    with Sandbox() as sb:
        assert invite(sb).status_code == 201
        assert upload(sb, wav).status_code == 200
        data_dir = sb.data_dir
        assert data_dir is not None and Path(sb.calls()[0]["stored_path"]).is_file()
    assert not data_dir.exists()


def test_port_in_use_is_an_oserror(sandbox: Sandbox) -> None:
    port = int(sandbox.url.rsplit(":", 1)[1])
    with pytest.raises(OSError, match=str(port)):
        Sandbox(port=port).start()


def test_json_lists_match_the_methods(sandbox: Sandbox, agent: str, wav: Path) -> None:
    upload(sandbox, wav)
    calls = requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5)
    assert calls.headers["Content-Type"] == "application/json"
    assert json.loads(calls.content) == sandbox.calls()
