"""The investigation workbench over HTTP (`gateway/http/routes/workbench.py`): the timeline, the
knowledge matrix and the deadline analysis of a case are audited reads through the one reader.

- An investigator under an order in force gets each answer, and its access events are stored
  first (the fields the answer discloses, the channel, the access log's own event when the answer
  names who read): the answer lists the read itself.
- Everyone else is refused, the refusal stored, and answered as a case read's refusal: the
  street's coordinator and a compliance auditor (granted the case, or its access log, by the
  case read's rules) and an investigator without an order get 404 after the floor; a purpose the
  role may not declare gets 403.
- `as_of` is bounded and must carry its offset (422 naming it; nothing stored).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi.testclient import TestClient

from domain.access import INVESTIGATOR_FIELDS, AccessDenied, CaseAccessed
from domain.application import ACCESS_TOPICS, CaseTrail
from domain.taxonomy import Role
from gateway.http.reader import refusal_answer
from projections.investigation import DEADLINE_FIELDS, KNOWLEDGE_FIELDS, TIMELINE_FIELDS
from tests.conftest import TokenFactory
from tests.domain.builders import report_body

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
COUNTY = "county-inspection-office"
INVESTIGATOR = f"user-{Role.INVESTIGATOR}-{COUNTY}"
ENDPOINTS = {
    "timeline": (TIMELINE_FIELDS, True),
    "knowledge": (KNOWLEDGE_FIELDS, True),
    "deadlines": (DEADLINE_FIELDS, False),
}


def _application(client: TestClient) -> CaseTrail:
    app: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return app


def _stored(client: TestClient, response: httpx.Response) -> list[CaseAccessed | AccessDenied]:
    application = _application(client)
    request_id = response.headers["X-Request-ID"]
    found: list[CaseAccessed | AccessDenied] = []
    for notification in application.notifications(topics=ACCESS_TOPICS):
        event = application.mapper.to_domain_event(notification)
        if isinstance(event, CaseAccessed | AccessDenied) and event.request_id == request_id:
            found.append(event)
    return found


@pytest.fixture
def case_id(client: TestClient, auth: TokenFactory) -> str:
    created = client.post("/v1/cases", json=report_body(), headers=auth(Role.REPORTER, VILLAGE))
    assert created.status_code == 201, created.text
    found: str = created.json()["id"]
    return found


@pytest.fixture
def ordered(client: TestClient, auth: TokenFactory, case_id: str) -> str:
    """The case, with an investigation order in force for INVESTIGATOR."""
    issued = client.post(
        "/v1/investigation-orders",
        json={
            "case_id": case_id,
            "investigator": INVESTIGATOR,
            "reason": "学生伤害事件倒查",
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        headers=auth(Role.COORDINATOR, OFFICE),
    )
    assert issued.status_code == 201, issued.text
    return case_id


def _investigator(auth: TokenFactory, purpose: str = "investigation") -> dict[str, str]:
    return auth(Role.INVESTIGATOR, COUNTY, purpose=purpose)


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_an_investigator_under_order_is_answered_after_the_record(
    client: TestClient, auth: TokenFactory, ordered: str, endpoint: str
) -> None:
    fields, with_log = ENDPOINTS[endpoint]
    response = client.get(f"/v1/cases/{ordered}/{endpoint}", headers=_investigator(auth))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["case_id"] == ordered
    events = _stored(client, response)
    expected = [sorted(fields & INVESTIGATOR_FIELDS)] + ([["access_log"]] if with_log else [])
    assert [e.fields for e in events if isinstance(e, CaseAccessed)] == expected
    assert len(events) == len(expected)
    assert {(e.rule, e.purpose, e.channel, e.case_version) for e in events} == {
        ("investigation_order", "investigation", endpoint, 1)
    }
    assert all(e.actor["user"] == INVESTIGATOR for e in events)
    if endpoint == "timeline":
        # The read itself is on the timeline, recorded before the answer was built.
        last = body["entries"][-len(events) :]
        assert [(e["kind"], e["details"]["channel"]) for e in last] == [
            ("case_accessed", "timeline")
        ] * len(events)
        assert body["entries"][0]["kind"] == "clue_reported"
        assert body["entries"][0]["label_zh"] == "线索上报"
    elif endpoint == "knowledge":
        clue = body["facts"][0]
        assert clue["fact"] == "clue"
        assert clue["known_by"][0]["how"] == "reported"
        assert clue["known_by"][0]["unit"] == VILLAGE
        assert clue["known_by"][-1]["user"] == INVESTIGATOR  # this very read
    else:
        assert body["checks"][0]["duty"] == "consultation"
        assert body["checks"][0]["status"] == "open"
        assert [m["step"] for m in body["milestones"]] == ["reported"]


@pytest.mark.parametrize(
    ("role", "unit", "purpose", "rule"),
    [
        (
            Role.COORDINATOR,
            OFFICE,
            "consultation",
            "investigation_workbench_not_for_role:coordinator",
        ),
        (
            Role.COMPLIANCE_AUDITOR,
            COUNTY,
            "compliance_review",
            "investigation_workbench_not_for_role:compliance_auditor",
        ),
        (Role.INVESTIGATOR, "another-county-office", "investigation", "out_of_scope"),
        (
            Role.INVESTIGATOR,
            COUNTY,
            "consultation",
            "purpose_not_allowed_for_role:investigator:consultation",
        ),
    ],
)
def test_everyone_else_is_refused_alike_and_the_refusal_stored(
    client: TestClient,
    auth: TokenFactory,
    ordered: str,
    role: Role,
    unit: str,
    purpose: str,
    rule: str,
) -> None:
    answer = refusal_answer(rule)
    for endpoint in ENDPOINTS:
        response = client.get(
            f"/v1/cases/{ordered}/{endpoint}", headers=auth(role, unit, purpose=purpose)
        )
        assert response.status_code == answer.status, response.text
        assert response.json()["type"] == f"urn:casetrail:problem:{answer.code}"
        events = _stored(client, response)
        assert [type(e) for e in events] == [AccessDenied]
        assert events[0].rule == rule
        assert events[0].case_id == UUID(ordered)
        assert events[0].channel == endpoint


BAD_INSTANTS = (
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "9999-12-31T23:59:59+08:00",
    "0001-01-01T00:00:00-08:00",
    "2026-01-01T00:00:00",
    "not-an-instant",
)


def test_as_of_is_bounded_and_carries_its_offset(
    client: TestClient, auth: TokenFactory, ordered: str
) -> None:
    for as_of, endpoint in [(t, e) for t in BAD_INSTANTS for e in ("timeline", "knowledge")]:
        response = client.get(
            f"/v1/cases/{ordered}/{endpoint}", params={"as_of": as_of}, headers=_investigator(auth)
        )
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["as_of"]
        assert as_of not in response.text
        assert _stored(client, response) == []


def test_as_of_leaves_out_what_came_later(
    client: TestClient, auth: TokenFactory, ordered: str
) -> None:
    first = client.get(f"/v1/cases/{ordered}/timeline", headers=_investigator(auth)).json()
    reported_at = first["entries"][0]["at"]
    again = client.get(
        f"/v1/cases/{ordered}/timeline", params={"as_of": reported_at}, headers=_investigator(auth)
    ).json()
    assert [e["kind"] for e in again["entries"]] == ["clue_reported"]
    assert again["as_of"] == datetime.fromisoformat(reported_at).isoformat()
    matrix = client.get(
        f"/v1/cases/{ordered}/knowledge", params={"as_of": reported_at}, headers=_investigator(auth)
    ).json()
    assert {k["how"] for f in matrix["facts"] for k in f["known_by"]} == {"reported"}
