"""The SQLite ledger: what was sent to which API, kept on this machine so that no rerun sends a call twice.

One database per user (or per `state_dir`), independent of where manifests and results live. A call's key is
(API base URL, campaign, agent email, timestamp, file name, file size). A row is written as `sending` just
before its request and updated after it; a row still `sending` when a run starts was cut off by a crash and
becomes `unknown`. One run at a time holds the ledger (an exclusive file lock), so two runs cannot race:
sharing one import between machines is the PostgreSQL backend's job (postgres.py).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..errors import UsageError
from ..safety import clean_text
from .base import (
    FAILED,
    SENDING,
    UNKNOWN,
    UPLOADED,
    CallKey,
    Entry,
    Heartbeat,
    Holder,
    Identity,
    RunRecord,
    Upload,
    now_iso,
)
from .sqlite_schema import CURRENT, NewerSchema, migrate, version_of

try:  # POSIX; on other systems the lock is skipped (documented in the README)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

class Ledger:
    """Thread-safe: one connection guarded by a lock (each write is a tiny WAL transaction)."""

    FILE_NAME = "ledger.sqlite3"

    def __init__(self, state_dir: Path, api: str, *, lock: bool = True, read_only: bool = False,
                 register: bool = False, manifest: str = "", lease_seconds: float = 60.0) -> None:
        self.state_dir = Path(state_dir)
        self.api = api
        self.path = self.state_dir / self.FILE_NAME
        self.where = str(self.path)
        self.identity = Identity.here()
        self.lease_seconds = lease_seconds
        self._done = 0
        self._heartbeat: Heartbeat | None = None
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
                self._version = version_of(db)  # an old ledger is read as it is; a run migrates it
                return
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (the OS keeps the written pages); a power cut or an
            # OS crash can lose the last transactions. Losing an `uploaded` mark only makes that row `unknown`
            # (safe), but losing a `sending` mark could let a rerun send that call again, so mark_sending()
            # alone commits with FULL (an fsync of the WAL, which also covers every earlier transaction).
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
            # quick_check reports damage as rows, not as an error: a damaged b-tree could hide an `uploaded`
            # row (and send its call again) or fail mid-run, so anything but "ok" refuses the ledger here.
            (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except NewerSchema as exc:
            if db is not None:
                db.close()
            self._release_lock()
            raise UsageError(
                f"the ledger {self.path} was written by a newer allobrain-import (schema {exc.version}, this one "
                f"knows {CURRENT}); upgrade allobrain-import"
            ) from None
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
        self._version = CURRENT
        if register:
            self._register(manifest)

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

    # --- this run, as `status` lists it ---------------------------------------------------------

    def _register(self, manifest: str) -> None:
        me, now = self.identity, now_iso()
        with self._mutex:
            self._db.execute(
                "INSERT INTO runs (run_id, api, host, pid, user, manifest, started_at, heartbeat_at, lease_seconds)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (me.run_id, self.api, me.host, me.pid, me.user, manifest, now, now, self.lease_seconds),
            )
        self._heartbeat = Heartbeat(self._beat, max(1.0, self.lease_seconds / 3))

    def _beat(self, *, ended: bool = False) -> None:
        now = now_iso()
        try:
            with self._mutex:
                self._db.execute(
                    "UPDATE runs SET heartbeat_at=?, rows_done=?, ended_at=? WHERE run_id=?",
                    (now, self._done, now if ended else None, self.identity.run_id),
                )
        except sqlite3.Error:  # the next beat tries again; the file lock is what keeps other runs out
            pass

    def runs(self, *, live_only: bool = True) -> list[RunRecord]:
        if self._version < 2:
            return []
        with self._mutex:
            rows = self._db.execute(
                "SELECT run_id, api, host, pid, user, started_at, heartbeat_at, rows_done, manifest, ended_at,"
                " lease_seconds FROM runs ORDER BY started_at"
            ).fetchall()
        now = datetime.now(UTC)
        records = []
        for *fields, ended_at, lease in rows:
            live = ended_at is None and (now - datetime.fromisoformat(fields[6])).total_seconds() <= lease
            if live or not live_only:
                records.append(RunRecord(*fields, live=live))
        return records

    def shared_limiter(self, rate: float) -> None:
        """One run at a time: the run's own limiter is the whole limit."""
        return None

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._beat(ended=True)
            self._heartbeat = None
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
        """Rows left `sending` by a run that died: the server may have them. Returns how many. With one run
        at a time (the file lock), every `sending` row belongs to a dead run."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE calls SET status=?, error=?, updated_at=? WHERE api=? AND status=?",
                (UNKNOWN, "the run stopped while this call was being sent", now_iso(), self.api, SENDING),
            )
            db.execute("UPDATE runs SET ended_at=heartbeat_at WHERE ended_at IS NULL AND run_id<>?",
                       (self.identity.run_id,))
            return cur.rowcount

    def get(self, key: CallKey) -> Entry | None:
        """A row another run left `sending` reads as `unknown`: with one run at a time, that run is dead
        (what recover() makes of it; a dry run, which does not recover, sees the same)."""
        run = "run_id" if self._version >= 2 else "NULL"
        with self._mutex:
            row = self._db.execute(
                f"SELECT status, call_id, http_status, error, {run} FROM calls WHERE api=? AND campaign_id=? "
                "AND agent_email=? AND ts=? AND file_name=? AND file_size=?",
                (self.api, *_key_tuple(key)),
            ).fetchone()
        if row is None:
            return None
        status, call_id, http_status, error, run_id = row
        if status == SENDING and run_id != self.identity.run_id:
            status = UNKNOWN
        return Entry(status, call_id, http_status, error)

    def get_many(self, keys: list[CallKey]) -> dict[CallKey, Entry]:
        """In-process lookups cost microseconds: one by one is as fast as anything cleverer."""
        return {k: e for k in keys if (e := self.get(k)) is not None}

    def holder(self, key: CallKey) -> Holder | None:
        run = "calls.run_id, runs.host" if self._version >= 2 else "NULL, NULL"
        join = "LEFT JOIN runs ON runs.run_id = calls.run_id" if self._version >= 2 else ""
        with self._mutex:
            row = self._db.execute(
                f"SELECT status, call_id, http_status, error, {run}, calls.updated_at FROM calls {join} "
                "WHERE calls.api=? AND campaign_id=? AND agent_email=? AND ts=? AND file_name=? AND file_size=?",
                (self.api, *_key_tuple(key)),
            ).fetchone()
        return Holder(Entry(*row[:4]), row[4], row[5], row[6]) if row else None

    def claim(self, key: CallKey, *, retry_unknown: bool = False) -> Holder | None:
        """Take the row for this run, durably, just before its request: None when taken, else who has it.

        Taken only when nobody has it, or its last attempt was not kept (`failed`), or it is `unknown` from
        another run and the user asked for --retry-unknown. With the file lock no other run can race, but the
        rule is the same as in the shared ledger."""
        with self._mutex:
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                taken = self._db.execute(
                    _CLAIM, (self.api, *_key_tuple(key), now_iso(), self.identity.run_id, retry_unknown)
                ).fetchall()
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")
        return None if taken else self.holder(key)

    def mark_sending(self, key: CallKey) -> None:
        """Durable before it returns: the request may leave only once this mark is on disk."""
        self._put(key, SENDING, None, None, None, durable=True)

    def mark(self, key: CallKey, status: str, *, call_id: str | None = None, http_status: int | None = None,
             error: str | None = None, fingerprint: str | None = None) -> None:
        self._put(key, status, call_id, http_status, error, fingerprint=fingerprint)
        self._done += 1

    def _put(self, key: CallKey, status: str, call_id: str | None, http_status: int | None, error: str | None,
             *, durable: bool = False, fingerprint: str | None = None) -> None:
        with self._mutex:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "INSERT INTO calls (api, campaign_id, agent_email, ts, file_name, file_size, status, call_id,"
                " http_status, error, updated_at, run_id, fingerprint, uploaded_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT DO UPDATE SET status=excluded.status, call_id=excluded.call_id,"
                " http_status=excluded.http_status, error=excluded.error, updated_at=excluded.updated_at,"
                " run_id=excluded.run_id, fingerprint=coalesce(excluded.fingerprint, calls.fingerprint),"
                " uploaded_at=excluded.uploaded_at",
                # uploaded_at (Unix time) is set with the `uploaded` mark only: the daily quota counts it.
                (self.api, *_key_tuple(key), status, call_id, http_status, error, now_iso(), self.identity.run_id,
                 fingerprint, time.time() if status == UPLOADED else None),
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

    def counts(self) -> dict[str, int]:
        with self._mutex:
            rows = self._db.execute("SELECT status, COUNT(*) FROM calls WHERE api=? GROUP BY status", (self.api,))
            return dict(rows.fetchall())

    def count_uploaded_since(self, epoch_seconds: float) -> int:
        """Calls of this API marked uploaded at or after `epoch_seconds` (Unix time): the daily quota's count."""
        # A read-only look (a dry run) at a ledger older than uploaded_at reads the update time instead.
        when = "uploaded_at" if self._has_upload_times else "CAST(strftime('%s', updated_at) AS REAL)"
        with self._mutex:
            (n,) = self._db.execute(f"SELECT COUNT(*) FROM calls WHERE api=? AND status=? AND {when} >= ?",
                                    (self.api, UPLOADED, epoch_seconds)).fetchone()
        return int(n)

    def uploads_elsewhere_since(self, epoch_seconds: float) -> int:
        return 0  # one run at a time on this ledger: there is no elsewhere

    @functools.cached_property
    def _has_upload_times(self) -> bool:
        with self._mutex:
            return "uploaded_at" in {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}

    # --- agents -----------------------------------------------------------------------------------

    def invited(self) -> set[str]:
        with self._mutex:
            return {r[0] for r in self._db.execute("SELECT email FROM agents WHERE api=?", (self.api,))}

    def mark_invited(self, email: str) -> None:
        with self._mutex:
            self._db.execute(
                "INSERT INTO agents (api, email, updated_at) VALUES (?,?,?) ON CONFLICT DO UPDATE SET"
                " updated_at=excluded.updated_at",
                (self.api, email, now_iso()),
            )


# One statement, so the check and the take cannot be split by another writer. RETURNING yields a row only
# when this run took it (inserted, or updated past the WHERE).
_CLAIM = (
    "INSERT INTO calls (api, campaign_id, agent_email, ts, file_name, file_size, status, updated_at, run_id)"
    " VALUES (?,?,?,?,?,?,'sending',?,?)"
    " ON CONFLICT DO UPDATE SET status='sending', call_id=NULL, http_status=NULL, error=NULL, uploaded_at=NULL,"
    " updated_at=excluded.updated_at, run_id=excluded.run_id"
    f" WHERE calls.status='{FAILED}' OR (calls.status='{UNKNOWN}' AND ? AND calls.run_id IS NOT excluded.run_id)"
    " OR (calls.status='sending' AND calls.run_id IS excluded.run_id)"
    " RETURNING run_id"
)


def _key_tuple(key: CallKey) -> tuple[str, str, int, str, int]:
    return (key.campaign_id, key.agent_email, key.timestamp, key.file_name, key.file_size)
