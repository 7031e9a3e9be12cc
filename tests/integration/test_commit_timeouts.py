"""A shared commit that does not report in time, or a committer that has stopped, is answered
as a failed store, over real HTTP on real SQLite and PostgreSQL stores: 503 problem+json, never
a 500 and never data (`domain.group_commit.CommitTimedOut`, `GroupCommitClosed`, answered by
`gateway.http.app`).

The store is stalled, not replaced: the process's committer is swapped for one whose save waits
for the test's word and then stores through the application's own `store_events`, with a
timeout of a fifth of a second instead of 30."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from uuid import UUID

import pytest
from eventsourcing.persistence import PersistenceError
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.group_commit import CommitTimedOut, GroupCommit, GroupCommitClosed
from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"


class StalledStore:
    """The application's own save, held until `release` is set."""

    def __init__(self, application: CaseTrail) -> None:
        self.application = application
        self.release = threading.Event()

    def __call__(self, events: Sequence[object]) -> None:
        assert self.release.wait(10)
        self.application.store_events(events)  # type: ignore[arg-type]


def application_of(client: TestClient) -> CaseTrail:
    app: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return app


@pytest.fixture
def stalled(client: TestClient) -> Iterator[tuple[CaseTrail, StalledStore]]:
    application = application_of(client)
    store = StalledStore(application)
    kept = application.access_commits, application.command_commits
    application.access_commits = GroupCommit(store, max_wait=0, timeout=0.2, name="stalled")
    application.command_commits = GroupCommit(store, max_wait=0, timeout=0.2, name="stalled-c")
    try:
        yield application, store
    finally:
        store.release.set()
        for committer in (application.access_commits, application.command_commits):
            committer.close()
        application.access_commits, application.command_commits = kept


def test_the_timeout_is_a_store_failure_and_a_timeout() -> None:
    assert issubclass(CommitTimedOut, PersistenceError) and issubclass(CommitTimedOut, TimeoutError)
    assert issubclass(GroupCommitClosed, PersistenceError)


def test_a_read_whose_commit_times_out_is_answered_503_without_data(
    client: TestClient, auth: TokenFactory, stalled: tuple[CaseTrail, StalledStore]
) -> None:
    application, store = stalled
    planted = planted_case()
    store.release.set()  # the report goes through
    created = client.post("/v1/cases", json=planted.body, headers=auth(Role.REPORTER, VILLAGE))
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    store.release.clear()  # and now the store stalls

    read = client.get(
        f"/v1/cases/{case_id}", headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    )
    assert read.status_code == 503, read.text
    assert read.headers["content-type"] == "application/problem+json"
    assert read.headers["Retry-After"] == "5"
    assert read.json()["type"] == "urn:casetrail:problem:store-timeout"
    for what, needle in planted.needles().items():
        assert needle.decode() not in read.text, f"{what} disclosed"

    # The commit goes on: once the store answers, the access event is stored after all, which
    # is why the answer does not say that nothing was recorded.
    store.release.set()
    application.access_commits.close()  # type: ignore[union-attr]
    assert len(application.access_events(UUID(case_id))) == 1


def test_a_command_whose_commit_times_out_is_answered_503_and_may_still_be_stored(
    client: TestClient, auth: TokenFactory, stalled: tuple[CaseTrail, StalledStore]
) -> None:
    application, store = stalled
    before = application.recorder.max_notification_id() or 0
    created = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    )
    assert created.status_code == 503, created.text
    assert created.json()["type"] == "urn:casetrail:problem:store-timeout"
    assert "read the case file before repeating" in created.json()["detail"]
    store.release.set()
    application.command_commits.close()  # type: ignore[union-attr]
    assert (application.recorder.max_notification_id() or 0) > before


def test_a_stopped_committer_is_answered_503_store_unavailable(
    client: TestClient, auth: TokenFactory
) -> None:
    planted = planted_case()
    created = client.post("/v1/cases", json=planted.body, headers=auth(Role.REPORTER, VILLAGE))
    assert created.status_code == 201, created.text
    application = application_of(client)
    kept = application.access_commits
    stopped = GroupCommit(application.store_events, name="stopped")
    stopped.close()
    application.access_commits = stopped
    try:
        read = client.get(
            f"/v1/cases/{created.json()['id']}",
            headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up"),
        )
    finally:
        application.access_commits = kept
    assert read.status_code == 503, read.text
    assert read.json()["type"] == "urn:casetrail:problem:store-unavailable"
    for what, needle in planted.needles().items():
        assert needle.decode() not in read.text, f"{what} disclosed"
