"""Data keys (issue 19): one AES-256 key per case file, roster entry and user record, wrapped by
the service's event key (the key-encryption key, KEK), kept in tables of their own beside the
events, cached for reading, and destroyed for good when the file is erased.

Tables (in the events' SQLite file or PostgreSQL schema; `create_statements`):

- `data_keys (stream_id, key_id, scope, created_at)`: which key a stream has. Insert only.
- `data_key_wraps (key_id, kek_id, wrapped, created_at)`: the key wrapped by each KEK it has been
  wrapped under (a rotation of the event key adds a wrap under the new KEK, `rewrap`; `retire`
  drops the wraps of a KEK no longer configured). `destroy` deletes every wrap of a key: the one
  deletion in casetrail, and of key material, never of an event.
- `data_key_destructions (key_id, stream_id, destroyed_at)`: when each key was destroyed. Insert
  only. The erasure's own record is the event `domain.retention.DataKeyDestroyed`.

A wrap is `nonce (12) | AES-256-GCM(KEK, data key)` with the associated data
`"casetrail/data-key/v1" 0x00 key id (16 bytes) 0x00 stream id (str)`: a wrap moved to another key
or stream fails. Byte for byte in `docs/specs/event-cipher.md` (format 2).

Destroying a key zeroes its bytes where casetrail can reach them: SQLite's `secure_delete` for the
deletion and a WAL checkpoint after it; on PostgreSQL a dead row stays on disk until autovacuum
reuses its space. Copies elsewhere (backups, the WAL of PostgreSQL) hold the key only wrapped by
the KEK: rotating the event key and retiring the old one (`casetrail keys rotate --event`) makes
them useless. A process that had the key cached forgets it within `cache_seconds`
(`CASETRAIL_DATA_KEY_CACHE_SECONDS`); the process that destroys it, at once.

A new stream's key is made before its first event is sealed, in one small transaction of its
own (`_create`; two processes making it at once agree on the first). On PostgreSQL that is one
statement for both rows, committed durably. On SQLite it takes the file's writer lock, as the
events' own writes do (`gateway.store.writer_lock`: it queues rather than sleeping in SQLite's
busy handler), and commits with `synchronous=NORMAL`: in WAL mode that skips the fsync, not the
order. The key's frames are in the WAL before those of any event sealed with it, and that
event's commit (`synchronous=FULL`) syncs the WAL up to itself, so an event on disk always has
its key on disk; a power cut may lose only a key that no stored event names yet, a killed
process nothing. (With a synced commit per key, saving a new case file took about twice as long:
bench/README.md, "Data keys".) A file not in WAL mode, and every other write (a destruction above
all), is synced.

Proven by `tests/retention/test_data_keys.py` and `tests/retention/test_shredding.py`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import OperationalError

from gateway.store.writer_lock import lock_for_file

WRAP_LABEL: Final = b"casetrail/data-key/v1"
DATA_KEY_ID_SIZE: Final = 16
NONCE_SIZE: Final = 12
KEY_SIZE: Final = 32
# How many unwrapped keys a process keeps (a read of a file not among them costs one lookup).
CACHE_ENTRIES: Final = 65536

TABLES: Final = ("data_keys", "data_key_wraps", "data_key_destructions")


class DataKeyProblem(Exception):
    """The key table cannot give a key: the message says why and what to do."""


def wrap_aad(key_id: bytes, stream_id: UUID | str) -> bytes:
    return WRAP_LABEL + b"\x00" + key_id + b"\x00" + str(stream_id).encode()


def wrap(kek: bytes, key_id: bytes, stream_id: UUID | str, data_key: bytes, nonce: bytes) -> bytes:
    """A data key wrapped by a KEK (`nonce` fresh and random, but for known-answer vectors)."""
    return nonce + AESGCM(kek).encrypt(nonce, data_key, wrap_aad(key_id, stream_id))


def unwrap(kek: bytes, key_id: bytes, stream_id: UUID | str, wrapped: bytes) -> bytes:
    """The data key; `InvalidTag` when the wrap was altered, moved, or made by another KEK."""
    return AESGCM(kek).decrypt(
        wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], wrap_aad(key_id, stream_id)
    )


def create_statements(postgres: bool, schema: str | None = None) -> list[str]:
    """The tables' DDL; `schema` qualifies their names (PostgreSQL)."""
    blob = "BYTEA" if postgres else "BLOB"
    prefix = '"' + schema.replace('"', '""') + '".' if schema else ""
    return [
        f"CREATE TABLE IF NOT EXISTS {prefix}data_keys (stream_id TEXT PRIMARY KEY, "
        "key_id TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, created_at TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {prefix}data_key_wraps (key_id TEXT NOT NULL, "
        f"kek_id TEXT NOT NULL, wrapped {blob} NOT NULL, created_at TEXT NOT NULL, "
        "PRIMARY KEY (key_id, kek_id))",
        f"CREATE TABLE IF NOT EXISTS {prefix}data_key_destructions (key_id TEXT PRIMARY KEY, "
        "stream_id TEXT NOT NULL, destroyed_at TEXT NOT NULL)",
    ]


class _Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...


@dataclass
class _Cached:
    key_id: bytes
    aead: AESGCM | None  # None: the key was destroyed
    fetched: float


def _connection_lost(exc: BaseException) -> bool:
    """A PostgreSQL session lost (no SQLSTATE, class 08, or 57P01-03: the server shut down)."""
    if not type(exc).__module__.startswith("psycopg"):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or str(state).startswith("08") or state in ("57P01", "57P02", "57P03")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class DataKeyTable:
    """The key tables of one store, behind one connection of their own (thread-safe).

    `keks` maps KEK id (4 bytes, `gateway.store.eventstore.key_id`) to the KEK; `current_kek`
    wraps new keys. `sqlite_path` or `postgres` (the connection's keyword arguments and schema)
    says where the tables are."""

    def __init__(
        self,
        *,
        keks: dict[bytes, bytes],
        current_kek: bytes,
        sqlite_path: str | None = None,
        postgres: dict[str, Any] | None = None,
        cache_seconds: float = 5.0,
        create: bool = True,
        cache_entries: int = CACHE_ENTRIES,
    ) -> None:
        if (sqlite_path is None) == (postgres is None):
            raise ValueError("give the key tables' store: sqlite_path or postgres")
        self._keks = keks
        self._current = current_kek
        self._sqlite_path = sqlite_path
        self._postgres = postgres
        self._cache_seconds = cache_seconds
        self._cache_entries = cache_entries
        self._lock = threading.RLock()
        self._conn: Any = None
        self._writer_lock = lock_for_file(sqlite_path) if sqlite_path is not None else None
        self._wal = False  # the SQLite file was seen in WAL mode (it stays so once set)
        self._by_stream: OrderedDict[UUID, _Cached] = OrderedDict()
        self._by_key: dict[bytes, UUID] = {}
        self._keyless: dict[UUID, float] = {}  # streams seen without a key, and when
        self._preloaded = False
        self._synced = time.monotonic()
        self._destructions = -1  # unknown until the first count
        # Created here unless the service runs without the right to (`CREATE_TABLE=no`: the
        # owner's `casetrail store init` made them, `gateway.store.guard`).
        self._created = not create

    # --- connection --------------------------------------------------------------------------

    @property
    def postgres(self) -> bool:
        return self._postgres is not None

    def _placeholder(self, sql_text: str) -> str:
        return sql_text.replace("?", "%s") if self.postgres else sql_text

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        if self._postgres is not None:
            import psycopg

            kwargs = dict(self._postgres)
            schema = kwargs.pop("schema", None)
            if schema:
                kwargs["options"] = f"-c search_path={schema}"
            self._conn = psycopg.connect(**kwargs, autocommit=True)
        else:
            path = self._sqlite_path or ""
            conn = sqlite3.connect(
                path,
                uri=path.startswith("file:"),
                check_same_thread=False,
                isolation_level=None,
                # As the events' own connections: a writer holding the file longer is an outage
                # (503 store-busy), not a reason to hang the request.
                timeout=5,
            )
            # A destroyed key's bytes are overwritten, not left in a free page.
            conn.execute("PRAGMA secure_delete = ON")
            self._conn = conn
        if not self._created:
            for statement in create_statements(self.postgres):
                self._conn.execute(statement)
            self._created = True
        return self._conn

    @contextmanager
    def _transaction(self, synced: bool = True) -> Iterator[Any]:
        """A write transaction; `synced=False` (SQLite in WAL mode only: see the module) commits
        without the fsync, for a new stream's key."""
        with self._lock, self._store_errors():
            if self.postgres:
                self._rows("SELECT 1", [])  # a session the server ended is replaced first
            conn = self._connect()
            if self.postgres:
                with conn.transaction():
                    yield conn
                return
            lazy = not synced and self._in_wal_mode(conn)
            with self._writer_lock or nullcontext():
                if lazy:
                    conn.execute("PRAGMA synchronous = NORMAL")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield conn
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                finally:
                    if lazy:
                        conn.execute("PRAGMA synchronous = FULL")

    def _in_wal_mode(self, conn: Any) -> bool:
        # The events' datastore switches the file to WAL at its first connection; until then
        # (a key table opened first) the commit is synced.
        if not self._wal:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            self._wal = str(mode).lower() == "wal"
        return self._wal

    def _rows(self, sql_text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock, self._store_errors():
            statement = self._placeholder(sql_text)
            try:
                return list(self._connect().execute(statement, params).fetchall())
            except Exception as exc:
                if not _connection_lost(exc):
                    raise
                # The server ended the session (a restart, a fail-over): once more, anew.
                self._drop()
                return list(self._connect().execute(statement, params).fetchall())

    @contextmanager
    def _store_errors(self) -> Iterator[None]:
        """A failure of the key tables' database is the store's failure, as the events' own
        (`OperationalError`: answered 503, `gateway/http/app.py`); the connection is dropped
        so that the next call opens a new one once the database is back."""
        try:
            yield
        except sqlite3.Error as exc:
            self._drop()
            raise OperationalError(f"the data keys' table failed: {type(exc).__name__}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                self._drop()
                raise OperationalError(
                    f"the data keys' table failed: {type(exc).__name__}"
                ) from exc
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # a broken connection may fail to close
                conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- the cache ---------------------------------------------------------------------------
    #
    # A process keeps every key it has unwrapped (up to CACHE_ENTRIES), loaded all at once at its
    # first miss (one query: a running service then never waits for a key) when the store holds
    # no more keys than that; past it (a store of 1M events holds about 100k), each key is
    # loaded at its own first use, the least recently used going first. A cached key stays
    # valid until it is destroyed: every `cache_seconds` the process counts the destructions
    # (one small query for the whole cache, not one per key) and, when the count moved, forgets
    # the keys destroyed since.

    def _remember(self, stream_id: UUID, cached: _Cached) -> _Cached:
        self._keyless.pop(stream_id, None)
        self._by_stream[stream_id] = cached
        self._by_stream.move_to_end(stream_id)
        self._by_key[cached.key_id] = stream_id
        while len(self._by_stream) > self._cache_entries:
            _, old = self._by_stream.popitem(last=False)
            self._by_key.pop(old.key_id, None)
        return cached

    def _sync(self) -> None:
        """Forget the keys destroyed by other processes (at most every `cache_seconds`)."""
        now = time.monotonic()
        if now - self._synced < self._cache_seconds:
            return
        self._synced = now
        count = int(self._rows("SELECT count(*) FROM data_key_destructions", [])[0][0])
        if count == self._destructions:
            return
        self._destructions = count
        self._keyless.clear()
        for (key_hex,) in self._rows("SELECT key_id FROM data_key_destructions", []):
            stream_id = self._by_key.get(bytes.fromhex(key_hex))
            cached = self._by_stream.get(stream_id) if stream_id is not None else None
            if cached is not None:
                cached.aead = None

    def _preload(self) -> None:
        """Every key of the store into the cache, in one query (at the first miss), when they
        fit in it. Counted first: a larger store's rows were read all, then dropped (bench/
        README.md, "scale"); its keys are loaded one by one at their first use instead."""
        self._preloaded = True
        (total,) = self._rows("SELECT count(*) FROM data_keys", [])[0]
        if int(total) > self._cache_entries:
            return  # too many to hold: each is loaded at its own first use
        rows = self._rows(
            "SELECT k.stream_id, k.key_id, w.kek_id, w.wrapped FROM data_keys k "
            "LEFT JOIN data_key_wraps w ON w.key_id = k.key_id",
            [],
        )
        self._destructions = int(self._rows("SELECT count(*) FROM data_key_destructions", [])[0][0])
        self._synced = time.monotonic()
        grouped: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        for stream_text, key_hex, kek_id, wrapped in rows:
            wraps = grouped.setdefault((stream_text, key_hex), [])
            if kek_id is not None:
                wraps.append((kek_id, bytes(wrapped)))
        for (stream_text, key_hex), wraps in grouped.items():
            stream_id, key_id = UUID(stream_text), bytes.fromhex(key_hex)
            self._remember(stream_id, self._from_wraps(stream_id, key_id, wraps))

    def _miss(self) -> bool:
        """At the first miss, preload; True when the cache now holds every key."""
        if self._preloaded:
            return False
        self._preload()
        return len(self._by_stream) < self._cache_entries

    def _load(self, stream_id: UUID) -> _Cached | None:
        """The stream's key from the tables, in one query (None: it has none)."""
        rows = self._rows(
            "SELECT k.key_id, w.kek_id, w.wrapped FROM data_keys k LEFT JOIN data_key_wraps w "
            "ON w.key_id = k.key_id WHERE k.stream_id = ?",
            [str(stream_id)],
        )
        if not rows:
            return None
        key_id = bytes.fromhex(rows[0][0])
        wraps = [(kek, bytes(w)) for _, kek, w in rows if kek is not None]
        return self._remember(stream_id, self._from_wraps(stream_id, key_id, wraps))

    def _unwrapped(self, stream_id: UUID, key_id: bytes) -> _Cached:
        wraps = self._rows(
            "SELECT kek_id, wrapped FROM data_key_wraps WHERE key_id = ?", [key_id.hex()]
        )
        return self._from_wraps(stream_id, key_id, [(k, bytes(w)) for k, w in wraps])

    def _from_wraps(
        self, stream_id: UUID, key_id: bytes, wraps: list[tuple[str, bytes]]
    ) -> _Cached:
        if not wraps:
            return _Cached(key_id, None, time.monotonic())
        for kek_id, wrapped in wraps:
            kek = self._keks.get(bytes.fromhex(kek_id))
            if kek is None:
                continue
            try:
                aead = AESGCM(unwrap(kek, key_id, stream_id, wrapped))
            except InvalidTag:
                raise DataKeyProblem(
                    f"the wrap of data key {key_id.hex()} under KEK {kek_id} fails "
                    "authentication: the key table was altered; run `casetrail verify` and "
                    "restore it from backup"
                ) from None
            return _Cached(key_id, aead, time.monotonic())
        raise DataKeyProblem(
            f"data key {key_id.hex()} is wrapped only by KEK(s) "
            f"{', '.join(k for k, _ in wraps)}, none of which is configured: add the old event "
            "key back to the key file (after the new one)"
        )

    # --- what the cipher asks ----------------------------------------------------------------

    def for_writing(self, stream_id: UUID, scope: str) -> tuple[bytes, AESGCM] | None:
        """The stream's key id and key, made at its first event; None once destroyed."""
        with self._lock:
            self._sync()
            cached = self._by_stream.get(stream_id)
            # A key made by another process since the preload: on SQLite a read finds it
            # (cheaper than a write's lock); on PostgreSQL the insert itself does (`_create`,
            # one round trip instead of two).
            if cached is None and not self._miss() and not self.postgres:
                cached = self._load(stream_id)
            cached = self._by_stream.get(stream_id) if cached is None else cached
            if cached is None:
                cached = self._create(stream_id, scope)
            return None if cached.aead is None else (cached.key_id, cached.aead)

    def for_reading(self, key_id: bytes) -> tuple[UUID, AESGCM | None] | None:
        """The stream and key of a key id (key None: destroyed); None if the id is unknown."""
        with self._lock:
            self._sync()
            stream_id = self._by_key.get(key_id)
            if stream_id is None:
                self._miss()
                stream_id = self._by_key.get(key_id)
            if stream_id is not None:
                cached = self._by_stream.get(stream_id)
                if cached is not None:
                    self._by_stream.move_to_end(stream_id)
                    return stream_id, cached.aead
            found = self._rows("SELECT stream_id FROM data_keys WHERE key_id = ?", [key_id.hex()])
            if not found:
                return None
            stream_id = UUID(found[0][0])
            cached = self._remember(stream_id, self._unwrapped(stream_id, key_id))
            return stream_id, cached.aead

    def _create(self, stream_id: UUID, scope: str) -> _Cached:
        data_key = AESGCM.generate_key(bit_length=256)
        key_id = os.urandom(DATA_KEY_ID_SIZE)
        kek_id = self._current_kek_id()
        wrapped = wrap(self._current, key_id, stream_id, data_key, os.urandom(NONCE_SIZE))
        now = _now()
        # Two processes may make a stream's first event at once: the first key stays, and the
        # other loads it. The module says why the SQLite commit is not synced.
        key_row = [str(stream_id), key_id.hex(), scope, now]
        if self.postgres:
            made = self._rows(
                "WITH k AS (INSERT INTO data_keys (stream_id, key_id, scope, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (stream_id) DO NOTHING RETURNING key_id) "
                "INSERT INTO data_key_wraps (key_id, kek_id, wrapped, created_at) "
                "SELECT key_id, ?, ?, ? FROM k RETURNING key_id",
                [*key_row, kek_id, wrapped, now],
            )
        else:
            with self._transaction(synced=False) as conn:
                made = conn.execute(
                    "INSERT INTO data_keys (stream_id, key_id, scope, created_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (stream_id) DO NOTHING RETURNING key_id",
                    key_row,
                ).fetchall()
                if made:
                    conn.execute(
                        "INSERT INTO data_key_wraps (key_id, kek_id, wrapped, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        [key_id.hex(), kek_id, wrapped, now],
                    )
        if made:
            return self._remember(stream_id, _Cached(key_id, AESGCM(data_key), time.monotonic()))
        loaded = self._load(stream_id)
        if loaded is None:  # the row that won is gone: the table is being tampered with
            raise DataKeyProblem(f"the data key of stream {stream_id} vanished as it was made")
        return loaded

    def set_keks(self, keks: dict[bytes, bytes], current_kek: bytes) -> None:
        """The KEKs after the key file changed (`BoundAESGCMCipher` follows it): new data keys
        are wrapped by `current_kek`; the keys already unwrapped stay in the cache."""
        with self._lock:
            self._keks = keks
            self._current = current_kek

    def _current_kek_id(self) -> str:
        return next(k for k, v in self._keks.items() if v == self._current).hex()

    # --- the keyring the application sees (`domain.retention.DataKeyring`) --------------------

    def has_key(self, stream_id: UUID) -> bool:
        with self._lock:
            cached = self._load(stream_id)
            return cached is not None and cached.aead is not None

    def ensure_key(self, stream_id: UUID, scope: str) -> str:
        """The stream's data key id, made now if it has none (a stream of a store written
        before data keys: its old events keep the service's key)."""
        with self._lock:
            cached = self._load(stream_id) or self._create(stream_id, scope)
            return cached.key_id.hex()

    def is_destroyed(self, stream_id: UUID) -> bool:
        """Whether the stream's data key was destroyed (cached as reads are)."""
        with self._lock:
            self._sync()
            cached = self._by_stream.get(stream_id)
            if cached is not None:
                return cached.aead is None
            seen = self._keyless.get(stream_id)
            if seen is not None and time.monotonic() - seen < self._cache_seconds:
                return False
            cached = self._load(stream_id)
            if cached is None:
                self._keyless[stream_id] = time.monotonic()
                if len(self._keyless) > self._cache_entries:
                    self._keyless.pop(next(iter(self._keyless)))
                return False
            return cached.aead is None

    def key_id(self, stream_id: UUID) -> str | None:
        found = self._rows("SELECT key_id FROM data_keys WHERE stream_id = ?", [str(stream_id)])
        return str(found[0][0]) if found else None

    def destroy(self, stream_id: UUID) -> str | None:
        with self._lock:
            found = self._rows("SELECT key_id FROM data_keys WHERE stream_id = ?", [str(stream_id)])
            if not found:
                return None
            key_hex: str = found[0][0]
            with self._transaction() as conn:
                conn.execute(
                    self._placeholder(
                        "INSERT INTO data_key_destructions (key_id, stream_id, destroyed_at) "
                        "VALUES (?, ?, ?) ON CONFLICT (key_id) DO NOTHING"
                    ),
                    [key_hex, str(stream_id), _now()],
                )
                conn.execute(
                    self._placeholder("DELETE FROM data_key_wraps WHERE key_id = ?"), [key_hex]
                )
            self._remember(stream_id, _Cached(bytes.fromhex(key_hex), None, time.monotonic()))
            if not self.postgres:
                # The deleted page went to the WAL zeroed; copy it home and empty the WAL
                # (busy readers may delay it: the wrap is useless without the KEK anyway).
                self._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return key_hex

    # --- the event key's rotation ------------------------------------------------------------

    def rewrap(self) -> int:
        """Wrap every live key under the current KEK too; returns how many were added."""
        current = self._current_kek_id()
        with self._lock:
            missing = self._rows(
                "SELECT k.stream_id, k.key_id FROM data_keys k WHERE EXISTS (SELECT 1 FROM "
                "data_key_wraps w WHERE w.key_id = k.key_id) AND NOT EXISTS (SELECT 1 FROM "
                "data_key_wraps w WHERE w.key_id = k.key_id AND w.kek_id = ?)",
                [current],
            )
            added = 0
            for stream_text, key_hex in missing:
                stream_id, key_id = UUID(stream_text), bytes.fromhex(key_hex)
                cached = self._unwrapped(stream_id, key_id)
                if cached.aead is None:
                    continue
                data_key = self._raw_key(stream_id, key_id)
                wrapped = wrap(self._current, key_id, stream_id, data_key, os.urandom(NONCE_SIZE))
                with self._transaction() as conn:
                    conn.execute(
                        self._placeholder(
                            "INSERT INTO data_key_wraps (key_id, kek_id, wrapped, created_at) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT (key_id, kek_id) DO NOTHING"
                        ),
                        [key_hex, current, wrapped, _now()],
                    )
                added += 1
            return added

    def _raw_key(self, stream_id: UUID, key_id: bytes) -> bytes:
        for kek_id, wrapped in self._rows(
            "SELECT kek_id, wrapped FROM data_key_wraps WHERE key_id = ?", [key_id.hex()]
        ):
            kek = self._keks.get(bytes.fromhex(kek_id))
            if kek is not None:
                return unwrap(kek, key_id, stream_id, bytes(wrapped))
        raise DataKeyProblem(f"data key {key_id.hex()} has no wrap under a configured KEK")

    def retire(self, kek_id: bytes) -> int:
        """Drop every wrap under a KEK that is no longer current, once each key has a wrap
        under the current one (`rewrap` first); returns how many were dropped."""
        if kek_id.hex() == self._current_kek_id():
            raise DataKeyProblem("the current event key cannot be retired: rotate first")
        with self._lock:
            orphans = self._rows(
                "SELECT count(*) FROM data_key_wraps w WHERE w.kek_id = ? AND NOT EXISTS ("
                "SELECT 1 FROM data_key_wraps c WHERE c.key_id = w.key_id AND c.kek_id = ?)",
                [kek_id.hex(), self._current_kek_id()],
            )
            if orphans and orphans[0][0]:
                raise DataKeyProblem(
                    f"{orphans[0][0]} data key(s) are wrapped only by that key: run the rewrap "
                    "(`casetrail keys rotate --event` does it) first"
                )
            with self._transaction() as conn:
                cursor = conn.execute(
                    self._placeholder("DELETE FROM data_key_wraps WHERE kek_id = ?"),
                    [kek_id.hex()],
                )
                return int(cursor.rowcount or 0)

    def counts(self) -> dict[str, int]:
        """Keys per state, for `casetrail keys status` and `retention status`."""
        total = self._rows("SELECT count(*) FROM data_keys", [])[0][0]
        destroyed = self._rows("SELECT count(*) FROM data_key_destructions", [])[0][0]
        return {
            "keys": int(total),
            "destroyed": int(destroyed),
            "live": int(total) - int(destroyed),
        }
