"""The PostgreSQL ledger's schema, created and migrated by the tool (a version table, one step per version).

Every table is prefixed `allobrain_` so the ledger can share a database with other things. Runs that start
at once serialise their migration on an advisory lock, so a schema step is never applied twice.
"""

from __future__ import annotations

import uuid
from typing import Any

CURRENT = 1
_LOCK = 0x616C6C6F  # "allo": the advisory lock that serialises migrations

_STEPS: dict[int, str] = {
    1: """
CREATE TABLE allobrain_calls (
    api text NOT NULL,
    campaign_id text NOT NULL,
    agent_email text NOT NULL,
    ts bigint NOT NULL,
    file_name text NOT NULL,
    file_size bigint NOT NULL,
    status text NOT NULL,
    call_id text,
    http_status integer,
    error text,
    run_id text,
    fingerprint text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api, campaign_id, agent_email, ts, file_name, file_size)
);
CREATE INDEX allobrain_calls_sending ON allobrain_calls (run_id) WHERE status = 'sending';
CREATE INDEX allobrain_calls_uploaded ON allobrain_calls (api, updated_at) WHERE status = 'uploaded';
CREATE INDEX allobrain_calls_by_size ON allobrain_calls (api, campaign_id, file_size) WHERE status = 'uploaded';
CREATE TABLE allobrain_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE allobrain_agents (
    api text NOT NULL,
    email text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api, email)
);
CREATE TABLE allobrain_runs (
    run_id text PRIMARY KEY,
    api text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    os_user text NOT NULL,
    manifest text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    lease_seconds double precision NOT NULL,
    rows_done bigint NOT NULL DEFAULT 0
);
CREATE TABLE allobrain_rate (
    api text PRIMARY KEY,
    next_at timestamptz NOT NULL
);
""",
}


class NewerSchema(Exception):  # noqa: N818
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def migrate(conn: Any) -> int:
    """Bring the database to CURRENT; returns the version found. `conn` is a psycopg connection."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS allobrain_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM allobrain_schema").fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > CURRENT:
            raise NewerSchema(version)
        for step in range(version + 1, CURRENT + 1):
            conn.execute(_STEPS[step])
            conn.execute("INSERT INTO allobrain_schema (version) VALUES (%s)", (step,))
        conn.execute("INSERT INTO allobrain_meta (key, value) VALUES ('ledger_id', %s) ON CONFLICT DO NOTHING",
                     (uuid.uuid4().hex,))
    return version
