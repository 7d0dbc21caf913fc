"""Crashes: a run killed at any point, a results CSV cut off mid-line, a ledger cut off mid-write.

The CLI runs as a child process (`python -m importer run`) against a Sandbox in this process, is killed with
SIGKILL, then a rerun in this process must finish the job: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import csv
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultkit import (
    assert_exactly_once,
    check_results_file,
    child_env,
    kill,
    server_fingerprints,
    spawn_run,
    wait_until,
    write_config,
    write_manifest,
)
from runkit import CAMPAIGN, read_results, run_cli

from importer.ledger import SENDING, UPLOADED, CallKey, Ledger
from importer.results import STATUSES
from importer.sandbox import Sandbox

WORKERS = 4


def rerun(sandbox: Sandbox, manifest: Path, config: Path, results: Path, *extra: str):
    return run_cli("run", manifest, "--config", config, "--api-url", sandbox.url, "--quiet", "--results", results,
                   *extra)


# --- 1. SIGKILL at a random point ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_sigkill_at_a_random_point_then_rerun_sends_every_row_exactly_once(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    with Sandbox(latency_ms=60, data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=24, agents=3)
        cfg = write_config(tmp_path, workers=WORKERS)
        child = spawn_run(manifest, cfg, sb.url, sb.api_key, tmp_path / "killed.csv")
        # The random point: anywhere from the child's first request to a little after its last one
        # (3 invites, then 24 uploads of 60 ms, 4 at a time: about 0.45 s).
        assert wait_until(lambda: sb.requests_log(), 30), "the child never reached the server"
        time.sleep(rng.uniform(0.0, 0.4))
        kill(child)
        stored_at_kill = len(sb.calls())

        # The killed run's results are an ordered prefix of whole lines (rows are written as they finish).
        killed = read_results(tmp_path / "killed.csv") if (tmp_path / "killed.csv").exists() else []
        assert [x["import_row"] for x in killed] == [str(r.row) for r in rows[: len(killed)]]
        assert all(x["import_status"] in STATUSES for x in killed)

        r = rerun(sb, manifest, cfg, tmp_path / "final.csv")
        assert r.code in (0, 1), r.out + r.err
        lines = check_results_file(tmp_path / "final.csv", rows)
        by_status = assert_exactly_once(lines, rows, sb.calls())
        unknown = len(by_status.get("unknown", []))
        assert unknown <= WORKERS, f"{unknown} unknown rows: more than the {WORKERS} that can be in flight"
        assert r.code == (1 if unknown else 0)
        assert len(sb.calls()) >= stored_at_kill
        with Ledger(tmp_path / "state", sb.url) as led:
            assert SENDING not in led.counts(), "a finished run leaves no row `sending`"


# --- 2a. a torn last line in a results CSV ---------------------------------------------------------


def _tear_last_line(src: Path, dst: Path, keep: str) -> None:
    """Copy src to dst with its last line cut just after the first `keep` in it, and no line end: what a
    results CSV looks like when its writer is cut off mid-line."""
    text = src.read_text(encoding="utf-8-sig").rstrip("\r\n")
    start = text.rfind("\n") + 1
    last = text[start:]
    dst.write_text(text[:start] + last[: last.index(keep) + len(keep)], encoding="utf-8-sig", newline="")


@pytest.fixture
def uploaded_results(tmp_path, monkeypatch):
    """A sandbox, and a finished run of 4 rows whose results CSV lives beside the manifest."""
    with Sandbox(data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=4, agents=1)
        cfg = write_config(tmp_path)
        r = rerun(sb, manifest, cfg, tmp_path / "first.csv")
        assert r.code == 0, r.out + r.err
        yield sb, cfg, rows, tmp_path / "first.csv"


@pytest.mark.parametrize("keep", ["Lyon,", "Lyon,5,", "Lyon,5,upl"],
                         ids=["before-import_row", "before-import_status", "inside-import_status"])
def test_torn_last_line_of_a_results_csv_is_detected_and_repaired(uploaded_results, tmp_path, keep):
    sb, cfg, rows, first = uploaded_results
    # The last row (row 5, site Lyon) is cut inside its import_* cells: its original cells are whole.
    _tear_last_line(first, tmp_path / "torn.csv", keep)
    before = len(sb.requests_log())
    r = rerun(sb, tmp_path / "torn.csv", cfg, tmp_path / "repaired.csv")
    assert r.code == 0, r.out + r.err
    assert "warning: row 5, " in r.err and "cut off while being written" in r.err  # detected, by its row
    lines = check_results_file(tmp_path / "repaired.csv", rows)  # repaired: a whole line per row again
    assert [x["import_status"] for x in lines] == ["already_uploaded"] * 4
    assert len(sb.requests_log()) == before, "nothing is sent again"
    assert lines[-1]["import_call_id"] == read_results(first)[-1]["import_call_id"]  # from the ledger
    assert sum(server_fingerprints(sb.calls()).values()) == 4


def test_torn_line_cut_inside_the_call_id_is_repaired_from_the_ledger(uploaded_results, tmp_path):
    sb, cfg, rows, first = uploaded_results
    call_id = read_results(first)[-1]["import_call_id"]
    _tear_last_line(first, tmp_path / "torn.csv", ",uploaded,200,,1," + call_id[:6])
    r = rerun(sb, tmp_path / "torn.csv", cfg, tmp_path / "repaired.csv")
    lines = check_results_file(tmp_path / "repaired.csv", rows)
    assert lines[-1]["import_call_id"] == call_id, r.err


def test_torn_line_cut_inside_an_original_cell_is_never_sent_again(uploaded_results, tmp_path):
    sb, cfg, rows, first = uploaded_results
    _tear_last_line(first, tmp_path / "torn.csv", CAMPAIGN[:8])
    before = len(sb.requests_log())
    r = rerun(sb, tmp_path / "torn.csv", cfg, tmp_path / "repaired.csv")
    assert "warning: row 5, " in r.err and "cut off while being written" in r.err
    assert len(sb.requests_log()) == before, "a row cut off mid-cell must not be sent (it was uploaded)"
    lines = check_results_file(tmp_path / "repaired.csv", rows)
    assert lines[-1]["import_status"] == "invalid" and "cut off" in lines[-1]["import_error"]


# --- 2b. an interrupted ledger write ---------------------------------------------------------------

_HAMMER = """
import sys
from importer.ledger import CallKey, Ledger, UPLOADED
led = Ledger(sys.argv[1], sys.argv[2])
led._db.execute("PRAGMA wal_autocheckpoint=0")  # keep every transaction in the WAL, so its tail is the newest
print("ready", flush=True)
i = 0
while True:
    key = CallKey("c", "a@b.fr", 1_750_000_000 + i, "f.wav", 1)
    led.mark_sending(key)
    led.mark(key, UPLOADED, call_id=str(i))
    i += 1
"""


def _ledger_rows(state: Path, api: str) -> dict[int, str]:
    db = sqlite3.connect(state / Ledger.FILE_NAME)
    try:
        return {ts - 1_750_000_000: status for ts, status in
                db.execute("SELECT ts, status FROM calls WHERE api=?", (api,))}
    finally:
        db.close()


def _tear_last_commit(wal: Path) -> None:
    """Cut the WAL in the middle of the frame that commits its last transaction (a torn write). Frames after
    it, if any, belong to a transaction the kill interrupted: SQLite ignores those anyway."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    salt = data[16:24]
    last_commit = None
    offset = 32  # the WAL header; then frames of a 24-byte header and a page
    while offset + 24 + page_size <= len(data) and data[offset + 8: offset + 16] == salt:
        if int.from_bytes(data[offset + 4: offset + 8], "big"):  # database size after commit: a commit frame
            last_commit = offset
        offset += 24 + page_size
    assert last_commit is not None
    with open(wal, "r+b") as fh:
        fh.truncate(last_commit + 24 + page_size // 2)


def _without_last_transaction(rows: dict[int, str]) -> dict[int, str]:
    """The hammer's last transaction was the last row's `uploaded` mark, or that row's `sending` mark."""
    out = dict(rows)
    last = max(out)
    if out[last] == UPLOADED:
        out[last] = SENDING
    else:
        del out[last]
    return out


def test_sigkill_while_the_ledger_is_written_then_a_torn_wal_tail(tmp_path, monkeypatch):
    state = tmp_path / "state"
    api = "http://127.0.0.1:9"
    child = subprocess.Popen([sys.executable, "-c", _HAMMER, str(state), api], env=child_env("unused"),
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    # Thousands of tiny transactions, then a kill in the middle of the stream: wait for a few hundred rows
    # rather than for a fixed time, which a loaded machine makes too short.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(_ledger_rows(state, api)) < 200:
        time.sleep(0.05)
    kill(child)
    child.stdout.close()
    wal = state / (Ledger.FILE_NAME + "-wal")
    assert wal.stat().st_size > 0 and (state / (Ledger.FILE_NAME + "-shm")).exists(), "a crash leaves -wal/-shm"

    # A torn WAL tail (a power cut in the middle of its last write): copy the crash image, cut its last frame.
    torn = tmp_path / "torn-state"
    shutil.copytree(state, torn)
    _tear_last_commit(torn / wal.name)

    killed = _ledger_rows(state, api)
    n = len(killed)
    assert n > 100, "the child wrote a few hundred transactions"
    # SIGKILL loses nothing that was committed: rows 0..n-1 uploaded, the last one perhaps still `sending`.
    assert sorted(killed) == list(range(n)) and all(killed[i] == UPLOADED for i in range(n - 1))
    # The torn tail loses exactly the last transaction, never one in the middle.
    assert _ledger_rows(torn, api) == _without_last_transaction(killed)
    for folder in (state, torn):
        with Ledger(folder, api) as led:  # opens (quick_check passes), and the killed run's lock is free
            assert led.recover() <= 1  # the row cut off while `sending` becomes `unknown`

    # ... and a real run on each ledger carries on.
    with Sandbox(data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=3, agents=1)
        for folder in (state, torn):
            cfg = tmp_path / f"{folder.name}.yaml"
            cfg.write_text(f"state_dir: {folder}\n", encoding="utf-8")
            r = rerun(sb, manifest, cfg, tmp_path / f"{folder.name}.csv")
            assert r.code == 0, r.out + r.err
            assert [x["import_status"] for x in check_results_file(tmp_path / f"{folder.name}.csv", rows)] == [
                "uploaded"] * 3
        assert server_fingerprints(sb.calls()) == {r.fingerprint: 2 for r in rows}  # two separate ledgers


def test_leftover_wal_from_a_killed_run_is_replayed_by_the_next_run(tmp_path, monkeypatch):
    with Sandbox(latency_ms=100, data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=16, agents=1)
        cfg = write_config(tmp_path, workers=2)
        child = spawn_run(manifest, cfg, sb.url, sb.api_key, tmp_path / "killed.csv")
        assert wait_until(lambda: len(sb.calls()) >= 6, 30)
        kill(child)
        state = tmp_path / "state"
        assert (state / (Ledger.FILE_NAME + "-wal")).stat().st_size > 0  # the uploads live only in the WAL
        r = rerun(sb, manifest, cfg, tmp_path / "final.csv")
        assert r.code in (0, 1), r.out + r.err
        lines = check_results_file(tmp_path / "final.csv", rows)
        by_status = assert_exactly_once(lines, rows, sb.calls())
        assert len(by_status.get("already_uploaded", [])) >= 4, "what the killed run recorded was kept"
        assert len(by_status.get("unknown", [])) <= 2


def test_a_damaged_ledger_is_refused_with_exit_2_not_used(tmp_path, monkeypatch):
    """Found by this suite: `PRAGMA quick_check` reports damage as a row, which the ledger ignored, so a
    damaged ledger was accepted and failed later (or hid rows it knew as uploaded)."""
    state = tmp_path / "state"
    with Ledger(state, "http://127.0.0.1:9") as led:
        for i in range(3000):
            led.mark(CallKey("c", f"a{i}@b.fr", 1_750_000_000 + i, "f.wav", 1), UPLOADED, call_id="x" * 20)
    db = state / Ledger.FILE_NAME
    # One page of the calls table scribbled over (found by SQLite's dbstat, whatever else the schema holds).
    look = sqlite3.connect(db)
    page = look.execute("SELECT pageno FROM dbstat WHERE name='calls' AND pagetype='leaf' ORDER BY pageno").fetchone()[0]
    look.close()
    data = bytearray(db.read_bytes())
    start = (page - 1) * 4096
    data[start + 100: start + 600] = b"\xab" * 500
    db.write_bytes(bytes(data))
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "k")
    manifest, _ = write_manifest(tmp_path, n=2, agents=1)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"state_dir: {state}\n", encoding="utf-8")
    r = run_cli("run", manifest, "--config", cfg, "--api-url", "http://127.0.0.1:9", "--quiet",
                "--results", tmp_path / "r.csv")
    assert r.code == 2, r.out + r.err
    assert "is damaged" in r.err and "move it aside" in r.err


# --- the results file cannot be written ------------------------------------------------------------


def test_an_unwritable_results_path_is_exit_2_before_anything_is_sent(sandbox, tmp_path, monkeypatch):
    """Found by this suite: a results path that is a folder (or a full disk) ended in "unexpected error" (70)."""
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    manifest, _ = write_manifest(tmp_path, n=2, agents=1)
    cfg = write_config(tmp_path)
    folder = tmp_path / "looks-like.csv"
    folder.mkdir()
    full = tmp_path / "full.csv"
    full.symlink_to("/dev/full")
    xlsx_folder = tmp_path / "looks-like.xlsx"
    xlsx_folder.mkdir()
    for results, message in ((tmp_path, "results are written as .csv or .xlsx files"), (folder, "is not a file"),
                             (xlsx_folder, "is not a file"), (full, "is not a file")):
        r = rerun(sandbox, manifest, cfg, results)
        assert r.code == 2, r.out + r.err
        assert f"--results {results}" in r.err and message in r.err
    assert sandbox.requests_log() == []


def test_a_disk_full_mid_run_stops_the_run_with_exit_2_and_a_rerun_completes(sandbox, tmp_path, monkeypatch):
    """Found by this suite: when the results file could no longer be written (disk full, file size limit),
    the error was lost in a worker thread: the run went on, printed "every row is uploaded" and exited 0 with
    a results file missing its last rows."""
    resource = pytest.importorskip("resource")
    manifest = tmp_path / "calls.csv"
    _, rows = write_manifest(tmp_path, n=40, agents=1)  # for the recordings and the expected fingerprints
    with open(manifest, "w", newline="", encoding="utf-8") as fh:  # the same rows with a 40 kB note each
        w = csv.writer(fh)
        w.writerow(["file_path", "agent_email", "conversation_timestamp", "campaign_id", "note"])
        w.writerows([r.file, r.email, r.ts, CAMPAIGN, "n" * 40_000] for r in rows)
    cfg = write_config(tmp_path, workers=2)
    # The results file reaches it around row 15; the ledger's files stay well below (its WAL takes about 23 kB
    # a row: at row 30, with 20 kB notes, it came within 15% of the limit and a new index pushed it over).
    limit = 600_000

    def file_size_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "importer", "run", str(manifest), "--config", str(cfg), "--api-url", sandbox.url,
           "--quiet", "--results", str(tmp_path / "full.csv")]
    done = subprocess.run(cmd, env=child_env(sandbox.api_key), preexec_fn=file_size_limit, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot write the results file {tmp_path / 'full.csv'}" in done.stderr
    assert "run the same manifest again" in done.stderr
    assert "every row is uploaded" not in done.stdout
    sent = len(sandbox.calls())
    assert sent < 40, "the run stopped instead of carrying on without its results file"

    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    r = rerun(sandbox, manifest, cfg, tmp_path / "final.csv")
    assert r.code == 0, r.out + r.err
    lines = check_results_file(tmp_path / "final.csv", rows)
    by_status = assert_exactly_once(lines, rows, sandbox.calls(), allowed={"uploaded", "already_uploaded"})
    assert len(by_status["already_uploaded"]) == sent
