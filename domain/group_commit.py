"""Group commit: many readers' access events made durable by one transaction.

Every read must store its access event durably before it returns data, so each read is a durable
write. Committing them one by one caps reads at the store's commit rate; instead a committer
thread takes whatever access events are waiting, saves them in one transaction, and wakes each
waiting reader with the outcome: success, or the store's exception (then that reader discloses
nothing).

Batches are bounded twice:
- in size: at most `max_batch` events per transaction;
- in time: when the previous transaction held more than one event (readers are arriving
  together), the committer waits up to `max_wait` seconds for more to join before it commits.
  A lone reader is never delayed: after a batch of one, the next event is committed at once.

Events that arrive while a commit is in flight form the next batch. The readers of one batch
wait on one `threading.Event`, so that a commit wakes them with one notification, not one per
reader.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

DEFAULT_MAX_BATCH: Final = 256
# How long the committer may wait for a batch to fill once readers arrive together.
DEFAULT_MAX_WAIT_SECONDS: Final = 0.002
# How long a reader waits for its commit before it gives up (and discloses nothing).
DEFAULT_TIMEOUT_SECONDS: Final = 30.0


class GroupCommitClosed(RuntimeError):
    """The committer has stopped; nothing more can be recorded through it."""


class _Batch:
    """Events that will be committed together, and the outcome their readers wait for."""

    __slots__ = ("done", "error", "events")

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(
        self,
        save: Callable[[Sequence[Any]], object],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        name: str = "access-group-commit",
    ) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be at least 1 and max_wait not negative")
        self._save = save
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._timeout = timeout
        self._queue: deque[_Batch] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._last_size = 0
        self.batches = 0
        self.events = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def record(self, event: Any) -> None:
        """Return once `event` is durably stored; raise the store's error if it was not."""
        with self._ready:
            if self._closed:
                raise GroupCommitClosed("the access recorder is closed")
            if not self._queue or len(self._queue[-1].events) >= self._max_batch:
                self._queue.append(_Batch())
            batch = self._queue[-1]
            batch.events.append(event)
            self._ready.notify()
        if not batch.done.wait(self._timeout):
            raise TimeoutError(f"the access event was not stored within {self._timeout} s")
        if batch.error is not None:
            raise batch.error

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout=self._timeout)

    def _next_batch(self) -> _Batch | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if not self._queue:
                return None
            if self._max_wait and self._last_size > 1:
                # Readers came together last time: let more join, within the bounds.
                deadline = time.monotonic() + self._max_wait
                while len(self._queue[0].events) < self._max_batch and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
            return self._queue.popleft()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._save(batch.events)
            except Exception as exc:  # every waiter gets the store's own error
                batch.error = exc
            else:
                self.batches += 1
                self.events += len(batch.events)
            self._last_size = len(batch.events)
            batch.done.set()
