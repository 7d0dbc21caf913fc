"""The pacing wing alone, on a fake clock: sending hours, the byte bucket's pace, the rolling quota's next slot,
the gate (stop or wait), the dry-run estimate; and the ledger's count behind the quota (a real SQLite file)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from importer.config import parse_config
from importer.errors import ConfigError
from importer.ledger import UPLOADED, CallKey, Ledger
from importer.pacing import (
    DAY,
    ByteBucket,
    HoursError,
    Limits,
    Pacer,
    estimate_lines,
    next_quota_slot,
    parse_hours,
)

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, zone: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


class FakeClock:
    """Epoch time that moves only when someone waits or sleeps; `stop_at` sets the stop event then."""

    def __init__(self, now: float, stop_at: float | None = None) -> None:
        self.t = now
        self.waits: list[float] = []
        self.stop = threading.Event()
        self.stop_at = stop_at

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.t += max(0.0, seconds)
        if self.stop_at is not None and self.t >= self.stop_at:
            self.stop.set()
        return self.stop.is_set()

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds

    @property
    def stopped(self) -> bool:
        return self.stop.is_set()


# --- sending hours ------------------------------------------------------------------------------------


def test_a_window_across_midnight_is_open_late_and_early_and_closed_by_day():
    hours = parse_hours("19:00-07:30", "Europe/Paris")
    assert hours.is_open(at("2026-12-01T19:00:00")) and hours.is_open(at("2026-12-01T23:59:59"))
    assert hours.is_open(at("2026-12-02T00:00:00")) and hours.is_open(at("2026-12-02T07:29:59"))
    assert not hours.is_open(at("2026-12-02T07:30:00")) and not hours.is_open(at("2026-12-02T18:59:59"))
    assert hours.next_open(at("2026-12-02T12:00:00")) == at("2026-12-02T19:00:00")
    assert hours.next_open(at("2026-12-02T03:00:00")) == at("2026-12-02T03:00:00")  # open: now
    assert hours.open_seconds_per_day() == 12.5 * 3600


def test_several_windows_seconds_and_midnight_end():
    hours = parse_hours("12:00-14:00, 19:00:30-24:00", "UTC")
    assert hours.next_open(at("2026-12-01T15:00:00", ZoneInfo("UTC"))) == at("2026-12-01T19:00:30", ZoneInfo("UTC"))
    assert hours.next_open(at("2026-12-01T23:59:59", ZoneInfo("UTC"))) == at("2026-12-01T23:59:59", ZoneInfo("UTC"))
    assert hours.next_open(at("2026-12-02T00:00:00", ZoneInfo("UTC"))) == at("2026-12-02T12:00:00", ZoneInfo("UTC"))
    assert hours.open_seconds_per_day() == 2 * 3600 + 5 * 3600 - 30
    assert parse_hours("22:00-06:00,23:00-01:00", "UTC").open_seconds_per_day() == 8 * 3600  # overlap once


def test_the_window_follows_the_time_zone_across_a_dst_change():
    hours = parse_hours("19:00-07:30", "Europe/Paris")
    # 2026-03-29: Paris goes from UTC+1 to UTC+2; the window opens at 19:00 local time on both days.
    assert hours.next_open(at("2026-03-28T12:00:00")) == at("2026-03-28T19:00:00")
    assert hours.next_open(at("2026-03-29T12:00:00")) == at("2026-03-29T19:00:00")
    assert at("2026-03-29T19:00:00") - at("2026-03-28T19:00:00") == DAY - 3600


@pytest.mark.parametrize("text, says", [
    ("7pm-8am", "'7pm-8am' is not a window of hours"),
    ("19:00", "'19:00' is not a window of hours"),
    ("19:00-25:00", "'19:00-25:00' is not a time of day"),
    ("24:00-06:00", "'24:00-06:00' is not a time of day"),
    ("19:60-07:00", "is not a time of day"),
    ("08:00-08:00", "starts and ends at the same time: for any time of day use null"),
    ("  ", "it is empty"),
    ("19:00-07:30,", "'' is not a window of hours"),
])
def test_bad_hours_say_what_to_write(text, says):
    with pytest.raises(HoursError) as info:
        parse_hours(text, "UTC")
    assert says in str(info.value)
    assert '"19:00-07:30"' in str(info.value) or "use null" in str(info.value)  # an example of what to write


def test_config_checks_the_pacing_keys_and_names_them():
    cfg = parse_config({"upload": {"max_per_day": 10000, "max_mb_per_second": 12.5, "hours": "19:00-07:30",
                                   "wait": True}})
    assert (cfg.upload.max_per_day, cfg.upload.max_mb_per_second, cfg.upload.hours, cfg.upload.wait) == \
        (10000, 12.5, "19:00-07:30", True)
    bad = [
        ({"hours": "7pm-8am"}, "'upload.hours': '7pm-8am' is not a window of hours"),
        ({"hours": 1140}, "'upload.hours' must be text such as \"19:00-07:30\" (quoted)"),  # YAML read 19:00 as 1140
        ({"max_per_day": -1}, "'upload.max_per_day' must be 0 (no quota)"),
        ({"max_per_day": 2.5}, "'upload.max_per_day' must be a whole number"),
        ({"max_mb_per_second": -1}, "'upload.max_mb_per_second' must be 0 (no cap)"),
        ({"max_mb_per_second": float("nan")}, "'upload.max_mb_per_second' must be 0 (no cap)"),
        ({"max_mb_per_second": float("inf")}, "'upload.max_mb_per_second' must be 0 (no cap)"),
        ({"wait": "yes"}, "'upload.wait' must be true or false"),
    ]
    for upload, says in bad:
        with pytest.raises(ConfigError) as info:
            parse_config({"upload": upload}, source="c.yaml")
        assert says in str(info.value), (upload, str(info.value))


# --- the byte bucket ----------------------------------------------------------------------------------


def test_the_byte_bucket_holds_the_cap_over_a_20_mb_body_in_small_steps():
    clock = FakeClock(1000.0)
    bucket = ByteBucket(2.0, clock=clock.now, sleep=clock.sleep)  # 2 MB/s
    total = 20_000_000
    for _ in range(total // 8192):
        bucket.take(8192)
    sent = total // 8192 * 8192
    elapsed = clock.t - 1000.0
    # The long-run rate is the cap (the tolerance lets at most 50 ms of bytes through early) ...
    assert sent / 2e6 - 0.05 <= elapsed <= sent / 2e6
    # ... and smooth: no wait is longer than one slice's share plus the tolerance, never seconds at a time.
    assert max(clock.waits) < 0.06


def test_workers_share_one_budget():
    clock = FakeClock(0.0)
    bucket = ByteBucket(1.0, clock=clock.now, sleep=clock.sleep)
    for _ in range(1000):  # four workers taking turns, as their threads interleave
        for _worker in range(4):
            bucket.take(4096)
    assert clock.t == pytest.approx(4 * 1000 * 4096 / 1e6 - 0.05, abs=0.01)


def test_an_idle_link_earns_no_burst_beyond_the_tolerance():
    clock = FakeClock(0.0)
    bucket = ByteBucket(1.0, clock=clock.now, sleep=clock.sleep)
    bucket.take(100_000)
    clock.t += 3600  # an hour without uploads
    start = clock.t
    for _ in range(100):
        bucket.take(10_000)
    assert clock.t - start == pytest.approx(1.0 - 0.05, abs=0.001)  # 1 MB at 1 MB/s, not an hour of credit


def test_the_byte_bucket_refuses_a_rate_that_is_not_positive():
    for rate in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            ByteBucket(rate)


# --- the rolling quota --------------------------------------------------------------------------------


def counter(times: list[float]):
    return lambda since: sum(1 for t in times if t >= since)


def test_the_next_slot_is_when_the_oldest_upload_in_the_window_turns_24_h_old():
    now = 1_800_000_000.0
    times = [now - 20 * 3600, now - 10 * 3600, now - 5 * 3600]  # 3 uploads in the last 24 h
    slot = next_quota_slot(counter(times), 3, now)
    assert times[0] + DAY <= slot <= times[0] + DAY + 1  # to the second, never early
    assert next_quota_slot(counter(times), 2, now) == pytest.approx(times[1] + DAY, abs=1)
    assert next_quota_slot(counter([now + 60] * 3), 3, now) == now + DAY  # stamped in the future


def make_pacer(clock: FakeClock, times: list[float], **kw) -> Pacer:
    return Pacer(clock=clock, zone=PARIS, count_since=counter(times), **kw)


def test_the_quota_lets_exactly_n_through_then_stops_with_the_next_slot():
    clock = FakeClock(at("2026-12-01T10:00:00"))
    times: list[float] = [clock.t - 23 * 3600]  # one upload from yesterday still counts
    pacer = make_pacer(clock, times, max_per_day=4)
    for _ in range(3):
        assert pacer.before_start() is None
        times.append(clock.t)
        pacer.after(True)
    why = pacer.before_start()
    # yesterday's upload leaves the window at 11:00 (found to the second, never early)
    assert why in ("daily quota reached: 4 uploads in 24 h; next slot at 2026-12-01 11:00 CET "
                   "(upload.max_per_day: 4)", "daily quota reached: 4 uploads in 24 h; next slot at 2026-12-01 "
                   "11:00:01 CET (upload.max_per_day: 4)")
    assert pacer.stopped is not None and pacer.stopped.kind == "quota"
    assert pacer.stopped.iso in ("2026-12-01T11:00:00+01:00", "2026-12-01T11:00:01+01:00")
    assert pacer.before_start() == why  # stopped for the rest of the run
    assert clock.waits == []  # it stopped; it did not wait


def test_a_failed_upload_gives_its_place_back():
    clock = FakeClock(at("2026-12-01T10:00:00"))
    pacer = make_pacer(clock, [], max_per_day=1)
    assert pacer.before_start() is None
    pacer.after(False)  # refused by the API: not counted
    assert pacer.before_start() is None


def test_the_last_place_waits_for_the_uploads_in_flight_instead_of_stopping_early():
    clock = FakeClock(at("2026-12-01T10:00:00"))
    pacer = make_pacer(clock, [], max_per_day=1)
    assert pacer.before_start() is None  # in flight
    got: list[str | None] = []
    second = threading.Thread(target=lambda: got.append(pacer.before_start()))
    second.start()
    second.join(0.5)
    assert second.is_alive() and not got, "decided before the upload in flight ended"
    pacer.after(False)  # it failed: its place is free again
    second.join(10)
    assert got == [None]


def test_on_a_shared_ledger_the_other_runs_uploads_count_at_once_not_at_the_next_count():
    clock = FakeClock(at("2026-12-01T10:00:00"))
    t0 = clock.t
    times: list[float] = []  # every upload of the fleet, as the ledger stamps them
    sending = [0]  # rows the other runs are sending now
    pacer = make_pacer(clock, times, max_per_day=200,
                       elsewhere=lambda since: sum(t >= since for t in times) + sending[0])
    assert pacer.before_start() is None  # counted: 0, far from the limit
    pacer.after(False)
    clock.sleep(1)  # the count is 1 s old: not counted again on age alone
    times.extend([t0 + 0.5] * 196)  # meanwhile the other runs uploaded 196 and are sending 4: the quota is full
    sending[0] = 4
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(pacer.before_start()))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not got, "let through though the fleet has the whole quota in flight or done"
    times.extend([t0 + 0.7] * 4)  # the four went through
    sending[0] = 0
    worker.join(10)
    assert got and got[0] is not None and got[0].startswith("daily quota reached: 200 uploads in 24 h")


def test_a_quota_filled_only_by_other_runs_in_flight_waits_for_them_instead_of_stopping():
    clock = FakeClock(at("2026-12-01T10:00:00"))
    times: list[float] = [clock.t - 10] * 9
    sending = [1]
    pacer = make_pacer(clock, times, max_per_day=10,
                       elsewhere=lambda since: sum(t >= since for t in times) + sending[0])
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(pacer.before_start()))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive() and not got, "decided while another run's upload was in flight"
    sending[0] = 0  # it failed: the last place is free again
    worker.join(10)
    assert got == [None]


def test_with_wait_the_quota_waits_for_its_slot_then_goes_on():
    clock = FakeClock(at("2026-12-01T10:00:00"))
    times = [clock.t - 23 * 3600]
    seen = []
    pacer = make_pacer(clock, times, max_per_day=1, wait=True, on_wait=seen.append)
    assert pacer.before_start() is None
    assert clock.t >= times[0] + DAY  # the clock moved to the next slot (in waits of at most 30 s)
    assert max(clock.waits) <= 30 and pacer.stopped is None
    assert seen[0] is not None and seen[0].kind == "quota" and seen[-1] is None  # said, then cleared


def test_hours_stop_or_wait_and_a_stop_signal_ends_the_wait_at_once():
    hours = parse_hours("19:00-07:30", "Europe/Paris")
    noon = at("2026-12-01T12:00:00")
    stopping = make_pacer(FakeClock(noon), [], hours=hours)
    assert stopping.ready() == "outside sending hours; they open at 2026-12-01 19:00 CET (upload.hours: 19:00-07:30)"
    waiting_clock = FakeClock(noon)
    waiting = make_pacer(waiting_clock, [], hours=hours, wait=True)
    assert waiting.before_start() is None and waiting_clock.t == at("2026-12-01T19:00:00")
    interrupted_clock = FakeClock(noon, stop_at=noon + 60)  # Ctrl-C a minute into a 7 h wait
    interrupted = make_pacer(interrupted_clock, [], hours=hours, wait=True)
    assert interrupted.before_start() == "the run stopped while waiting for a sending slot"
    assert interrupted_clock.t == noon + 60 and interrupted.stopped is None


def test_the_apis_own_quota_stops_every_worker_or_waits_for_it():
    clock = FakeClock(at("2026-12-01T10:00:00"))
    pacer = make_pacer(clock, [])
    assert pacer.before_start() is None
    assert pacer.resend_after_quota(3600, "HTTP 429: daily quota") is False
    assert pacer.stopped is not None and pacer.stopped.kind == "server"
    assert pacer.before_start() == ("the API's quota is reached (HTTP 429: daily quota); it accepts calls again "
                                    "at 2026-12-01 11:00 CET")
    waiting = make_pacer(FakeClock(clock.t), [], wait=True)
    assert waiting.before_start() is None
    assert waiting.resend_after_quota(600, "HTTP 429: later") is True  # resend once the time has come
    assert waiting.clock.now() >= clock.t + 600 and waiting.stopped is None


# --- the dry-run estimate -----------------------------------------------------------------------------


def test_the_estimate_under_a_daily_quota():
    now = at("2026-12-01T10:00:00")
    lines = estimate_lines(1_000_000, 1_000_000 * 500_000, Limits(workers=8, max_per_day=10_000), now=now, zone=PARIS)
    assert lines[-1] == "  finish estimate:    at most 10,000 a day: about 100 days, finishing around 2027-03-11"
    assert "  daily quota:        10,000 in any 24 h (0 used now)" in lines


def test_the_estimate_names_the_slowest_limit():
    now = at("2026-12-01T10:00:00")
    capped = estimate_lines(10_000, 10_000 * 2_000_000, Limits(workers=16, max_per_second=20, max_mb_per_second=4),
                            now=now, zone=PARIS)
    # 4 MB/s of 2 MB calls is 2 calls/s: slower than 20 calls/s and 16 workers
    assert capped[-1] == ("  finish estimate:    at most 4 MB/s (2.0 MB a call): about 1h23, finishing around "
                          "2026-12-01 11:23 CET")
    hours = parse_hours("19:00-07:00", "Europe/Paris")
    nightly = estimate_lines(100_000, 10**9, Limits(workers=1, hours=hours), now=now, zone=PARIS)
    assert nightly[-1].startswith("  finish estimate:    1 workers at about 1 s an upload, 12 h a day (19:00-07:00): "
                                  "about 2 days")


# --- the ledger's count -------------------------------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE calls (api TEXT NOT NULL, campaign_id TEXT NOT NULL, agent_email TEXT NOT NULL, ts INTEGER NOT NULL,
    file_name TEXT NOT NULL, file_size INTEGER NOT NULL, status TEXT NOT NULL, call_id TEXT, http_status INTEGER,
    error TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (api, campaign_id, agent_email, ts, file_name, file_size))
    WITHOUT ROWID;
CREATE TABLE agents (api TEXT NOT NULL, email TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (api, email))
    WITHOUT ROWID;
"""


def key(i: int) -> CallKey:
    return CallKey("c", "a@x.fr", 1_750_000_000 + i, f"f{i}.wav", 100)


def test_the_ledger_counts_uploads_since_a_time(tmp_path):
    with Ledger(tmp_path, "http://127.0.0.1:1") as ledger:
        t0 = datetime.now().timestamp()
        for i in range(3):
            ledger.mark_sending(key(i))
            ledger.mark(key(i), UPLOADED if i < 2 else "failed")
        ledger.mark_sending(key(9))
        assert ledger.count_uploaded_since(t0 - 5) == 2  # not the failed one, not the one being sent
        assert ledger.count_uploaded_since(t0 + 3600) == 0
    with Ledger(tmp_path, "http://127.0.0.1:2") as other:
        assert other.count_uploaded_since(0) == 0  # per API


def test_an_older_ledger_is_migrated_in_place_with_its_upload_times(tmp_path):
    db = sqlite3.connect(tmp_path / Ledger.FILE_NAME)
    db.executescript(OLD_SCHEMA)
    rows = [("2026-11-30T10:00:00+00:00", UPLOADED), ("2026-12-01T09:00:00+00:00", UPLOADED),
            ("2026-12-01T09:30:00+00:00", "failed")]
    for i, (when, status) in enumerate(rows):
        db.execute("INSERT INTO calls VALUES ('api', 'c', 'a@x.fr', ?, 'f.wav', 1, ?, NULL, NULL, NULL, ?)",
                   (i, status, when))
    db.commit()
    db.close()
    since = datetime.fromisoformat("2026-12-01T00:00:00+00:00").timestamp()
    with Ledger(tmp_path, "api", read_only=True, lock=False) as old:  # a dry run reads it as it is
        assert old.count_uploaded_since(since) == 1
    with Ledger(tmp_path, "api") as ledger:
        assert ledger.count_uploaded_since(since) == 1
        assert ledger.count_uploaded_since(since - DAY) == 2
        assert ledger.get(CallKey("c", "a@x.fr", 0, "f.wav", 1)).status == UPLOADED  # nothing else changed
    columns = [r[1] for r in sqlite3.connect(tmp_path / Ledger.FILE_NAME).execute("PRAGMA table_info(calls)")]
    assert "uploaded_at" in columns
