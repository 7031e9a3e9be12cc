"""Group commit: many readers' access events made durable by one transaction.

Every read must store its access event durably before it returns data, so each read is a durable
write. Committing them one by one caps reads at the store's commit rate; instead a committer
thread takes whatever access events are waiting, saves them in one transaction, and wakes each
waiting reader with the outcome: success, or the store's exception (then that reader discloses
nothing). No delay is added at low load: a lone event is committed at once, and events that arrive
while a commit is in flight form the next batch (bounded by `max_batch`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Final

DEFAULT_MAX_BATCH: Final = 256
# How long a reader waits for its commit before it gives up (and discloses nothing).
DEFAULT_TIMEOUT_SECONDS: Final = 30.0


class GroupCommitClosed(RuntimeError):
    """The committer has stopped; nothing more can be recorded through it."""


class GroupCommit:
    def __init__(
        self,
        save: Callable[[Sequence[Any]], object],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        name: str = "access-group-commit",
    ) -> None:
        self._save = save
        self._max_batch = max_batch
        self._timeout = timeout
        self._waiting: list[tuple[Any, Future[None]]] = []
        self._ready = threading.Condition()
        self._closed = False
        self.batches = 0
        self.events = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def record(self, event: Any) -> None:
        """Return once `event` is durably stored; raise the store's error if it was not."""
        done: Future[None] = Future()
        with self._ready:
            if self._closed:
                raise GroupCommitClosed("the access recorder is closed")
            self._waiting.append((event, done))
            self._ready.notify()
        done.result(timeout=self._timeout)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout=self._timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
            try:
                self._save([event for event, _ in batch])
            except Exception as exc:  # every waiter gets the store's own error
                for _, done in batch:
                    done.set_exception(exc)
            else:
                self.batches += 1
                self.events += len(batch)
                for _, done in batch:
                    done.set_result(None)
