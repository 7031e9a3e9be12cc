"""The case files a process changed last, kept as they stood after its change, for its next
command on them.

Every command loads its case file before it applies a rule: the latest snapshot and the events
after it, each decrypted and decoded. The cost grows with the file (0.3 ms for a file of 20
events, 1 ms at 600 on this machine, plus about 40 µs per event since the snapshot); under load
the busy files are the long ones, and they are changed again and again by the same worker
(bench/README.md, "Targets, 2026-12-04, seventh round"). A process therefore keeps the files it
changed last, and the next command on one of them starts from the kept state.

What it keeps to:
- **Never stale.** A kept file is brought up to date at every use: the events stored after its
  version are read and applied (the indexed query a load ends with anyway), so a change made by
  another worker is seen, and the store's version check still decides between workers.
- **Never revived.** A kept file whose data key was destroyed (erasure, `domain.retention`) is
  refused as a load would refuse it: `CaseTrail` asks the store's keyring before every use, which
  knows a destruction at once in the erasing process and within its cache period in the others,
  as decrypting would.
- **Never half-changed.** A command takes its file out of the cache (under the file's lock, so
  no other command of the process holds it) and puts it back only once its new events are
  stored; a command that failed leaves nothing behind, and the next one loads the file again.
- **Bounded.** At most `size` files per process, the least recently changed going first; a file
  kept `max_age` seconds after its last change is never used again and is dropped at the
  process's next command: decrypted state does not linger in a busy worker's memory. `size` 0
  keeps nothing (`CASETRAIL_CASE_CACHE_SIZE`).

Only commands use it; reads load their file from the store, as before. (The library's own
aggregate cache, `AGGREGATE_CACHE_MAXSIZE`, deep-copies a file at every use, which costs about
as much as loading it, 0.11 ms at 20 events and 2.2 ms at 600, and knows nothing of erasure.)

Proven by tests/domain/test_case_cache.py (the cache's bounds) and
tests/integration/test_case_cache.py (a real store: another process's change, erasure, a failed
command, a lost race).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar
from uuid import UUID

DEFAULT_SIZE: Final = 1024
DEFAULT_MAX_AGE_SECONDS: Final = 300.0


class Versioned(Protocol):
    @property
    def id(self) -> UUID: ...

    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=Versioned)


class CaseCache(Generic[V]):
    """Kept case files by id: `take` one out for a command, `keep` it after the command stored
    its events. Thread-safe; each file is held by at most one command at a time."""

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        max_age: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 0:
            raise ValueError(f"the case cache's size must be 0 or more, not {size}")
        if max_age <= 0:
            raise ValueError(f"the case cache's max_age must be above 0, not {max_age}")
        self.size = size
        self.max_age = max_age
        self._clock = clock
        self._kept: OrderedDict[UUID, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    def take(self, case_id: UUID) -> V | None:
        """The kept file, now out of the cache; None if none is kept or it is too old."""
        with self._lock:
            now = self._clock()
            self._drop_old(now)
            found = self._kept.pop(case_id, None)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            return found[0]

    def keep(self, case: V) -> None:
        """Keep `case` as it now stands in the store (its events all stored)."""
        if self.size == 0:
            return
        with self._lock:
            now = self._clock()
            self._kept[case.id] = (case, now)
            self._kept.move_to_end(case.id)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
            self._drop_old(now)

    def _drop_old(self, now: float) -> None:
        # The least recently kept are at the front.
        while self._kept:
            _, kept_at = next(iter(self._kept.values()))
            if now - kept_at <= self.max_age:
                return
            self._kept.popitem(last=False)

    def forget(self, case_id: UUID) -> None:
        with self._lock:
            self._kept.pop(case_id, None)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
