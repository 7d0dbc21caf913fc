"""The retry policy and the security rules as pure functions (no network)."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from importer.errors import UsageError
from importer.policy import (
    Verdict,
    backoff_delay,
    classify_failure,
    classify_status,
    error_message,
    mentions_campaign,
    parse_retry_after,
    retry_delay,
)
from importer.safety import check_base_url, clean_text, is_loopback_host, neutralize_cell, redact


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.SUCCESS), (201, Verdict.SUCCESS),
        (429, Verdict.RETRY), (503, Verdict.RETRY),
        (500, Verdict.AMBIGUOUS), (502, Verdict.AMBIGUOUS), (504, Verdict.AMBIGUOUS),
        (400, Verdict.PERMANENT), (404, Verdict.PERMANENT), (409, Verdict.PERMANENT),
        (413, Verdict.PERMANENT), (422, Verdict.PERMANENT), (307, Verdict.PERMANENT),
        (401, Verdict.AUTH), (403, Verdict.AUTH),
    ],
)
def test_upload_status_table(status, verdict):
    assert classify_status(status) is verdict


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(201, Verdict.SUCCESS), (409, Verdict.SUCCESS), (500, Verdict.RETRY), (504, Verdict.RETRY),
     (422, Verdict.PERMANENT), (401, Verdict.AUTH)],
)
def test_invite_status_table(status, verdict):
    assert classify_status(status, invite=True) is verdict


def test_transport_failures_split_on_whether_the_body_left():
    assert classify_failure(False) is Verdict.RETRY
    assert classify_failure(True) is Verdict.AMBIGUOUS
    assert classify_failure(True, invite=True) is Verdict.RETRY


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 7 ") == 7.0
    now = 1_800_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


def test_huge_retry_after_is_capped():
    assert retry_delay(1, "99999", max_retry_after=5, rng=random.Random(1)) <= 5.25
    assert retry_delay(1, "2", max_retry_after=120, rng=random.Random(1)) >= 2


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(7)
    d1 = [backoff_delay(1, rng=rng) for _ in range(50)]
    d4 = [backoff_delay(4, rng=rng) for _ in range(50)]
    assert all(0.25 <= d <= 0.5 for d in d1)
    assert all(2.0 <= d <= 4.0 for d in d4)
    assert len({round(d, 6) for d in d4}) > 40  # jittered, not lockstep
    assert all(d <= 30 for d in (backoff_delay(30, rng=rng) for _ in range(20)))


def test_error_message_reads_fastapi_bodies_and_cleans_them():
    assert error_message(404, b'{"detail": "Agent not found: a@b.fr"}') == "Agent not found: a@b.fr"
    body = b'{"detail": [{"loc": ["body", "conversation_timestamp"], "msg": "not an int", "type": "x"}]}'
    assert error_message(422, body) == "conversation_timestamp: not an int"
    assert error_message(500, b"") == "HTTP 500"
    assert error_message(500, b"<html>\x1b[31mboom\x00</html>") == "<html> [31mboom </html>"
    assert len(error_message(400, b"x" * 1_000_000)) == 300


def test_campaign_messages():
    assert mentions_campaign("Campaign not found: 665d")
    assert mentions_campaign("The specified agent or campaign does not exist")
    assert not mentions_campaign("Agent not found: a@b.fr")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["evil.example", "10.0.0.1", "localhost.evil.example", "0.0.0.0", "", None])
def test_not_loopback(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    ["https://api.qm.allobrain.com", "http://127.0.0.1:8000/", "http://localhost:8765", "http://[::1]:9000"],
)
def test_accepted_urls(url):
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://api.qm.allobrain.com", "only allowed for loopback"),
        ("http://localhost:1@evil.example", "credentials"),
        ("http://user:pw@127.0.0.1", "credentials"),
        ("ftp://127.0.0.1", "must start with https"),
        ("api.qm.allobrain.com", "must start with https"),
        ("https://x.example/?a=1", "query"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("http://10.1.2.3:8000", "only allowed for loopback"),
    ],
)
def test_refused_urls(url, why):
    with pytest.raises(UsageError, match=why):
        check_base_url(url)


def test_cells_and_text_made_safe():
    assert neutralize_cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    for c in "=+-@\t\r":
        assert neutralize_cell(c + "x").startswith("'")
    assert neutralize_cell("fine") == "fine"
    assert clean_text("a\nb\x07c\u202ed", 100) == "a b c d"
    assert redact("key=SECRET-123 ok", "SECRET-123") == "key=[redacted] ok"
