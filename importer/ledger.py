"""The ledger: what was sent to which API, kept in SQLite so that no rerun sends a call twice.

One database per user (or per `state_dir`), independent of where manifests and results live. A call's key is
(API base URL, campaign, agent email, timestamp, file name, file size). A row is written as `sending` just
before its request and updated after it; a row still `sending` when a run starts was cut off by a crash and
becomes `unknown`. One run at a time holds the ledger (an exclusive file lock), so two runs cannot race.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import UsageError
from .safety import clean_text

try:  # POSIX; on other systems the lock is skipped (documented in the README)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SENDING = "sending"
UPLOADED = "uploaded"
UNKNOWN = "unknown"
FAILED = "failed"  # the server did not keep it (refused, gave up, interrupted): safe to send again

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    api TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    agent_email TEXT NOT NULL,
    ts INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    call_id TEXT,
    http_status INTEGER,
    error TEXT,
    updated_at TEXT NOT NULL,
    fingerprint TEXT,
    uploaded_at REAL,
    PRIMARY KEY (api, campaign_id, agent_email, ts, file_name, file_size)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agents (
    api TEXT NOT NULL,
    email TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (api, email)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""
# Ledgers written before the same-recording rule have no fingerprint column: added in place. Those written
# before the daily quota have no uploaded_at (the Unix time of the `uploaded` mark): added, and filled from
# the update time of each uploaded row, which is when it was marked.
_MIGRATIONS = (
    ("calls", "fingerprint", ("ALTER TABLE calls ADD COLUMN fingerprint TEXT",)),
    ("calls", "uploaded_at", ("ALTER TABLE calls ADD COLUMN uploaded_at REAL",
                              "UPDATE calls SET uploaded_at = CAST(strftime('%s', updated_at) AS REAL)"
                              " WHERE status = 'uploaded'")),
)
_INDEXES = """
CREATE INDEX IF NOT EXISTS calls_by_size ON calls (api, campaign_id, file_size, status);
CREATE INDEX IF NOT EXISTS calls_uploaded_at ON calls (api, uploaded_at) WHERE uploaded_at IS NOT NULL;
"""



@dataclass(frozen=True, slots=True)
class CallKey:
    campaign_id: str
    agent_email: str
    timestamp: int
    file_name: str
    file_size: int


@dataclass(frozen=True, slots=True)
class Entry:
    status: str
    call_id: str | None
    http_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload the ledger holds, for the same-recording rule."""

    agent_email: str
    timestamp: int
    file_name: str
    call_id: str | None
    fingerprint: str | None
    updated_at: str


def default_state_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("allobrain-import", appauthor=False))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """Thread-safe: one connection guarded by a lock (each write is a tiny WAL transaction)."""

    FILE_NAME = "ledger.sqlite3"

    def __init__(self, state_dir: Path, api: str, *, lock: bool = True, read_only: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self.api = api
        self.path = self.state_dir / self.FILE_NAME
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the ledger folder {self.state_dir}: {exc.strerror}; set state_dir") from None
        self._lock_file = None
        if lock:
            self._take_lock()
        db: sqlite3.Connection | None = None
        try:
            if read_only:  # a dry run looks, never writes
                db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
                self._db, self._mutex = db, threading.Lock()
                return
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (the OS keeps the written pages); a power cut or an
            # OS crash can lose the last transactions. Losing an `uploaded` mark only makes that row `unknown`
            # (safe), but losing a `sending` mark could let a rerun send that call again, so mark_sending()
            # alone commits with FULL (an fsync of the WAL, which also covers every earlier transaction).
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            _migrate(db)
            # quick_check reports damage as rows, not as an error: a damaged b-tree could hide an `uploaded`
            # row (and send its call again) or fail mid-run, so anything but "ok" refuses the ledger here.
            (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except sqlite3.OperationalError as exc:  # cannot open (permissions, a folder in its place, locked)
            if db is not None:
                db.close()
            self._release_lock()
            raise UsageError(
                f"cannot open the ledger {self.path} ({clean_text(exc, 200)}); check that state_dir is a "
                "writable folder"
            ) from None
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            self._release_lock()
            raise UsageError(
                f"the ledger {self.path} is damaged ({clean_text(exc, 200)}); move it aside to start a new one "
                "(rows it knew as uploaded would then be sent again)"
            ) from None
        self._db = db
        self._mutex = threading.Lock()

    @property
    def ledger_id(self) -> str | None:
        """This ledger's own identity (made when it was created), recorded beside each results file: a
        results file written through this very ledger is checked against it, row by row."""
        with self._mutex:
            try:
                row = self._db.execute("SELECT value FROM meta WHERE key='ledger_id'").fetchone()
            except sqlite3.OperationalError:  # a read-only look at a ledger older than the meta table
                return None
        return row[0] if row else None

    # --- the one-run-at-a-time lock ---------------------------------------------------------------

    def _take_lock(self) -> None:
        if fcntl is None:
            return
        f = open(self.state_dir / "ledger.lock", "a+")  # noqa: SIM115 - held for the ledger's life
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise UsageError(
                f"another allobrain-import run (pid {holder}) is using the ledger in {self.state_dir}; "
                "wait for it to finish (two runs at once could send the same call twice)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        self._release_lock()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- calls ------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Rows left `sending` by a run that died: the server may have them. Returns how many."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE calls SET status=?, error=?, updated_at=? WHERE api=? AND status=?",
                (UNKNOWN, "the run stopped while this call was being sent", _now(), self.api, SENDING),
            )
            return cur.rowcount

    def get(self, key: CallKey) -> Entry | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT status, call_id, http_status, error FROM calls WHERE api=? AND campaign_id=? "
                "AND agent_email=? AND ts=? AND file_name=? AND file_size=?",
                (self.api, *_key_tuple(key)),
            ).fetchone()
        return Entry(*row) if row else None

    def mark_sending(self, key: CallKey) -> None:
        """Durable before it returns: the request may leave only once this mark is on disk."""
        self._put(key, SENDING, None, None, None, durable=True)

    def mark(self, key: CallKey, status: str, *, call_id: str | None = None, http_status: int | None = None,
             error: str | None = None, fingerprint: str | None = None) -> None:
        self._put(key, status, call_id, http_status, error, fingerprint=fingerprint)

    def _put(self, key: CallKey, status: str, call_id: str | None, http_status: int | None, error: str | None,
             *, durable: bool = False, fingerprint: str | None = None) -> None:
        with self._mutex:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "INSERT INTO calls (api, campaign_id, agent_email, ts, file_name, file_size, status, call_id,"
                " http_status, error, updated_at, fingerprint, uploaded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT DO UPDATE SET status=excluded.status, call_id=excluded.call_id,"
                " http_status=excluded.http_status, error=excluded.error, updated_at=excluded.updated_at,"
                " fingerprint=coalesce(excluded.fingerprint, calls.fingerprint), uploaded_at=excluded.uploaded_at",
                # uploaded_at (Unix time) is set with the `uploaded` mark only: the daily quota counts it.
                (self.api, *_key_tuple(key), status, call_id, http_status, error, _now(), fingerprint,
                 time.time() if status == UPLOADED else None),
            )
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")

    # --- the same recording under another key -----------------------------------------------------

    def uploaded_sizes(self) -> set[tuple[str, int]]:
        """(campaign, file size) of every upload to this API: one query, so that a row is hashed only when
        the ledger holds an upload of the same size in its campaign."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT DISTINCT campaign_id, file_size FROM calls WHERE api=? AND status=?", (self.api, UPLOADED)
            )
            return {(c, int(s)) for c, s in rows.fetchall()}

    def uploads_of_size(self, campaign_id: str, file_size: int) -> list[Upload]:
        # A read-only look (a dry run) at a ledger older than the fingerprint column reads NULL instead.
        fingerprint = "fingerprint" if self._has_fingerprints else "NULL"
        with self._mutex:
            rows = self._db.execute(
                f"SELECT agent_email, ts, file_name, call_id, {fingerprint}, updated_at FROM calls WHERE api=?"
                " AND campaign_id=? AND file_size=? AND status=? ORDER BY updated_at",
                (self.api, campaign_id, file_size, UPLOADED),
            ).fetchall()
        return [Upload(*row) for row in rows]

    @functools.cached_property
    def _has_fingerprints(self) -> bool:
        with self._mutex:
            return "fingerprint" in {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}

    def count_uploaded_since(self, epoch_seconds: float) -> int:
        """Calls of this API marked uploaded at or after `epoch_seconds` (Unix time): the daily quota's count."""
        # A read-only look (a dry run) at a ledger older than uploaded_at reads the update time instead.
        when = "uploaded_at" if self._has_upload_times else "CAST(strftime('%s', updated_at) AS REAL)"
        with self._mutex:
            (n,) = self._db.execute(f"SELECT COUNT(*) FROM calls WHERE api=? AND status=? AND {when} >= ?",
                                    (self.api, UPLOADED, epoch_seconds)).fetchone()
        return int(n)

    @functools.cached_property
    def _has_upload_times(self) -> bool:
        with self._mutex:
            return "uploaded_at" in {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}

    def counts(self) -> dict[str, int]:
        with self._mutex:
            rows = self._db.execute("SELECT status, COUNT(*) FROM calls WHERE api=? GROUP BY status", (self.api,))
            return dict(rows.fetchall())

    # --- agents -----------------------------------------------------------------------------------

    def invited(self) -> set[str]:
        with self._mutex:
            return {r[0] for r in self._db.execute("SELECT email FROM agents WHERE api=?", (self.api,))}

    def mark_invited(self, email: str) -> None:
        with self._mutex:
            self._db.execute(
                "INSERT INTO agents (api, email, updated_at) VALUES (?,?,?) ON CONFLICT DO UPDATE SET"
                " updated_at=excluded.updated_at",
                (self.api, email, _now()),
            )


def _migrate(db: sqlite3.Connection) -> None:
    for table, column, statements in _MIGRATIONS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute("BEGIN IMMEDIATE")  # a column and its backfill land together, or not at all
            try:
                for statement in statements:
                    db.execute(statement)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
    db.executescript(_INDEXES)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('ledger_id', ?)", (uuid.uuid4().hex,))


def _key_tuple(key: CallKey) -> tuple[str, str, int, str, int]:
    return (key.campaign_id, key.agent_email, key.timestamp, key.file_name, key.file_size)
