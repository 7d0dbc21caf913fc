"""The SQLite ledger's schema and its migrations, recorded in a `schema_version` table.

Version 1 is the ledger as the first releases wrote it (no version table; `calls` and `agents`; some also
have the `fingerprint` column and `meta` table of the same-recording rule, added then without a version).
Version 2 adds who claimed a row (`calls.run_id`), the `runs` table (`allobrain-import status`), an index for
counting uploads since a time (the daily quota), and makes sure of the fingerprint and uploaded_at columns,
the `meta` table and the indexes. A ledger of an earlier version is migrated in place when a
run opens it; nothing it knew is lost.
"""

from __future__ import annotations

import sqlite3
import uuid

CURRENT = 2

_V1 = """
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
    PRIMARY KEY (api, campaign_id, agent_email, ts, file_name, file_size)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agents (
    api TEXT NOT NULL,
    email TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (api, email)
) WITHOUT ROWID;
"""

_V2 = """
ALTER TABLE calls ADD COLUMN run_id TEXT;
CREATE INDEX IF NOT EXISTS calls_uploaded_at ON calls (api, uploaded_at) WHERE uploaded_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_by_size ON calls (api, campaign_id, file_size, status);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    api TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    user TEXT NOT NULL,
    manifest TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    ended_at TEXT,
    lease_seconds REAL NOT NULL,
    rows_done INTEGER NOT NULL DEFAULT 0
);
"""

STEPS = {1: _V1, 2: _V2}


class NewerSchema(Exception):  # noqa: N818
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def version_of(db: sqlite3.Connection) -> int:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_version" in tables:
        row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        if row and row[0] is not None:
            return int(row[0])
    return 1 if "calls" in tables else 0


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns that ledgers of version 1 may or may not have: the fingerprint of the same-recording rule, and
    uploaded_at (the Unix time of the `uploaded` mark, for the daily quota), filled from each uploaded row's
    update time, which is when it was marked."""
    have = {row[1] for row in db.execute("PRAGMA table_info(calls)")}
    if "fingerprint" not in have:
        db.execute("ALTER TABLE calls ADD COLUMN fingerprint TEXT")
    if "uploaded_at" not in have:
        db.execute("ALTER TABLE calls ADD COLUMN uploaded_at REAL")
        db.execute("UPDATE calls SET uploaded_at = CAST(strftime('%s', updated_at) AS REAL) WHERE status = 'uploaded'")


def migrate(db: sqlite3.Connection) -> int:
    """Bring the ledger to CURRENT in one transaction (a crash mid-way leaves the old version whole)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = version_of(db)
        if version > CURRENT:
            raise NewerSchema(version)
        for step in range(version + 1, CURRENT + 1):
            if step == 2:
                _add_missing_columns(db)
            for statement in STEPS[step].split(";"):
                if statement.strip():
                    db.execute(statement)
        if version < CURRENT:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (CURRENT,))
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('ledger_id', ?)", (uuid.uuid4().hex,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return version
