"""One writer at a time on an SQLite event store, across threads and processes.

SQLite lets one transaction write at a time. A writer that finds the file locked does not
queue: its busy handler sleeps (1, 2, 5, 10 ... 100 ms) and tries again, so with several API
workers, and dozens of threads in each, a busy store answered some commands after a second
(bench/README.md, "commands"). Taking this lock first turns that into a queue: a thread waits
for the lock of its process, then for an exclusive `flock` on `<store>.writer-lock`, which the
kernel hands over as soon as the holder lets go, and only then begins its transaction.

Who takes it: the recorders of `gateway.store.persistence`, built by the store's factory, so
every insert of events and snapshots, and every batch of the Merkle log, on that file; and the
data keys' table (`gateway.store.datakeys`) for each of its writes (a new stream's key, above
all). It is always the last lock taken: no holder waits for another lock of casetrail's. PostgreSQL
queues writers itself; nothing here applies to it. Proven by
`tests/integration/test_command_commits.py` (`test_the_writer_lock_queues_threads_and_processes`).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

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
    return lock_for_file(datastore.pool.db_name)


def lock_for_file(db_name: str) -> WriterLock | None:
    """The writer lock of an SQLite file named as the library names it (a path or a `file:`
    URI); None for in-memory SQLite. The data keys' table (`gateway.store.datakeys`) writes to
    the events' file through a connection of its own and takes the same lock."""
    if not db_name or ":memory:" in db_name or "mode=memory" in db_name:
        return None
    name = db_name.removeprefix("file:").split("?", 1)[0]
    path = Path(name + ".writer-lock").resolve()
    with _LOCKS_GUARD:
        found = _LOCKS.get(path)
        if found is None:
            found = _LOCKS[path] = WriterLock(path)
        return found
