"""The ledger (SQLite on disk) and the results writer (a real file), without a network."""

from __future__ import annotations

import csv
import threading
from datetime import datetime
from pathlib import Path

import pytest

from importer.errors import UsageError
from importer.ledger import FAILED, SENDING, UNKNOWN, UPLOADED, CallKey, Ledger
from importer.results import IMPORT_COLUMNS, Outcome, ResultsWriter, default_results_path

API = "https://api.qm.allobrain.com"
KEY = CallKey("665dc5c57275b74ce35c03ab", "a@b.fr", 1_750_000_000, "x.wav", 1234)


def test_ledger_round_trip_and_recovery(tmp_path):
    with Ledger(tmp_path, API) as led:
        assert led.get(KEY) is None
        led.mark_sending(KEY)
        assert led.get(KEY).status == SENDING
        led.mark(KEY, UPLOADED, call_id="abc", http_status=200)
        e = led.get(KEY)
        assert (e.status, e.call_id, e.http_status) == (UPLOADED, "abc", 200)
        other = CallKey(KEY.campaign_id, KEY.agent_email, KEY.timestamp, KEY.file_name, 999)
        led.mark_sending(other)  # then the process "dies"
    with Ledger(tmp_path, API) as led:
        assert led.recover() == 1
        assert led.get(other).status == UNKNOWN
        assert led.get(KEY).status == UPLOADED
        assert led.counts() == {UPLOADED: 1, UNKNOWN: 1}


def test_ledger_is_per_api_base_url(tmp_path):
    with Ledger(tmp_path, API) as led:
        led.mark(KEY, UPLOADED)
        led.mark_invited("a@b.fr")
    with Ledger(tmp_path, "http://127.0.0.1:8000") as led:
        assert led.get(KEY) is None and led.invited() == set()
    with Ledger(tmp_path, API) as led:
        assert led.invited() == {"a@b.fr"}


def test_one_run_at_a_time(tmp_path):
    with Ledger(tmp_path, API), pytest.raises(UsageError, match="another allobrain-import run"):
        Ledger(tmp_path, API)
    Ledger(tmp_path, API).close()  # released


def test_a_damaged_ledger_is_reported_not_silently_replaced(tmp_path):
    (tmp_path / Ledger.FILE_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="damaged"):
        Ledger(tmp_path, API)


def test_concurrent_writes_from_many_threads(tmp_path):
    with Ledger(tmp_path, API) as led:
        def work(t: int) -> None:
            for i in range(50):
                k = CallKey("c", f"t{t}@b.fr", i, "f.wav", 1)
                led.mark_sending(k)
                led.mark(k, FAILED if i % 2 else UPLOADED)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert led.counts() == {UPLOADED: 200, FAILED: 200}


def _writer(tmp_path: Path, n: int, delimiter: str = ",") -> ResultsWriter:
    rows = iter([[f"f{i}.wav", f"=HYPERLINK({i})"] for i in range(n)])
    return ResultsWriter(tmp_path / "r.csv", ("file_path", "note"), delimiter, rows, list(range(2, n + 2)))


def test_results_are_written_in_manifest_order_as_rows_finish(tmp_path):
    w = _writer(tmp_path, 4, ";")
    w.add(2, Outcome("failed", 422, "=bad value", 1))
    assert w.written == 0  # row 0 not finished: nothing may be written out of order
    w.add(0, Outcome("uploaded", 200, "", 1, "id0", "2026-01-01T00:00:00Z"))
    assert w.written == 1
    w.add(1, Outcome("invalid", error="row 3, agent_email: not a valid address"))
    w.add(3, Outcome("unknown", 500, "+boom", 1))
    w.close()
    raw = (tmp_path / "r.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines(), delimiter=";"))
    assert rows[0] == ["file_path", "note", *IMPORT_COLUMNS]
    assert [r[0] for r in rows[1:]] == ["f0.wav", "f1.wav", "f2.wav", "f3.wav"]
    assert rows[1][1] == "=HYPERLINK(0)"  # original cells are never altered
    assert rows[3][len(rows[0]) - 4] == "'=bad value"  # import_error guarded
    assert rows[4][len(rows[0]) - 4] == "'+boom"
    assert [r[2] for r in rows[1:]] == ["2", "3", "4", "5"]
    assert w.counts["uploaded"] == 1 and w.complete


def test_a_row_reported_twice_is_a_bug(tmp_path):
    w = _writer(tmp_path, 2)
    w.add(0, Outcome("uploaded"))
    with pytest.raises(ValueError):
        w.add(0, Outcome("uploaded"))


def test_default_results_paths(tmp_path):
    now = datetime(2026, 11, 25, 10, 11, 12)
    m = tmp_path / "calls.csv"
    assert default_results_path(m, False, now) == tmp_path / "results" / "calls-20261125-101112.csv"
    r = tmp_path / "results" / "calls-20261101-080000.csv"
    assert default_results_path(r, True, now) == tmp_path / "results" / "calls-20261125-101112.csv"
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "calls-20261125-101112.csv").write_text("x")
    assert default_results_path(m, False, now).name == "calls-20261125-101112-2.csv"


def test_a_ledger_that_cannot_be_opened_is_not_called_damaged(tmp_path):
    (tmp_path / Ledger.FILE_NAME).mkdir()  # a folder where the database should be
    with pytest.raises(UsageError, match="cannot open the ledger") as exc:
        Ledger(tmp_path, API)
    assert "damaged" not in str(exc.value)


def test_a_read_only_ledger_reads_without_writing(tmp_path):
    with Ledger(tmp_path, API) as led:
        led.mark(KEY, UPLOADED, call_id="x")
    before = (tmp_path / Ledger.FILE_NAME).stat().st_mtime_ns
    with Ledger(tmp_path, API, lock=False, read_only=True) as led:
        assert led.get(KEY).call_id == "x"
    assert (tmp_path / Ledger.FILE_NAME).stat().st_mtime_ns == before
