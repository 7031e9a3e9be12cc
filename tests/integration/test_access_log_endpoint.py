"""`GET /v1/cases/{id}/accesses` answers from the access-log read model (issue 15), through the
real ASGI app on SQLite and PostgreSQL:

- its answer equals, entry for entry, what the earlier implementation (a scan of every access
  event of the store) answers for the same store, in a scenario of granted, refused and
  break-glass reads of two files by several roles and channels, with the accesses of other
  files around them;
- read-your-writes: with the followers stopped, the log still lists every access stored
  before the request's own, and the request's own, from the tail of the store;
- no full scan: with the view caught up, answering decodes a handful of events (the tail), not
  the store's hundreds of other access events.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain.access import AccessDenied, BreakGlassAccessed, CaseAccessed
from domain.application import ACCESS_TOPICS, CaseTrail
from domain.investigations import hidden_from_street
from domain.taxonomy import Role
from projections.readmodels import ReadModels
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case
from tests.integration.test_one_reader import application_of
from tests.projections.test_access_log import History

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"


def full_scan_log(application: CaseTrail, case_id: UUID, role: Role) -> list[dict[str, Any]]:
    """The access log as it was answered before the read model: every access event of the
    store decoded, those naming the case kept (a copy of the earlier `CaseTrail.access_log`),
    each with its place in the store."""
    entries: list[dict[str, Any]] = []
    for notification in application.notifications(topics=ACCESS_TOPICS):
        e = application.mapper.to_domain_event(notification)
        if not isinstance(e, CaseAccessed | AccessDenied) or e.case_id != case_id:
            continue
        entries.append(
            {
                "position": notification.id,
                "at": e.timestamp.isoformat(),
                "granted": isinstance(e, CaseAccessed),
                "actor": e.actor,
                "purpose": e.purpose,
                "rule": e.rule,
                "fields": getattr(e, "fields", []),
                "break_glass": isinstance(e, BreakGlassAccessed),
                "request_id": e.request_id,
                "case_version": e.case_version,
                "channel": e.channel,
                "client": e.client,
            }
        )
    return [e for e in entries if not hidden_from_street(str(e["rule"]), role)]


def readmodels_of(client: TestClient) -> ReadModels:
    found: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    return found


def _report(client: TestClient, auth: TokenFactory, seed: int) -> str:
    created = client.post(
        "/v1/cases",
        json=planted_case(VILLAGE, seed=seed).body,
        headers=auth(Role.REPORTER, VILLAGE),
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _scenario(client: TestClient, auth: TokenFactory) -> list[str]:
    """Two files read, refused and broken into by several roles and channels."""
    cases = [_report(client, auth, seed) for seed in (1501, 1502)]
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    stranger = auth(Role.UNIT_MEMBER, POLICE, purpose="intervention")
    for case_id in cases:
        for headers, path, ok in (
            (coordinator, f"/v1/cases/{case_id}", 200),
            (stranger, f"/v1/cases/{case_id}", 404),  # not assigned: refused, recorded
            (auth(Role.REPORTER, VILLAGE, purpose="follow_up"), f"/v1/cases/{case_id}", 200),
            (auth(Role.REPORTER, VILLAGE, purpose="investigation"), f"/v1/cases/{case_id}", 403),
        ):
            answer = client.get(path, headers=headers)
            assert answer.status_code == ok, (path, answer.text)
        glass = client.post(
            f"/v1/cases/{case_id}/break-glass",
            json={"reason": "孩子今晨失联，需要立即联系监护人。"},
            headers=auth(Role.COORDINATOR, "far-office", street="far-street"),
        )
        assert glass.status_code == 200, glass.text
    ledger = client.get("/v1/ledger", headers=coordinator)
    assert ledger.status_code == 200, ledger.text
    return cases


def _auditor(auth: TokenFactory) -> dict[str, str]:
    return auth(Role.COMPLIANCE_AUDITOR, "county-compliance", purpose="compliance_review")


def test_the_answer_equals_the_earlier_full_scan(client: TestClient, auth: TokenFactory) -> None:
    application = application_of(client)
    application.store_events(History(seed=1503).events(60))  # other files' accesses
    cases = _scenario(client, auth)
    readmodels_of(client).catch_up()
    application.store_events(History(seed=1504).events(20))
    for case_id in cases:
        answer = client.get(f"/v1/cases/{case_id}/accesses", headers=_auditor(auth))
        assert answer.status_code == 200, answer.text
        entries = answer.json()["access_log"]
        assert entries == full_scan_log(application, UUID(case_id), Role.COMPLIANCE_AUDITOR)
        # Granted, refused and break-glass reads, and this request's own read, last.
        assert {(e["granted"], e["break_glass"]) for e in entries} == {
            (True, False),
            (False, False),
            (True, True),
        }
        assert entries[-1]["request_id"] == answer.headers["X-Request-ID"]
        assert entries[-1]["actor"]["role"] == "compliance_auditor"


def test_with_the_followers_stopped_the_log_holds_every_access_before_its_own(
    client: TestClient, auth: TokenFactory
) -> None:
    application = application_of(client)
    (case_id, other) = _scenario(client, auth)
    readmodels = readmodels_of(client)
    readmodels.catch_up()
    readmodels.stop()
    # Stored after the view's position: only the tail of the store holds them.
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="follow_up")
    requests = [
        client.get(f"/v1/cases/{c}", headers=coordinator)
        for _ in range(3)
        for c in (case_id, other)
    ]
    assert {r.status_code for r in requests} == {200}
    assert readmodels.follower("accesses").lag() > 0
    answer = client.get(f"/v1/cases/{case_id}/accesses", headers=_auditor(auth))
    assert answer.status_code == 200, answer.text
    entries = answer.json()["access_log"]
    ids = [e["request_id"] for e in entries]
    assert [r.headers["X-Request-ID"] for r in requests[::2]] == ids[-4:-1]
    assert ids[-1] == answer.headers["X-Request-ID"]
    assert entries == full_scan_log(application, UUID(case_id), Role.COMPLIANCE_AUDITOR)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_answer_decodes_the_tail_not_the_store(
    client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = application_of(client)
    (case_id, _) = _scenario(client, auth)
    application.store_events(History(seed=1505).events(400))
    readmodels = readmodels_of(client)
    readmodels.stop()
    readmodels.catch_up()
    decoded: list[str] = []
    decode = application.mapper.to_domain_event

    def counted(notification: Any) -> Any:
        decoded.append(notification.topic)
        return decode(notification)

    monkeypatch.setattr(application.mapper, "to_domain_event", counted)
    answer = client.get(f"/v1/cases/{case_id}/accesses", headers=_auditor(auth))
    assert answer.status_code == 200, answer.text
    # The case's stream (to decide the read) and the request's own access event in the tail;
    # the earlier scan decoded the 400 others too.
    assert 0 < len(decoded) < 40, decoded
    monkeypatch.undo()
    entries = answer.json()["access_log"]
    assert entries == full_scan_log(application, UUID(case_id), Role.COMPLIANCE_AUDITOR)
    assert len(entries) >= 6  # and the ledger row, once the ledger listed the file


def _pages(
    client: TestClient, case_id: str, headers: dict[str, str], limit: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every page of a case's log, following `next_after`: the entries, and each page
    request's own id."""
    entries: list[dict[str, Any]] = []
    requests: list[str] = []
    after: int | None = 0
    while after is not None:
        answer = client.get(
            f"/v1/cases/{case_id}/accesses",
            params={"after": after, "limit": limit},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["access_log"]) <= limit
        if page["next_after"] is not None:  # a full page continues after its last entry
            assert len(page["access_log"]) == limit
            assert page["next_after"] == page["access_log"][-1]["position"]
        entries.extend(page["access_log"])
        requests.append(answer.headers["X-Request-ID"])
        after = page["next_after"]
        assert len(requests) < 100, "the pages never ended"
    return entries, requests


@pytest.mark.parametrize("stopped", [False, True], ids=["view", "view-and-tail"])
def test_pages_of_the_log_follow_one_another_to_its_end(
    client: TestClient, auth: TokenFactory, stopped: bool
) -> None:
    application = application_of(client)
    (case_id, other) = _scenario(client, auth)
    readmodels = readmodels_of(client)
    readmodels.catch_up()
    if stopped:  # the later reads only in the store's tail: pages cross from view to tail
        readmodels.stop()
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="follow_up")
    for _ in range(7):
        for c in (case_id, other):
            assert client.get(f"/v1/cases/{c}", headers=coordinator).status_code == 200
    if stopped:
        assert readmodels.follower("accesses").lag() > 0
    entries, requests = _pages(client, case_id, _auditor(auth), limit=3)
    whole = full_scan_log(application, UUID(case_id), Role.COMPLIANCE_AUDITOR)
    # Each page's request is a read of the log too: the pages end with the last one's own.
    assert entries == whole
    assert len(entries) >= 17 and len(requests) >= 6
    assert entries[-1]["request_id"] == requests[-1]
    positions = [e["position"] for e in entries]
    assert positions == sorted(set(positions))
    # A page starting after the end is empty and the last.
    answer = client.get(
        f"/v1/cases/{case_id}/accesses",
        params={"after": positions[-1] + 10_000},
        headers=_auditor(auth),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["access_log"] == [] and answer.json()["next_after"] is None
    # Without a limit, a page of the default size holds the whole (short) log.
    answer = client.get(f"/v1/cases/{case_id}/accesses", headers=_auditor(auth))
    assert answer.json()["next_after"] is None
    assert answer.json()["access_log"][:-1] == full_scan_log(
        application, UUID(case_id), Role.COMPLIANCE_AUDITOR
    )[: len(answer.json()["access_log"]) - 1]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "-1"}, "after"),
        ({"after": "x"}, "after"),
        ({"after": str(2**53 + 1)}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "1.5"}, "limit"),
    ],
)
def test_a_bad_page_is_a_problem_naming_its_field_and_stores_nothing(
    client: TestClient, auth: TokenFactory, params: dict[str, str], field: str
) -> None:
    application = application_of(client)
    case_id = _report(client, auth, seed=1506)
    auditor = _auditor(auth)
    assert client.get(f"/v1/cases/{case_id}/accesses", headers=auditor).status_code == 200
    before = application.recorder.max_notification_id()  # the auditor registered, and read
    answer = client.get(f"/v1/cases/{case_id}/accesses", params=params, headers=auditor)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    # The value is not echoed ("0" and "1" are in the limits the message names).
    del problem["request_id"]
    if params[field] not in ("0", "1"):
        assert params[field] not in json.dumps(problem, ensure_ascii=False)
    assert application.recorder.max_notification_id() == before
