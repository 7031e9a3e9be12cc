"""When the database is away, full, read-only or locked: a prompt answer that names the cause.

Guarantees (issue 22, proven by tests/reliability/test_outages_store.py and
tests/reliability/test_disk_full.py, on a real PostgreSQL behind a TCP proxy that is cut, a
PostgreSQL role made read-only, an SQLite file held by another writer, and a tmpfs filled up):

- **The cause, named** (`fault_of`): a database failure that reaches the HTTP layer, whether the
  library wrapped it (`PersistenceError`) or not (`sqlite3.OperationalError`,
  `psycopg.OperationalError` from a read model's query), is a 503 problem+json whose code says
  what happened: `store-full` (no space left),
  `store-read-only`, `store-busy` (locked by another writer, or a lock wait ran out),
  `store-timeout` (a shared commit did not report in time: it may still store the change), or
  `store-unavailable` (unreachable, or anything else). The database's own message is logged by
  its type only, never sent: it may quote a value. Nothing is disclosed or changed: the access
  event is stored before any answer (`domain.application.CaseTrail.read_case`), so a read whose
  event could not be stored is refused.
- **No hang while PostgreSQL is unreachable** (`OutageGate`): the library retries every store
  call ten times, each waiting up to its pool's timeout (5 s) for a connection, so each request
  hung for about 50 s and the server's threads filled up behind them. Now the first failure to
  reach the server closes the gate of its datastore; while closed, every call asks the server
  directly (one short connection, at most once a second) and fails at once when it is still
  away, so a request is answered 503 within a few seconds, and probes too.
- **Recovery without a restart**: the first probe that reaches the server opens the gate and has
  the pool check its connections (broken ones replaced); the pool gives up a connection attempt
  after `RECONNECT_GIVE_UP_SECONDS` instead of backing off for five minutes, so new connections
  are made as soon as they are asked for. The API, the followers, the relay and the evidence
  log all go through the same factory (`gateway.store.persistence.PostgresStore`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import psycopg
import psycopg_pool
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow

from domain.group_commit import CommitTimedOut

PROBE_INTERVAL_SECONDS: Final = 1.0
PROBE_CONNECT_TIMEOUT_SECONDS: Final = 2
RECONNECT_GIVE_UP_SECONDS: Final = 4.0


@dataclass(frozen=True)
class Fault:
    code: str
    title: str
    detail: str


class StoreFault(Enum):
    FULL = Fault(
        "store-full",
        "The event store's disk is full",
        "the database could not write: no space is left on its disk, so nothing was disclosed "
        "or changed. Free space on the store's disk (operators: see docs/reliability.md); the "
        "service resumes by itself",
    )
    READ_ONLY = Fault(
        "store-read-only",
        "The event store is read-only",
        "the database takes no writes now (a read-only disk, standby or role), so nothing was "
        "disclosed or changed: every read is recorded first. Retry later",
    )
    BUSY = Fault(
        "store-busy",
        "The event store is locked",
        "another writer held the database for too long, so nothing was disclosed or changed; "
        "retry later",
    )
    # A shared commit that did not report in time (`domain.group_commit.CommitTimedOut`): it
    # must not say "nothing changed", since the commit goes on and may still store a command's
    # change, and a client that repeats the command blindly could make it twice.
    TIMEOUT = Fault(
        "store-timeout",
        "The event store did not confirm the record in time",
        "the store did not confirm this request's record within its time limit, so nothing was "
        "disclosed; a change the request made may still have been stored: read the case file "
        "before repeating a command, and retry later",
    )
    UNAVAILABLE = Fault(
        "store-unavailable",
        "The event store could not record this request",
        "the store did not durably record the request, so nothing was disclosed or changed; "
        "retry later",
    )


# SQLite's primary result codes (https://sqlite.org/rescode.html).
_SQLITE: Final = {
    13: StoreFault.FULL,
    8: StoreFault.READ_ONLY,
    5: StoreFault.BUSY,
    6: StoreFault.BUSY,
}
_SQLITE_TEXT: Final = (
    ("database or disk is full", StoreFault.FULL),
    ("readonly database", StoreFault.READ_ONLY),
    ("database is locked", StoreFault.BUSY),
)
# PostgreSQL's SQLSTATEs.
_POSTGRES: Final = {
    "53100": StoreFault.FULL,  # disk_full
    "25006": StoreFault.READ_ONLY,  # read_only_sql_transaction
    "55P03": StoreFault.BUSY,  # lock_not_available (lock_timeout)
    "40P01": StoreFault.BUSY,  # deadlock_detected
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        yield found
        found = found.__cause__ or found.__context__


def fault_of(exc: BaseException) -> StoreFault:
    """What a database error means for the client (the chain of causes is read)."""
    for error in _chain(exc):
        if isinstance(error, CommitTimedOut):
            return StoreFault.TIMEOUT
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            if isinstance(code, int) and (code & 0xFF) in _SQLITE:
                return _SQLITE[code & 0xFF]
        if isinstance(error, psycopg.Error) and error.sqlstate in _POSTGRES:
            return _POSTGRES[error.sqlstate]
        text = str(error)
        for needle, fault in _SQLITE_TEXT:
            if needle in text:
                return fault
    return StoreFault.UNAVAILABLE


def unreachable(exc: BaseException) -> bool:
    """Whether an error says the PostgreSQL server cannot be reached (rather than refusing a
    statement): no connection from the pool in time, a connection lost or refused."""
    for error in _chain(exc):
        if isinstance(error, psycopg_pool.PoolTimeout | StoreUnreachable):
            return True
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            state = error.sqlstate
            # No SQLSTATE: the client lost or could not make the connection; class 08:
            # connection exceptions; 57P01-03: the server shuts down or is starting.
            return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")
    return False


class StoreUnreachable(OperationalError):
    """The gate is closed: the server did not answer its latest probe."""


class OutageGate:
    """Closed after a failure to reach the server; while closed, a call probes the server (at
    most once per `PROBE_INTERVAL_SECONDS`, one thread at a time) and fails at once unless the
    probe reaches it. Opening it runs `on_open` (the pool checks its connections)."""

    def __init__(self, probe: Callable[[], None], on_open: Callable[[], None]) -> None:
        self._probe = probe
        self._on_open = on_open
        self._lock = threading.Lock()
        self._closed_at: float | None = None
        self._probed_at = 0.0
        self.closings = 0

    @property
    def closed(self) -> bool:
        return self._closed_at is not None

    def close(self) -> None:
        with self._lock:
            if self._closed_at is None:
                self._closed_at = time.monotonic()
                self._probed_at = 0.0
                self.closings += 1

    def admit(self) -> None:
        """Return when the store may be asked; `StoreUnreachable` when it is still away."""
        if self._closed_at is None:
            return
        if not self._lock.acquire(blocking=False):
            raise StoreUnreachable("the database cannot be reached (a probe is under way)")
        try:
            if self._closed_at is None:
                return
            now = time.monotonic()
            if now - self._probed_at < PROBE_INTERVAL_SECONDS:
                raise StoreUnreachable("the database cannot be reached (probed a moment ago)")
            self._probed_at = now
            try:
                self._probe()
            except (psycopg.Error, OSError) as exc:
                raise StoreUnreachable(
                    f"the database cannot be reached: {type(exc).__name__}"
                ) from None
            self._closed_at = None
            self._on_open()
        finally:
            self._lock.release()


class GatedPostgresDatastore(PostgresDatastore):
    """The library's datastore, its connections taken through an `OutageGate`."""

    gate: OutageGate

    def install_gate(self) -> None:
        given = self.pool.kwargs
        kwargs: dict[str, Any] = dict(given() if callable(given) else given or {})
        kwargs.pop("row_factory", None)
        kwargs["connect_timeout"] = PROBE_CONNECT_TIMEOUT_SECONDS

        def probe() -> None:
            with psycopg.connect(**kwargs, autocommit=True) as connection:
                connection.execute("SELECT 1")

        def reopen() -> None:
            # Broken connections out, new ones in: at once, not after the pool's backoff.
            if not self.pool.closed:
                self.pool.check()

        self.gate = OutageGate(probe, reopen)
        self.pool.reconnect_timeout = RECONNECT_GIVE_UP_SECONDS

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        self.gate.admit()
        try:
            with super().get_connection() as connection:
                yield connection
        except (OperationalError, InterfaceError) as exc:
            if unreachable(exc):
                self.gate.close()
            raise


def gate_datastore(datastore: PostgresDatastore) -> GatedPostgresDatastore:
    """Give a datastore the library built its gate. The library makes it inside its factory,
    with no hook for the class; the subclass adds behaviour and one attribute set here, so the
    instance is re-classed rather than built a second time."""
    datastore.__class__ = GatedPostgresDatastore
    if not isinstance(datastore, GatedPostgresDatastore):  # pragma: no cover (mypy's narrowing)
        raise TypeError("the datastore could not be gated")
    datastore.install_gate()
    return datastore
