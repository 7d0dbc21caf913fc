"""Pure decisions about HTTP outcomes: what a status or an exception means, and how long to wait.

Kept free of I/O so every rule of the spec's retry policy can be tested alone.
"""

from __future__ import annotations

import email.utils
import enum
import json
import random
import time

from .safety import clean_text, redact


class Verdict(enum.Enum):
    SUCCESS = "success"  # the server took it
    RETRY = "retry"  # the server did not take it; safe to send again
    AMBIGUOUS = "ambiguous"  # the server may have stored it; resending could duplicate
    PERMANENT = "permanent"  # the server refused it; sending again will not help
    AUTH = "auth"  # the key was refused; the whole run must stop


RETRY_STATUSES = frozenset({429, 503})
AUTH_STATUSES = frozenset({401, 403})


def classify_status(status: int, *, invite: bool = False) -> Verdict:
    """The spec's table. For invites a 409 means the agent exists (ready), and an ambiguous answer is
    retryable because a repeated invite is harmless (it answers 409)."""
    if invite and status == 409:
        return Verdict.SUCCESS
    if 200 <= status < 300:
        return Verdict.SUCCESS
    if status in AUTH_STATUSES:
        return Verdict.AUTH
    if status in RETRY_STATUSES:
        return Verdict.RETRY
    if status >= 500:  # 500, 502, 504 and any other 5xx but 503 (retried above)
        return Verdict.RETRY if invite else Verdict.AMBIGUOUS
    # 3xx (never followed), 400, 404, 409, 413, 422 and any other 4xx
    return Verdict.PERMANENT


def classify_failure(body_fully_sent: bool, *, invite: bool = False) -> Verdict:
    """A transport failure (no HTTP answer). Before the whole body left us the server cannot have taken the
    call (refused, DNS, connect timeout, TLS, reset while sending); after it, it may have (read timeout,
    connection closed)."""
    if not body_fully_sent or invite:
        return Verdict.RETRY
    return Verdict.AMBIGUOUS


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN guard
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter after the `attempt`-th failure (1-based): uniform in
    [base*2^(n-1)/2, base*2^(n-1)], capped, so concurrent workers do not retry in lockstep."""
    r = rng or random
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return r.uniform(ceiling / 2, ceiling)


def retry_delay(
    attempt: int,
    retry_after: str | None,
    *,
    max_retry_after: float,
    rng: random.Random | None = None,
    now: float | None = None,
) -> float:
    """How long to wait before the next attempt: the server's Retry-After when given (capped at
    `max_retry_after`, with a little jitter so a crowd of workers spreads out), else exponential backoff."""
    asked = parse_retry_after(retry_after, now)
    if asked is None:
        return backoff_delay(attempt, rng=rng)
    r = rng or random
    return min(asked, max_retry_after) + r.uniform(0, 0.25)


def quota_wait(status: int, retry_after: str | None, *, max_retry_after: float, now: float | None = None) -> float | None:
    """A 429 whose Retry-After is beyond what we are willing to wait is the API's quota, not congestion:
    the seconds it asks for (the run stops sending, or waits for them with --wait); else None."""
    if status != 429:
        return None
    asked = parse_retry_after(retry_after, now)
    return asked if asked is not None and asked > max_retry_after else None


def error_message(status: int | None, body: bytes | str | None, limit: int = 300, *, secret: str | None = None) -> str:
    """A short, clean message from an error body: FastAPI's `detail` (text or list of {loc,msg}) when present,
    else the body's text. Never longer than `limit`, never with control characters, never with `secret`
    (a server may echo the key it refused: "invalid key abc..."), removed before truncation can cut it."""
    if body is None:
        return f"HTTP {status}" if status else ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    detail: object = None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
    elif isinstance(data, dict) and "message" in data:
        detail = data["message"]
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                msg = str(item.get("msg", ""))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    message = str(detail) if detail is not None else text
    message = clean_text(redact(message, secret), limit)
    if not message:
        message = f"HTTP {status}" if status else "no message"
    return message


def mentions_campaign(message: str) -> bool:
    """Whether a 404 message is about the campaign (so 5 in a row stop that campaign's rows). A message
    that names only the agent is not; the vendor's generic "agent or campaign" text counts."""
    m = message.lower()
    return "campaign" in m or "agent" not in m


# What the concurrency limiter hears as "too much at once". A refused connection or an unknown host is an
# outage or a wrong URL, not load, so it is not one.
CONGESTION_STATUSES = {429: "HTTP 429 (too many requests)", 503: "HTTP 503 (busy)", 504: "HTTP 504 (gateway timeout)"}
_CONGESTION_WORDS = ("timed out", "timeout", "stalled", "connection lost", "reset")


def congestion_reason(status: int | None, failure: str | None) -> str | None:
    """Why an attempt says the server or the path is overloaded, or None. `failure` describes a transport
    failure (client._describe_failure) when there was no HTTP answer."""
    if status is not None:
        return CONGESTION_STATUSES.get(status)
    text = (failure or "").lower()
    if any(word in text for word in _CONGESTION_WORDS):
        return text.split(" before ")[0].split(" after ")[0]
    return None
