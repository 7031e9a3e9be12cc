"""Group commit: many requests' events made durable by one transaction.

Every read must store its access event durably before it returns data, so each read is a durable
write. Committing them one by one caps reads at the store's commit rate; instead a committer
thread takes whatever access events are waiting, saves them in one transaction, and wakes each
waiting reader with the outcome: success, or the store's exception (then that reader discloses
nothing). A list's or an export's access events (`CaseTrail.record_disclosures`: one per file it
shows) are one unit of the same committer: stored together, in one transaction, or not at all.

Commands use a committer of their own: each command's new events are one unit. A transaction
of several commands fails as a whole if one of them lost the race for its case file's next
version (an `IntegrityError`), or if one of them changes a file erased meanwhile (`DataErased`,
raised while the events are encoded, before anything is written); the committer then saves
each unit in a transaction of its own, so that each command gets its own outcome (the loser
retries on the file as it now stands, `CaseTrail.change_case`; a command on the erased file is
answered as erased, the others are stored).

Batches are bounded twice:
- in size: at most `max_batch` events per transaction;
- in time: a batch waits at most `max_wait` seconds for company, and only for company that is
  coming: while some thread has announced events it is about to record (`expecting()`: a
  reader deciding a read, a command applying its change), or until it holds as many events as
  the previous batch (readers are arriving at that rate; the requests still in the HTTP layer
  have announced nothing yet). A lone reader, with nobody announced after a batch of one, is
  never delayed; under load, the readers of a process join one commit instead of paying one
  each (bench/README.md, "reads": each commit costs an fsync and, on SQLite, the page cache of
  every other connection to the file). A batch that waited in vain sets the next one's
  expectation lower: the wait adapts to the load.

Events that arrive while a commit is in flight form the next batch, which a second committer
thread may commit at once (`committers`, default 2): in a busy process a commit's thread waits
for the interpreter lock at every step of its round trips, and one committer then becomes the
queue every reader waits in (bench/README.md, "reads"). The readers of one batch wait on one
`threading.Event`, so that a commit wakes them with one notification, not one per reader.

`record_all` blocks its thread until the commit; `submit` hands the events over and returns a
`Committing` handle at once, which can be waited on (`wait`) or asked to call back when the
batch is done (`when_done`): the HTTP API's case read awaits it in its event loop
(`gateway.http.durability`), so that a reader holds no worker thread while the commit is made.

Proven by tests/integration/test_group_commit.py, tests/integration/test_command_commits.py and
tests/integration/test_durable_reads.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from eventsourcing.persistence import PersistenceError

DEFAULT_MAX_BATCH: Final = 256
# How long a batch may wait for the events announced to it (`GroupCommit.expecting`). Under
# load, 30 ms let the readers of a worker share one commit of 8-12 events (10 ms: 5-6), which
# saves a sixth of the audit's CPU on both stores, measured side by side (bench/README.md,
# "Targets, 2026-12-06, sixteenth round"); without load nobody is announced and nothing waits.
DEFAULT_MAX_WAIT_SECONDS: Final = 0.030
# The same, as the settings give it (CASETRAIL_ACCESS_GROUP_COMMIT_WAIT_MS).
DEFAULT_GROUP_WAIT_MS: Final = DEFAULT_MAX_WAIT_SECONDS * 1000
# How long a reader waits for its commit before it gives up (and discloses nothing).
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
DEFAULT_COMMITTERS: Final = 2


# Told of every committed transaction: (committer's name, events in it, seconds it took). Set
# by the service's metrics (`gateway.http.metrics`); the domain itself knows no metrics library.
CommitObserver = Callable[[str, int, float], None]
_observers: list[CommitObserver] = []


def observe_commits(observer: CommitObserver) -> None:
    """Call `observer` after each transaction a committer of this process stores."""
    if observer not in _observers:
        _observers.append(observer)


# Both failures are the store's (`PersistenceError`), so that every adapter answers them as it
# answers a failed store (HTTP 503, the CLI's one line) rather than as a defect; each keeps its
# built-in base for callers that catch that.


class GroupCommitClosed(PersistenceError, RuntimeError):
    """The committer has stopped; nothing more can be recorded through it."""


class CommitTimedOut(PersistenceError, TimeoutError):
    """The commit was not reported within the committer's timeout. Nothing was confirmed to
    the caller, so it discloses nothing; but the commit goes on, and may still store the events
    (a command's change among them)."""


class _Batch:
    """Units of events that will be committed together, and the outcome each waits for."""

    __slots__ = ("callbacks", "done", "errors", "finished", "lock", "size", "units")

    def __init__(self) -> None:
        self.units: list[Sequence[Any]] = []
        self.size = 0  # events in all units
        self.done = threading.Event()
        self.errors: dict[int, BaseException] = {}
        # Told when the batch is committed or failed (`Committing.when_done`).
        self.lock = threading.Lock()
        self.finished = False
        self.callbacks: list[Callable[[], object]] = []

    def finish(self) -> None:
        with self.lock:
            self.finished = True
            callbacks, self.callbacks = self.callbacks, []
        self.done.set()
        for callback in callbacks:
            # A waiter's callback never keeps the others from their outcome.
            with contextlib.suppress(Exception):
                callback()


class Committing:
    """One unit of events handed to a `GroupCommit`: its outcome, once the batch it joined is
    committed (`wait`, or `when_done` from another thread or an event loop)."""

    __slots__ = ("_batch", "_index", "_timeout")

    def __init__(self, batch: _Batch | None, index: int, timeout: float) -> None:
        self._batch = batch
        self._index = index
        self._timeout = timeout

    @classmethod
    def stored(cls) -> Committing:
        """A unit already durable (stored without a shared commit)."""
        return cls(None, 0, 0.0)

    @property
    def timeout(self) -> float:
        return self._timeout

    def done(self) -> bool:
        return self._batch is None or self._batch.done.is_set()

    def when_done(self, callback: Callable[[], object]) -> None:
        """Call `callback` (in the committer's thread, or at once if done already) when the
        outcome is known; then `wait()` returns or raises without waiting."""
        batch = self._batch
        if batch is not None:
            with batch.lock:
                if not batch.finished:
                    batch.callbacks.append(callback)
                    return
        callback()

    def wait(self) -> None:
        """Return once the events are durably stored; raise the store's error if they were
        not (or `CommitTimedOut` after the committer's timeout)."""
        batch = self._batch
        if batch is None:
            return
        if not batch.done.wait(self._timeout):
            raise CommitTimedOut(f"the events were not stored within {self._timeout} s")
        error = batch.errors.get(self._index)
        if error is not None:
            raise error


class GroupCommit:
    def __init__(
        self,
        save: Callable[[Sequence[Any]], object],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        name: str = "access-group-commit",
        isolate_failures: tuple[type[BaseException], ...] = (),
        committers: int = DEFAULT_COMMITTERS,
    ) -> None:
        if max_batch < 1 or max_wait < 0 or committers < 1:
            raise ValueError(
                "max_batch and committers must be at least 1, and max_wait not negative"
            )
        self._save = save
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._timeout = timeout
        # Commands: a batch that failed with one of these (a lost race for a case's next
        # version) is saved again unit by unit, for each unit's own outcome. Any other failure
        # fails every unit: after a lost connection the batch may have been committed, and a
        # retry would then report a stored command as a lost race, to be applied twice.
        # Access events cannot conflict (each is a new stream): none for them.
        self._isolate_failures = isolate_failures
        self._queue: deque[_Batch] = deque()
        self._ready = threading.Condition()
        self._choosing = threading.Lock()
        self._gathering = False
        self._closed = False
        self._last_size = 0  # events in the batch committed last
        # How many threads announced events to come (`expecting`) and have not queued them
        # yet; each thread's own flag is in `_announced`.
        self._expected = 0
        self._announced = threading.local()
        self.batches = 0
        self.events = 0
        self.name = name
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True)
            for n in range(committers)
        ]
        for thread in self._threads:
            thread.start()

    def record(self, event: Any) -> None:
        """Return once `event` is durably stored; raise the store's error if it was not."""
        self.record_all((event,))

    def record_all(self, events: Sequence[Any]) -> None:
        """Return once `events` are durably stored, all in one transaction; raise the store's
        error if they were not."""
        self.submit(events).wait()

    def submit(self, events: Sequence[Any]) -> Committing:
        """Hand `events` to the next commit, all in one transaction, and return at once: the
        handle tells when they are durable (`Committing.wait`, `Committing.when_done`)."""
        with self._ready:
            if self._closed:
                raise GroupCommitClosed(f"the {self.name} recorder is closed")
            if not self._queue or self._queue[-1].size >= self._max_batch:
                self._queue.append(_Batch())
            batch = self._queue[-1]
            index = len(batch.units)
            batch.units.append(events)
            batch.size += len(events)
            if getattr(self._announced, "pending", False):
                self._announced.pending = False
                self._expected -= 1
            # A committer gathering company sleeps until its batch is complete: waking it for
            # every arrival cost each reader a thread hand-off (bench/README.md, "Profiling").
            if not self._gathering or batch.size >= self._max_batch or self._complete(batch):
                self._ready.notify()
        return Committing(batch, index, self._timeout)

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce that this thread is preparing events it will record (a read being
        decided, a change being applied): until it records them, or leaves the block without,
        a batch being gathered waits for it (at most `max_wait`). Nested use is one
        announcement."""
        if getattr(self._announced, "pending", False):
            yield
            return
        with self._ready:
            self._expected += 1
        self._announced.pending = True
        try:
            yield
        finally:
            if self._announced.pending:  # left without recording: nobody waits for it
                self._announced.pending = False
                with self._ready:
                    self._expected -= 1
                    if self._gathering and self._queue and self._complete(self._queue[0]):
                        self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=self._timeout)

    def _complete(self, batch: _Batch) -> bool:
        """Nobody announced is still to come, and the batch is as large as the last one."""
        return not self._expected and batch.size >= self._last_size

    def _next_batch(self) -> _Batch | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if not self._queue:
                return None
            if self._max_wait and not self._complete(self._queue[0]):
                # Others are preparing events, or came in greater numbers last time: let them
                # join, within the bounds.
                deadline = time.monotonic() + self._max_wait
                self._gathering = True
                try:
                    while (
                        not self._complete(self._queue[0])
                        and self._queue[0].size < self._max_batch
                        and not self._closed
                    ):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._ready.wait(remaining)
                finally:
                    self._gathering = False
            return self._queue.popleft()

    def _take_batch(self) -> _Batch | None:
        # One committer at a time chooses (and may wait for company); the others commit.
        with self._choosing:
            return self._next_batch()

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            started = time.perf_counter()
            try:
                self._save([event for unit in batch.units for event in unit])
            except Exception as exc:  # every waiter gets the store's own error, or its own
                if isinstance(exc, self._isolate_failures) and len(batch.units) > 1:
                    self._save_one_by_one(batch)
                else:
                    batch.errors.update(dict.fromkeys(range(len(batch.units)), exc))
            else:
                self._count(1, batch.size)
                self._observed(batch.size, time.perf_counter() - started)
            self._last_size = batch.size
            batch.finish()

    def _observed(self, size: int, seconds: float) -> None:
        for observer in _observers:
            # A metric never fails a commit already made.
            with contextlib.suppress(Exception):
                observer(self.name, size, seconds)

    def _count(self, batches: int, events: int) -> None:
        with self._ready:  # committers count from several threads
            self.batches += batches
            self.events += events

    def _save_one_by_one(self, batch: _Batch) -> None:
        for index, unit in enumerate(batch.units):
            try:
                self._save(unit)
            except Exception as exc:
                batch.errors[index] = exc
            else:
                self._count(1, len(unit))
