"""The PostgreSQL ledger's connections: two small pools, reconnecting when the server goes away.

- durable: claims and registrations. Each commit waits for the server's disk (synchronous_commit on), since a
  claim lost in a server crash could let another run send the same call. Several connections, so that the
  commits of concurrent workers are flushed together (PostgreSQL's group commit) instead of one after another.
- quick: marks after a request, heartbeats and reads, with synchronous_commit off: a mark lost in a server
  crash leaves the row `sending`, which the crash rule turns `unknown`: nothing is sent twice.

A statement that meets a broken connection is tried again on a new one until its window has passed, then
LedgerUnavailable. Every statement the ledger sends is idempotent for its run, so a retry is safe.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg

from ..safety import clean_text
from .base import LedgerUnavailable

log = logging.getLogger("importer.ledger")
T = TypeVar("T")
_BROKEN = (psycopg.OperationalError, psycopg.InterfaceError)


class _Pool:
    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int) -> None:
        self._connect = connect
        self._idle: list[psycopg.Connection[Any]] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self.closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            conn = conn or self._connect()
            try:
                yield conn
            except _BROKEN:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
                raise
            except BaseException:
                with self._lock:  # a statement error: the connection itself is fine
                    self._idle.append(conn)
                raise
            with self._lock:
                if self.closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg.Error):
                conn.close()


class Connections:
    def __init__(self, url: str, where: str, *, connect_timeout: int = 10, durable: int = 4, quick: int = 2) -> None:
        self.where = where

        def connect(**extra: str) -> Callable[[], psycopg.Connection[Any]]:
            # Password, TLS and the rest come from libpq's environment and files (PGPASSWORD, ~/.pgpass,
            # PGSSLMODE...); the URL never holds a password (url.py refuses it).
            return lambda: psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout,
                                           application_name="allobrain-import", **extra)

        self._durable = _Pool(connect(), durable)
        self._quick = _Pool(connect(options="-c synchronous_commit=off"), quick)

    def first(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Once, at opening, with no retry: a database that cannot be reached now is the user's to fix."""
        with self._durable.connection() as conn:
            return fn(conn)

    def do(self, what: str, fn: Callable[[psycopg.Connection[Any]], T], *, window: float,
           durable: bool = False) -> T:
        pool = self._durable if durable else self._quick
        deadline = time.monotonic() + window
        delay = 0.1
        while True:
            if pool.closed:
                raise LedgerUnavailable(f"the ledger at {self.where} is closed")
            try:
                with pool.connection() as conn:
                    return fn(conn)
            except _BROKEN as exc:
                problem = describe(exc)
            if time.monotonic() + delay > deadline:
                raise LedgerUnavailable(f"the ledger at {self.where} did not answer ({what}): {problem}")
            log.warning("ledger at %s: %s; reconnecting", self.where, problem)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def close(self) -> None:
        self._durable.close()
        self._quick.close()


def describe(exc: BaseException) -> str:
    """libpq's message, one line, no control characters (it never contains the password)."""
    text = " ".join(str(exc).split())
    return clean_text(text, 300) or type(exc).__name__
