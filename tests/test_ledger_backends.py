"""The ledger's two backends against real databases: SQLite on disk, PostgreSQL started by the tests.

Claims race between runs (threads with their own ledger objects, each a run); leases expire; the schema is
created once when runs start together; old SQLite ledgers are migrated in place; config refuses a URL that
carries a password without repeating it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faultkit import REPO

from importer.config import parse_config
from importer.errors import ConfigError
from importer.ledger import FAILED, SENDING, UNKNOWN, UPLOADED, CallKey, Ledger, open_ledger

API = "http://127.0.0.1:8000"


def keys(n: int, campaign: str = "665dc5c57275b74ce35c03ab") -> list[CallKey]:
    return [CallKey(campaign, f"a{i % 7}@example.com", 1_750_000_000 + i, f"rec{i}.wav", 1000 + i) for i in range(n)]


def pg_ledger(url: str, **kw):
    from importer.ledger.postgres import PostgresLedger

    return PostgresLedger(url, API, **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """A factory of ledgers (one per simulated run) on one store, for each backend."""
    if request.param == "sqlite":
        return lambda **kw: Ledger(tmp_path / "state", API, lock=False, **kw)
    url = request.getfixturevalue("pg_url")
    return lambda **kw: pg_ledger(url, **kw)


def test_of_two_runs_racing_for_every_row_exactly_one_claims_it(pg_url):
    ks = keys(300)
    runs = [pg_ledger(pg_url, register=True) for _ in range(3)]
    won: list[list[CallKey]] = [[] for _ in runs]
    barrier = threading.Barrier(len(runs) * 4)

    def work(r: int) -> None:
        barrier.wait()
        for k in ks:
            if runs[r].claim(k) is None:
                won[r].append(k)

    threads = [threading.Thread(target=work, args=(r,)) for r in range(len(runs)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [k for w in won for k in w]
    # Four threads of one run share its identity: a row it holds is "its own" again (a retried claim), so
    # count distinct claims per run and check that no row went to two runs.
    per_run = [set(w) for w in won]
    assert sum(len(s) for s in per_run) == len(ks) == len(set(claimed))
    holder = runs[0].holder(ks[0])
    assert holder is not None and holder.entry.status == SENDING and holder.host
    for r in runs:
        r.close()


def test_a_claim_takes_only_what_is_safe_to_send(backend):
    me, other = backend(), backend()
    k_failed, k_unknown, k_uploaded, k_mine = keys(4)
    other.mark(k_failed, FAILED, http_status=503, error="gave up")
    other.mark(k_unknown, UNKNOWN, http_status=500, error="boom")
    other.mark(k_uploaded, UPLOADED, call_id="c1", http_status=200)
    assert me.claim(k_failed) is None  # not kept by the server: safe to send again
    held = me.claim(k_unknown)
    assert held is not None and held.entry.status == UNKNOWN  # the server may have it
    assert me.claim(k_unknown, retry_unknown=True) is None  # the user asked for it
    me.mark(k_mine, UNKNOWN)
    assert me.claim(k_mine, retry_unknown=True) is not None  # not twice by the run that just saw it unknown
    up = me.claim(k_uploaded, retry_unknown=True)
    assert up is not None and (up.entry.status, up.entry.call_id) == (UPLOADED, "c1")
    assert me.claim(k_failed) is None  # a claim retried after a lost answer is still this run's
    me.close()
    other.close()


def test_count_uploaded_since_counts_this_apis_uploads_in_the_window(backend):
    led = backend()
    ks = keys(5)
    for k in ks[:3]:
        led.mark(k, UPLOADED, call_id="x")
    led.mark(ks[3], FAILED)
    led.mark(ks[4], UNKNOWN)
    assert led.count_uploaded_since(time.time() - 3600) == 3
    assert led.count_uploaded_since(time.time() + 3600) == 0
    led.close()


_DIE_WHILE_SENDING = """
import os, sys
from importer.ledger.postgres import PostgresLedger
from importer.ledger import CallKey
led = PostgresLedger(sys.argv[1], sys.argv[2], lease_seconds=3, register=True)
led.claim(CallKey("c", "a@b.fr", 1, "f.wav", 1))
print(led.identity.run_id, flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_run_whose_lease_expires_leaves_its_sending_rows_unknown(pg_url):
    child = subprocess.run([sys.executable, "-c", _DIE_WHILE_SENDING, pg_url, API], capture_output=True,
                           text=True, env={"PYTHONPATH": str(REPO), "PGPASSWORD": _pgpassword(), "PATH": "/usr/bin"})
    dead = child.stdout.strip()
    assert child.returncode == -9 and dead, child.stderr
    led = pg_ledger(pg_url, register=True)
    k = CallKey("c", "a@b.fr", 1, "f.wav", 1)
    assert led.recover() == 0 and led.get(k).status == SENDING  # its lease has not run out yet
    assert {r.run_id for r in led.runs()} == {dead, led.identity.run_id}
    time.sleep(3.5)
    assert led.recover() == 1
    entry = led.get(k)
    assert entry.status == UNKNOWN and f"run {dead} on host" in entry.error
    assert [r.run_id for r in led.runs()] == [led.identity.run_id]
    led.close()


def test_a_claim_that_cannot_be_recorded_raises_and_is_given_back_once_the_database_answers(pg_url, pg_cluster):
    from pgkit import CuttableProxy

    from importer.ledger import LedgerUnavailable

    proxy = CuttableProxy(pg_cluster.port)
    led = pg_ledger(pg_url.replace(f":{pg_cluster.port}/", f":{proxy.port}/"), register=True, lease_seconds=8)
    sent, cut = keys(2)
    assert led.claim(sent) is None
    proxy.cut()
    with pytest.raises(LedgerUnavailable, match="did not answer \\(claiming a row\\)"):
        led.claim(cut)  # the caller does not send it
    with pytest.raises(LedgerUnavailable, match="recording a row as uploaded"):
        led.mark(sent, UPLOADED, call_id="c-1")  # the request went: the outcome is kept for later
    proxy.restore()
    led.close()  # writes what it kept, gives back the claim it could not confirm, ends the run
    with pg_ledger(pg_url) as again:
        assert again.get(sent).status == UPLOADED and again.get(sent).call_id == "c-1"
        assert again.get(cut) is None or again.get(cut).status == FAILED
        assert again.runs() == []
        assert again.claim(cut) is None  # free to send


def _pgpassword() -> str:
    import os

    return os.environ["PGPASSWORD"]


def test_runs_starting_together_create_the_schema_once(pg_url):
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            pg_ledger(pg_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM allobrain_schema").fetchall() == [(1,)]


def test_a_sqlite_ledger_of_the_first_releases_is_migrated_in_place(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / Ledger.FILE_NAME)
    db.executescript("""
        CREATE TABLE calls (api TEXT NOT NULL, campaign_id TEXT NOT NULL, agent_email TEXT NOT NULL,
            ts INTEGER NOT NULL, file_name TEXT NOT NULL, file_size INTEGER NOT NULL, status TEXT NOT NULL,
            call_id TEXT, http_status INTEGER, error TEXT, updated_at TEXT NOT NULL,
            PRIMARY KEY (api, campaign_id, agent_email, ts, file_name, file_size)) WITHOUT ROWID;
        CREATE TABLE agents (api TEXT NOT NULL, email TEXT NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (api, email)) WITHOUT ROWID;
    """)
    k1, k2 = keys(2)
    db.execute("INSERT INTO calls VALUES (?,?,?,?,?,?,'uploaded','old-id',200,NULL,'2026-01-01T00:00:00+00:00')",
               (API, k1.campaign_id, k1.agent_email, k1.timestamp, k1.file_name, k1.file_size))
    db.execute("INSERT INTO agents VALUES (?, 'a0@example.com', '2026-01-01T00:00:00+00:00')", (API,))
    db.commit()
    db.close()
    with Ledger(state, API, lock=False, read_only=True) as old:  # a dry run reads it as it is
        assert old.get(k1).call_id == "old-id" and old.runs() == []
    with Ledger(state, API, register=True) as led:
        assert led.get(k1).call_id == "old-id" and led.invited() == {"a0@example.com"}
        assert led.claim(k1) is not None and led.claim(k2) is None
        assert [r.run_id for r in led.runs()] == [led.identity.run_id]
    db = sqlite3.connect(state / Ledger.FILE_NAME)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    db.close()


def test_the_shared_rate_limit_spaces_every_runs_requests(pg_url):
    runs = [pg_ledger(pg_url) for _ in range(2)]
    limiters = [r.shared_limiter(20.0) for r in runs]
    stamps: list[float] = []
    lock = threading.Lock()

    def work(limiter) -> None:
        for _ in range(15):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work, args=(lim,)) for lim in limiters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    # 60 requests at 20/s over two runs, as a server enforcing 20/s sees them (the sandbox's own token bucket:
    # a second's worth of burst): none refused, and they took the three seconds that 60 at 20/s take.
    from importer.sandbox.faults import TokenBucket

    now = [stamps[0]]
    bucket = TokenBucket(20.0, clock=lambda: now[0])
    refused = 0
    for stamp in stamps:
        now[0] = stamp
        refused += bucket.take() > 0
    assert refused == 0
    assert stamps[-1] - stamps[0] >= 2.5
    for r in runs:
        r.close()


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "postgresql://importer:S3cret-pw@db.internal:5432/allobrain",
    "postgresql://importer@db.internal/allobrain?password=S3cret-pw",
    "postgres://importer:S3cret-pw@db.internal/allobrain",
])
def test_a_ledger_url_carrying_a_password_is_refused_without_repeating_it(url):
    with pytest.raises(ConfigError) as exc:
        parse_config({"ledger": {"url": url}}, source="team.yaml")
    message = str(exc.value)
    assert "'ledger.url' carries a password" in message and "PGPASSWORD" in message and "~/.pgpass" in message
    assert "S3cret-pw" not in message


@pytest.mark.parametrize(("ledger", "expected"), [
    ({"url": "mysql://db/x"}, "'ledger.url' must start with postgresql://"),
    ({"url": "postgresql://importer@db.internal:5432/"}, "'ledger.url' names no database"),
    ({"url": "postgresql://importer@db.internal:99999/x"}, "'ledger.url' is not a valid URL"),
    ({"url": 5}, "'ledger.url' must be a postgresql:// URL or null"),
    ({"lease_seconds": 1}, "'ledger.lease_seconds' must be a number of seconds from 3 to 86400"),
    ({"lease_seconds": "long"}, "'ledger.lease_seconds' must be a number"),
    ({"leases": 3}, "unknown key 'ledger.leases'"),
])
def test_bad_ledger_settings_name_the_key(ledger, expected):
    with pytest.raises(ConfigError, match=expected.replace("?", r"\?").replace(".", r"\.")):
        parse_config({"ledger": ledger}, source="team.yaml")


def test_the_factory_picks_the_backend_from_config_alone(tmp_path, pg_url):
    sqlite_cfg = parse_config({"state_dir": str(tmp_path / "s")})
    with open_ledger(sqlite_cfg, API) as led:
        assert isinstance(led, Ledger) and Path(led.where) == tmp_path / "s" / Ledger.FILE_NAME
    pg_cfg = parse_config({"ledger": {"url": pg_url, "lease_seconds": 30}})
    with open_ledger(pg_cfg, API) as led:
        assert not isinstance(led, Ledger) and led.where == pg_url and led.lease_seconds == 30
