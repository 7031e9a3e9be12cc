"""A case read awaits its access event's commit in the event loop (`CaseTrail.begin_read`,
`GroupCommit.submit`, `gateway.http.durability.durable`): told when the batch it joined is
committed, raising the store's error when it was not, never answering before, and holding the
loop free meanwhile."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.access import IN_PROCESS_CLIENT, Actor, CaseAccessed, Channel
from domain.application import CaseTrail, PendingRead
from domain.group_commit import Committing, GroupCommit
from domain.taxonomy import Purpose, Role
from gateway.http.durability import answer_when_durable, durable
from gateway.store.eventstore import new_key_text, store_environment
from tests.integration.planted import planted_case

REPORTER = Actor("u-1", Role.REPORTER, "dongshan-village", "chengguan-street")


class HeldSave:
    """A store's save that waits until released, then stores or fails."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.release = threading.Event()
        self.saved: list[object] = []
        self.error = error

    def __call__(self, events: Sequence[object]) -> None:
        assert self.release.wait(10)
        if self.error is not None:
            raise self.error
        self.saved.extend(events)


def test_a_submitted_unit_is_told_once_its_commit_is_done() -> None:
    save = HeldSave()
    committer = GroupCommit(save, max_wait=0)
    try:
        committing = committer.submit(["a", "b"])
        told: list[list[object]] = []
        committing.when_done(lambda: told.append(list(save.saved)))
        assert not committing.done()
        assert told == []
        save.release.set()
        committing.wait()
        assert committing.done()
        # Told after the events were saved, once.
        assert told == [["a", "b"]]
        late: list[bool] = []
        committing.when_done(lambda: late.append(True))  # done already: called at once
        assert late == [True]
    finally:
        committer.close()


def test_a_failed_commit_is_raised_to_a_submitted_unit_and_it_is_still_told() -> None:
    save = HeldSave(OSError("disk full"))
    committer = GroupCommit(save, max_wait=0)
    try:
        committing = committer.submit(["a"])
        told = threading.Event()
        committing.when_done(told.set)
        save.release.set()
        with pytest.raises(OSError, match="disk full"):
            committing.wait()
        assert told.is_set()
    finally:
        committer.close()


def test_durable_returns_only_after_the_commit_and_leaves_the_loop_free() -> None:
    save = HeldSave()
    committer = GroupCommit(save, max_wait=0)

    async def scenario() -> tuple[int, list[object]]:
        committing = committer.submit(["event"])
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, save.release.set)
        await durable(committing)
        saved = list(save.saved)
        ticker.cancel()
        return ticks, saved

    try:
        ticks, saved = asyncio.run(scenario())
    finally:
        committer.close()
    assert saved == ["event"]  # stored before durable() returned
    # The loop ran other work while the commit was held (a blocking wait would give 1 tick).
    assert ticks >= 5


def test_durable_raises_the_stores_error() -> None:
    save = HeldSave(OSError("disk full"))
    committer = GroupCommit(save, max_wait=0)

    async def scenario() -> None:
        committing = committer.submit(["event"])
        asyncio.get_running_loop().call_later(0.05, save.release.set)
        await durable(committing)

    try:
        with pytest.raises(OSError, match="disk full"):
            asyncio.run(scenario())
    finally:
        committer.close()


def test_durable_gives_up_after_the_committers_timeout() -> None:
    save = HeldSave()
    committer = GroupCommit(save, max_wait=0, timeout=0.2)
    try:
        with pytest.raises(TimeoutError, match="not stored within"):
            asyncio.run(durable(committer.submit(["event"])))
    finally:
        save.release.set()
        committer.close()


def test_a_unit_stored_without_a_shared_commit_is_durable_at_once() -> None:
    committing = Committing.stored()
    assert committing.done()
    asyncio.run(durable(committing))
    committing.wait()


def _read_with_commit_held(
    app: CaseTrail, request_id: str
) -> tuple[UUID, threading.Event, PendingRead]:
    """A case reported, then a read of it begun with the committer's save held until the
    returned event is set: the read is decided and handed over, not yet stored."""
    case_id = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
    committer = app.access_commits
    assert committer is not None
    held = threading.Event()
    real_save = committer._save

    def held_save(events: Sequence[object]) -> object:
        assert held.wait(10)
        return real_save(events)

    committer._save = held_save
    pending = app.begin_read(
        case_id,
        REPORTER,
        Purpose.FOLLOW_UP,
        request_id,
        channel=Channel.API,
        client=IN_PROCESS_CLIENT,
    )
    return case_id, held, pending


def test_a_begun_read_answers_only_once_its_access_event_is_stored(tmp_path: Path) -> None:
    app = CaseTrail(env=store_environment(f"sqlite:///{tmp_path / 'r.sqlite'}", [new_key_text()]))
    try:
        case_id, held, pending = _read_with_commit_held(app, "req-1")
        assert not pending.committing.done()
        assert not [e for e in app.access_events(case_id) if isinstance(e, CaseAccessed)]
        answers: list[dict[str, object]] = []
        answering = threading.Thread(target=lambda: answers.append(pending.answer()))
        answering.start()
        answering.join(0.3)
        assert answers == []  # waits for the commit
        held.set()
        answering.join(10)
        assert answers and answers[0]["id"] == str(case_id)
        stored = [e for e in app.access_events(case_id) if isinstance(e, CaseAccessed)]
        assert [e.request_id for e in stored] == ["req-1"]
    finally:
        app.close()


def test_a_routes_answer_awaits_the_commit_in_the_loop(tmp_path: Path) -> None:
    app = CaseTrail(env=store_environment(f"sqlite:///{tmp_path / 'a.sqlite'}", [new_key_text()]))
    try:
        case_id, held, pending = _read_with_commit_held(app, "req-2")

        async def scenario() -> tuple[dict[str, object], int]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            ticker = asyncio.create_task(tick())
            asyncio.get_running_loop().call_later(0.2, held.set)
            answer = await answer_when_durable(pending)
            ticker.cancel()
            return answer, ticks

        answer, ticks = asyncio.run(scenario())
        assert answer["id"] == str(case_id)
        assert ticks >= 5  # the loop ran meanwhile: the answer did not block it
        stored = [e for e in app.access_events(case_id) if isinstance(e, CaseAccessed)]
        assert [e.request_id for e in stored] == ["req-2"]
    finally:
        app.close()
