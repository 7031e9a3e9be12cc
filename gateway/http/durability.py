"""Waiting for an access event's commit in the event loop, not in a thread.

A case read stores its access event before it answers (`domain.application.CaseTrail.begin_read`
hands the event to the shared commit, `PendingRead.answer` discloses only once it is durable).
`durable()` lets the HTTP route await that commit: the request holds no worker thread while the
committer works, and a batch's commit wakes its readers through the event loop instead of waking
one blocked thread per reader (bench/README.md, "Targets, 2026-12-05, tenth round").

The guarantee is the same as the blocking wait's: nothing is disclosed before the commit
reports success; the store's error, or `CommitTimedOut` after the committer's timeout, is raised
instead. Proven by tests/integration/test_durable_reads.py (told after the commit, the store's
error raised, the loop left free, the timeout) and tests/integration/test_audited_reads.py (over
HTTP: a commit that fails answers 503 and discloses nothing).
"""

from __future__ import annotations

import asyncio
from typing import Any

from domain.application import PendingRead
from domain.group_commit import CommitTimedOut, Committing


async def durable(committing: Committing) -> None:
    """Return once `committing`'s events are durable; raise the store's error if they were not
    (`Committing.wait`, called without waiting once the commit is done)."""
    if not committing.done():
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not settled.done():
                settled.set_result(None)

        def expire() -> None:
            if not settled.done():
                settled.set_exception(
                    CommitTimedOut(f"the events were not stored within {committing.timeout} s")
                )

        # Called in the committer's thread: the loop is only told (thread-safe), nothing more.
        committing.when_done(lambda: loop.call_soon_threadsafe(settle))
        # A timer of the loop's own, not `asyncio.timeout`: the same bound at a fifth of its
        # cost per read (4-5 µs less on uvloop, bench/README.md "eleventh round").
        timer = loop.call_later(committing.timeout, expire)
        try:
            await settled
        finally:
            timer.cancel()
    committing.wait()


async def answer_when_durable(pending: PendingRead) -> dict[str, Any]:
    """A begun read's answer (`CaseTrail.begin_read`), disclosed once its access event is
    durable: the one call a route makes, so that none answers without awaiting the commit, nor
    blocks its event loop in `PendingRead.answer`'s own wait."""
    await durable(pending.committing)
    return pending.answer()
