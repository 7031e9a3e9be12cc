"""Python's cyclic garbage collector paused while a report is built and rendered.

A report of a long case makes a few hundred thousand small containers (timeline rows, decoded
events, access records, matrix cells) that live until the file is signed. Each of them counts
towards the collector's thresholds, so building one report set off collections, some of them
full passes over every object of the process, the report's included; none of them can free
anything the report made (its values are trees: freed by reference counting the moment the
document is dropped). On the 10,000-event case of bench/report.py one report set off 182
collections, 2 of them full, that took 160 ms of its 510 ms of CPU (measured with
`gc.callbacks`, 2026-12-02; bench/README.md, "report").

`paused()` disables the collector for the duration, process-wide (the collector has no other
switch), and enables it again when the last report being built in the process is done, only
if it was enabled when the first one began; a report's objects are then examined at most by
the next ordinary collection. Reports are built in the API's worker threads: a counter under
a lock makes overlapping reports nest. Cyclic garbage made by other threads meanwhile waits
for that next collection, a fraction of a second later. Proven by
tests/reports/test_collector.py.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final


class _Pause:
    """How many reports are being built, and whether the collector was on before the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.was_enabled = False

    def enter(self) -> None:
        with self.lock:
            if self.depth == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.depth += 1

    def exit(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.was_enabled:
                gc.enable()


_PAUSE: Final = _Pause()


@contextmanager
def paused() -> Iterator[None]:
    """The collector disabled inside the block (nested and concurrent blocks: until the last
    one ends), then restored as the first one found it."""
    _PAUSE.enter()
    try:
        yield
    finally:
        _PAUSE.exit()
