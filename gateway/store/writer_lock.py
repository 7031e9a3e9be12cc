"""One writer at a time on an SQLite event store, across threads and processes.

SQLite lets one transaction write at a time. A writer that finds the file locked does not
queue: its busy handler sleeps (1, 2, 5, 10 ... 100 ms) and tries again, so with several API
workers, and dozens of threads in each, a busy store answered some commands after a second
(bench/README.md, "commands"). Taking this lock first turns that into a queue: a thread waits
for the lock of its process, then for an exclusive `flock` on `<store>.writer-lock`, which the
kernel hands over as soon as the holder lets go, and only then begins its transaction.

PostgreSQL queues writers itself; nothing here applies to it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from eventsourcing.sqlite import SQLiteDatastore


class WriterLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.Lock()  # flock does not exclude threads sharing the file
        self._fd = -1

    def __enter__(self) -> WriterLock:
        self._threads.acquire()
        try:
            # Opened per use (a few µs), so that no descriptor outlives the application.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._threads.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            os.close(self._fd)  # closing releases the flock
        finally:
            self._fd = -1
            self._threads.release()


_LOCKS: dict[Path, WriterLock] = {}
_LOCKS_GUARD = threading.Lock()


def lock_for(recorder: object) -> WriterLock | None:
    """The writer lock of the SQLite file a recorder writes to (one per file and process, so
    that the application's inserts and a follower's batches on that file take turns too);
    None for PostgreSQL and for in-memory SQLite, which one process owns."""
    datastore = getattr(recorder, "datastore", None)
    if not isinstance(datastore, SQLiteDatastore) or datastore.pool.is_sqlite_memory_mode:
        return None
    name = datastore.pool.db_name.removeprefix("file:").split("?", 1)[0]
    path = Path(name + ".writer-lock").resolve()
    with _LOCKS_GUARD:
        found = _LOCKS.get(path)
        if found is None:
            found = _LOCKS[path] = WriterLock(path)
        return found


def _around(target: object, method: str) -> None:
    """Make `target.<method>` take the writer lock of the file `target` writes to, if any.
    The target is the library's recorder (or a follower's); nothing else of it changes."""
    lock = lock_for(target)
    if lock is None:
        return
    inner: Callable[..., Any] = getattr(target, method)

    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return inner(*args, **kwargs)

    setattr(target, method, locked)


def serialise_inserts(recorder: object) -> None:
    """Every `insert_events` of `recorder` (events, access events, snapshots) takes the
    writer lock of its file first."""
    _around(recorder, "insert_events")


def serialise_batches(view_recorder: object) -> None:
    """A follower's `process(batch)` on the events' own file (the evidence log) takes the
    writer lock first: a batch that waited in SQLite's busy handler made the API's writers
    sleep in theirs."""
    _around(view_recorder, "process")
