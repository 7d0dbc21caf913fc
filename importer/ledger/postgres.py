"""The PostgreSQL ledger: one ledger for many runs, on many machines, by many people, at once.

"Sent once" is a property of the database: a row is claimed by one atomic statement on its primary key
(INSERT ... ON CONFLICT DO UPDATE ... WHERE), so of two runs racing for a row exactly one gets it. Runs
register and heartbeat; a run silent for longer than its lease is dead, and its `sending` rows become
`unknown`, exactly as after a crash. Times are the database's clock, so machines' clocks need not agree.

Each statement is its own short transaction on a small pool of connections (pg_conn.py): claims commit
durably, marks after a request do not wait for the disk. When a connection breaks (the server restarted,
the network cut) the statement is tried again on a new one: every statement here is idempotent for the same
run, a claim included, so a retry after a lost answer is safe. A claim that cannot be recorded within a short
window raises LedgerUnavailable and the row is not sent.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from ..errors import UsageError
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
    LedgerUnavailable,
    RunRecord,
    Upload,
)
from .pg_conn import Connections, describe
from .pg_rate import SharedRateLimiter
from .pg_schema import CURRENT, NewerSchema, migrate
from .url import display_url

log = logging.getLogger("importer.ledger")

_KEY = "api=%s AND campaign_id=%s AND agent_email=%s AND ts=%s AND file_name=%s AND file_size=%s"
_ISO = "to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')"


class PostgresLedger:
    def __init__(self, url: str, api: str, *, lease_seconds: float = 60.0, register: bool = False,
                 manifest: str = "", connect_timeout: int = 10) -> None:
        self.url = url
        self.api = api
        self.where = display_url(url)
        self.identity = Identity.here()
        self.lease_seconds = lease_seconds
        # A statement waits a little for the database (a restart takes seconds), then the run stops. An
        # outcome that could not be written is kept and written as soon as the database answers again (at
        # the latest when the run ends, waiting up to a lease), since losing it would make the row `unknown`.
        self.claim_window = min(10.0, max(2.0, lease_seconds / 4))
        self._unwritten: dict[CallKey, tuple[str, str | None, int | None, str | None, str | None]] = {}
        self._conns = Connections(url, self.where, connect_timeout=connect_timeout)
        self._done = 0
        self._lost_claims: set[CallKey] = set()  # claims whose answer never came: perhaps recorded, never sent
        self._heartbeat: Heartbeat | None = None
        try:
            self._conns.first(migrate)
        except NewerSchema as exc:
            self._conns.close()
            raise UsageError(f"the ledger at {self.where} was written by a newer allobrain-import (schema "
                             f"{exc.version}, this one knows {CURRENT}); upgrade allobrain-import") from None
        except psycopg.Error as exc:
            self._conns.close()
            raise UsageError(f"cannot use the ledger at {self.where}: {describe(exc)}") from None
        if register:
            self._register(manifest)

    # --- statements -------------------------------------------------------------------------------

    def _one(self, sql: str, params: tuple[Any, ...], *, what: str, window: float | None = None,
             durable: bool = False) -> Any:
        return self._conns.do(what, lambda c: c.execute(sql, params).fetchone(), window=window or self.claim_window,
                              durable=durable)

    def _all(self, sql: str, params: tuple[Any, ...], *, what: str) -> list[Any]:
        return self._conns.do(what, lambda c: c.execute(sql, params).fetchall(), window=self.claim_window)

    def _exec(self, sql: str, params: tuple[Any, ...], *, what: str, window: float | None = None,
              durable: bool = False) -> int:
        return self._conns.do(what, lambda c: c.execute(sql, params).rowcount, window=window or self.claim_window,
                              durable=durable)

    # --- runs -------------------------------------------------------------------------------------

    def _register(self, manifest: str) -> None:
        me = self.identity
        self._exec("INSERT INTO allobrain_runs (run_id, api, host, pid, os_user, manifest, lease_seconds)"
                   " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                   (me.run_id, self.api, me.host, me.pid, me.user, manifest, self.lease_seconds),
                   what="registering the run", window=self.claim_window, durable=True)
        self._heartbeat = Heartbeat(self._beat, max(1.0, self.lease_seconds / 3))

    def _beat(self) -> None:
        """Say this run is alive (reviving it if another run gave it up for dead), and reap the dead."""
        try:
            self._exec("UPDATE allobrain_runs SET heartbeat_at=now(), rows_done=%s, ended_at=NULL WHERE run_id=%s",
                       (self._done, self.identity.run_id), what="heartbeat", window=1.0)
            self._write_unwritten(window=1.0)
            self._reap(window=1.0)
        except LedgerUnavailable as exc:
            log.warning("%s", exc)

    def _reap(self, window: float | None = None) -> int:
        """Runs whose lease expired are dead: their `sending` rows become `unknown` (the crash rule). Rows
        left `sending` by a run that ended (its last marks could not be written) too."""
        self._exec("UPDATE allobrain_runs SET ended_at=heartbeat_at WHERE ended_at IS NULL"
                   " AND heartbeat_at < now() - make_interval(secs => lease_seconds)", (), what="reaping runs",
                   window=window)
        return self._exec(
            "UPDATE allobrain_calls c SET status=%s, updated_at=now(), error='run ' || r.run_id || ' on host '"
            " || r.host || ' stopped while this call was being sent' FROM allobrain_runs r"
            " WHERE c.status=%s AND c.run_id=r.run_id AND r.ended_at IS NOT NULL",
            (UNKNOWN, SENDING), what="reaping rows", window=window)

    def runs(self, *, live_only: bool = True) -> list[RunRecord]:
        rows = self._all(
            f"SELECT run_id, api, host, pid, os_user, {_ISO % 'started_at'}, {_ISO % 'heartbeat_at'}, rows_done,"
            " manifest, (ended_at IS NULL AND heartbeat_at >= now() - make_interval(secs => lease_seconds))"
            " FROM allobrain_runs WHERE (%s OR ended_at IS NULL) ORDER BY started_at",
            (not live_only,), what="listing runs")
        return [RunRecord(*r[:9], live=bool(r[9])) for r in rows if r[9] or not live_only]

    def shared_limiter(self, rate: float) -> SharedRateLimiter | None:
        """`upload.max_per_second` for every run of this ledger and API together."""
        if rate <= 0:
            return None
        return SharedRateLimiter(rate, lambda span: self._one(
            "INSERT INTO allobrain_rate AS r (api, next_at) VALUES (%s, clock_timestamp() + make_interval(secs => %s))"
            " ON CONFLICT (api) DO UPDATE SET next_at = GREATEST(r.next_at, clock_timestamp())"
            " + make_interval(secs => %s) RETURNING extract(epoch FROM r.next_at - clock_timestamp())::float8",
            (self.api, span, span), what="leasing send slots", window=self.claim_window)[0] - span)

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
            try:
                self._write_unwritten(window=self.lease_seconds)
                self._release_lost_claims()
                self._exec("UPDATE allobrain_runs SET heartbeat_at=now(), rows_done=%s, ended_at=now()"
                           " WHERE run_id=%s", (self._done, self.identity.run_id), what="ending the run",
                           window=self.claim_window)
            except LedgerUnavailable as exc:  # the lease expires on its own: the crash rule covers it
                log.warning("%s", exc)
        self._conns.close()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls ------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Only dead runs' rows: live runs on other machines are sending theirs right now."""
        try:
            return self._reap()
        except LedgerUnavailable as exc:
            raise UsageError(str(exc)) from None

    def get(self, key: CallKey) -> Entry | None:
        row = self._one(f"SELECT status, call_id, http_status, error FROM allobrain_calls WHERE {_KEY}",
                        (self.api, *_key_tuple(key)), what="looking a row up", window=self.claim_window)
        return Entry(*row) if row else None

    def get_many(self, keys: list[CallKey]) -> dict[CallKey, Entry]:
        """One round trip for a whole chunk of keys (a rerun's plan), on the primary key's index."""
        if not keys:
            return {}
        columns = list(zip(*(_key_tuple(k) for k in keys), strict=True))
        rows = self._all(
            "SELECT k.i, c.status, c.call_id, c.http_status, c.error FROM unnest(%s::text[], %s::text[],"
            " %s::bigint[], %s::text[], %s::bigint[]) WITH ORDINALITY AS k(campaign_id, agent_email, ts, file_name,"
            " file_size, i) JOIN allobrain_calls c ON c.api=%s AND c.campaign_id=k.campaign_id AND"
            " c.agent_email=k.agent_email AND c.ts=k.ts AND c.file_name=k.file_name AND c.file_size=k.file_size",
            (*(list(col) for col in columns), self.api), what="looking rows up")
        return {keys[i - 1]: Entry(*rest) for i, *rest in rows}

    def holder(self, key: CallKey) -> Holder | None:
        row = self._one(
            f"SELECT c.status, c.call_id, c.http_status, c.error, c.run_id, r.host, {_ISO % 'c.updated_at'}"
            f" FROM allobrain_calls c LEFT JOIN allobrain_runs r ON r.run_id = c.run_id WHERE c.{_KEY}",
            (self.api, *_key_tuple(key)), what="looking a row up", window=self.claim_window)
        return Holder(Entry(*row[:4]), row[4], row[5], row[6]) if row else None

    def claim(self, key: CallKey, *, retry_unknown: bool = False) -> Holder | None:
        try:
            taken = self._one(_CLAIM, (self.api, *_key_tuple(key), self.identity.run_id, retry_unknown),
                              what="claiming a row", window=self.claim_window, durable=True)
        except LedgerUnavailable:
            self._lost_claims.add(key)
            raise
        return None if taken else self.holder(key)

    def _release_lost_claims(self) -> None:
        """A claim the database may have recorded though its answer was lost: this run never sent the row, so
        it is given back (`failed`, safe to send) rather than left to become `unknown` with the lease."""
        for key in list(self._lost_claims):
            self._exec(f"UPDATE allobrain_calls SET status=%s, error=%s, updated_at=now() WHERE {_KEY}"
                       " AND status='sending' AND run_id=%s",
                       (FAILED, "claimed, but the claim could not be confirmed: not sent", self.api,
                        *_key_tuple(key), self.identity.run_id), what="releasing a claim", window=self.claim_window,
                       durable=True)
            self._lost_claims.discard(key)

    def mark_sending(self, key: CallKey) -> None:
        self._put(key, SENDING, None, None, None, None, durable=True)

    def mark(self, key: CallKey, status: str, *, call_id: str | None = None, http_status: int | None = None,
             error: str | None = None, fingerprint: str | None = None) -> None:
        self._done += 1
        try:
            self._put(key, status, call_id, http_status, error, fingerprint)
        except LedgerUnavailable:
            self._unwritten[key] = (status, call_id, http_status, error, fingerprint)
            raise

    def _write_unwritten(self, window: float) -> None:
        for key, (status, *details) in list(self._unwritten.items()):
            self._exec(*_put_statement(self.api, key, status, *details, self.identity.run_id),
                       what=f"recording a row as {status}", window=window)
            del self._unwritten[key]

    def _put(self, key: CallKey, status: str, call_id: str | None, http_status: int | None,
             error: str | None, fingerprint: str | None, *, durable: bool = False) -> None:
        self._exec(*_put_statement(self.api, key, status, call_id, http_status, error, fingerprint,
                                   self.identity.run_id), what=f"recording a row as {status}", durable=durable)

    # --- the same recording under another key -----------------------------------------------------

    @property
    def ledger_id(self) -> str | None:
        row = self._one("SELECT value FROM allobrain_meta WHERE key='ledger_id'", (), what="reading the ledger id",
                        window=self.claim_window)
        return row[0] if row else None

    def uploaded_sizes(self) -> set[tuple[str, int]]:
        rows = self._all("SELECT DISTINCT campaign_id, file_size FROM allobrain_calls WHERE api=%s AND status=%s",
                         (self.api, UPLOADED), what="reading upload sizes")
        return {(c, int(s)) for c, s in rows}

    def uploads_of_size(self, campaign_id: str, file_size: int) -> list[Upload]:
        rows = self._all(
            f"SELECT agent_email, ts, file_name, call_id, fingerprint, {_ISO % 'updated_at'} FROM allobrain_calls"
            " WHERE api=%s AND campaign_id=%s AND file_size=%s AND status=%s ORDER BY updated_at",
            (self.api, campaign_id, file_size, UPLOADED), what="reading uploads of a size")
        return [Upload(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        return dict(self._all("SELECT status, count(*) FROM allobrain_calls WHERE api=%s GROUP BY status",
                              (self.api,), what="counting rows"))

    def count_uploaded_since(self, epoch_seconds: float) -> int:
        """Calls of this API uploaded at or after that time by any run on this ledger (the daily quota)."""
        # 'uploaded' written out, so that the planner can use the partial index allobrain_calls_uploaded
        (n,) = self._one("SELECT count(*) FROM allobrain_calls WHERE api=%s AND status='uploaded'"
                         " AND updated_at >= to_timestamp(%s)", (self.api, epoch_seconds),
                         what="counting uploads", window=self.claim_window)
        return int(n)

    def uploads_elsewhere_since(self, epoch_seconds: float) -> int:
        """What the rest of the fleet did to the daily quota since this run last counted: calls of this API
        other runs recorded as uploaded at or after that time, plus the rows live runs are sending now (they
        will most likely count). Cheap: a range of the uploads index a few seconds long, and the few rows in
        flight."""
        me = self.identity.run_id
        (n,) = self._one(
            "SELECT (SELECT count(*) FROM allobrain_calls WHERE api=%s AND status='uploaded'"
            " AND updated_at >= to_timestamp(%s) AND run_id IS DISTINCT FROM %s)"
            " + (SELECT count(*) FROM allobrain_calls c JOIN allobrain_runs r ON r.run_id=c.run_id"
            " WHERE c.status='sending' AND c.api=%s AND c.run_id<>%s AND r.ended_at IS NULL"
            " AND r.heartbeat_at >= now() - make_interval(secs => r.lease_seconds))",
            (self.api, epoch_seconds, me, self.api, me), what="counting the fleet's uploads", window=self.claim_window)
        return int(n)

    # --- agents -----------------------------------------------------------------------------------

    def invited(self) -> set[str]:
        return {r[0] for r in self._all("SELECT email FROM allobrain_agents WHERE api=%s", (self.api,),
                                        what="reading agents")}

    def mark_invited(self, email: str) -> None:
        self._exec("INSERT INTO allobrain_agents (api, email) VALUES (%s,%s) ON CONFLICT (api, email)"
                   " DO UPDATE SET updated_at=now()", (self.api, email), what="recording an agent")


# The check and the take in one statement on the primary key: of two runs racing for a row, one inserts or
# updates it and the other's WHERE fails. A row already `sending` for this same run is taken again, so a
# claim retried after a lost answer is not refused by its own first attempt.
_CLAIM = (
    "INSERT INTO allobrain_calls AS c (api, campaign_id, agent_email, ts, file_name, file_size, status, run_id)"
    " VALUES (%s,%s,%s,%s,%s,%s,'sending',%s)"
    " ON CONFLICT (api, campaign_id, agent_email, ts, file_name, file_size) DO UPDATE SET status='sending',"
    " call_id=NULL, http_status=NULL, error=NULL, run_id=excluded.run_id, updated_at=now()"
    f" WHERE c.status='{FAILED}' OR (c.status='{UNKNOWN}' AND %s AND c.run_id IS DISTINCT FROM excluded.run_id)"
    " OR (c.status='sending' AND c.run_id = excluded.run_id)"
    " RETURNING 1"
)


def _put_statement(api: str, key: CallKey, status: str, call_id: str | None, http_status: int | None,
                   error: str | None, fingerprint: str | None, run_id: str) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO allobrain_calls (api, campaign_id, agent_email, ts, file_name, file_size, status, call_id,"
        " http_status, error, run_id, fingerprint) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (api, campaign_id, agent_email, ts, file_name, file_size) DO UPDATE SET"
        " status=excluded.status, call_id=excluded.call_id, http_status=excluded.http_status,"
        " error=excluded.error, run_id=excluded.run_id, updated_at=now(),"
        " fingerprint=coalesce(excluded.fingerprint, allobrain_calls.fingerprint)",
        (api, *_key_tuple(key), status, call_id, http_status, error, run_id, fingerprint),
    )


def _key_tuple(key: CallKey) -> tuple[str, str, int, str, int]:
    return (key.campaign_id, key.agent_email, key.timestamp, key.file_name, key.file_size)
