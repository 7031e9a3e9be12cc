"""`GET /v1/investigations/{id}/report` over the real ASGI app: an investigator the
investigation names, under an order in force, gets the signed report in each form; the read of
every case file is stored first (channel `report`, content and access log), and the report is
recorded on the investigation as issued with the SHA-256 of the very file served. Anyone else
is refused, the refusal stored, answered as a case read's."""

from __future__ import annotations

import hashlib
import json
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient

from domain.access import NO_CASE, AccessDenied, CaseAccessed
from domain.application import CaseTrail
from domain.taxonomy import Role
from gateway import keyring
from gateway.reports.signing import verify_report
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.reports.scenario import investigated_case, order_for

UNIT = "county-inspection"
INVESTIGATOR = f"user-{Role.INVESTIGATOR}-{UNIT}"


def _application(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def _public_key(settings: Settings) -> Ed25519PublicKey:
    return keyring.load_public_key(settings.keys_dir / keyring.SERVICE_PUB, "service key")


def _report_events(application: CaseTrail, request_id: str) -> list[CaseAccessed | AccessDenied]:
    found = []
    for notification in application.notifications():
        event = application.mapper.to_domain_event(notification)
        if isinstance(event, CaseAccessed | AccessDenied) and event.request_id == request_id:
            found.append(event)
    return found


@pytest.mark.parametrize("form", ["html", "json"])
def test_the_investigator_gets_the_signed_report_and_the_read_is_recorded(
    client: TestClient, auth: TokenFactory, settings: Settings, form: str
) -> None:
    application = _application(client)
    scenario = investigated_case(application, INVESTIGATOR)
    order_for(application, scenario.case_id, INVESTIGATOR)
    request_id = uuid4().hex
    answer = client.get(
        f"/v1/investigations/{scenario.investigation_id}/report",
        params={"format": form},
        headers={
            **auth(Role.INVESTIGATOR, UNIT, purpose="investigation"),
            "X-Request-Id": request_id,
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(
        "text/html" if form == "html" else "application/json"
    )
    assert answer.headers["cache-control"] == "no-store"
    check = verify_report(answer.content, _public_key(settings))
    assert check.intact, check.problem
    if form == "json":
        report = json.loads(answer.content)["report"]
        assert report["integrity"]["status"] == "intact"
        assert report["generated_by"]["user"] == INVESTIGATOR

    events = _report_events(application, request_id)
    assert len(events) == 2  # the case's content and its access log, in one write
    granted = [e for e in events if isinstance(e, CaseAccessed)]
    assert granted == events
    assert {e.case_id for e in granted} == {scenario.case_id}
    assert {str(e.channel) for e in granted} == {"report"}
    assert {tuple(e.fields) == ("access_log",) for e in granted} == {True, False}

    issued = application.investigation(scenario.investigation_id).reports
    assert [(r["format"], r["sha256"]) for r in issued] == [
        (form, hashlib.sha256(answer.content).hexdigest())
    ]


def test_an_investigator_without_an_order_is_refused_and_it_is_recorded(
    client: TestClient, auth: TokenFactory
) -> None:
    application = _application(client)
    scenario = investigated_case(application, INVESTIGATOR)  # named, but no order in force
    request_id = uuid4().hex
    answer = client.get(
        f"/v1/investigations/{scenario.investigation_id}/report",
        headers={
            **auth(Role.INVESTIGATOR, UNIT, purpose="investigation"),
            "X-Request-Id": request_id,
        },
    )
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    (event,) = _report_events(application, request_id)
    assert isinstance(event, AccessDenied)
    assert event.case_id == scenario.case_id
    assert str(event.channel) == "report"
    assert application.investigation(scenario.investigation_id).reports == []


@pytest.mark.parametrize(
    ("role", "unit", "purpose", "rule"),
    [
        (Role.INVESTIGATOR, "other-inspection", "investigation", "investigation_report_not_for"),
        (Role.COORDINATOR, "chengguan-office", "consultation", "investigation_report_not_for"),
    ],
)
def test_someone_the_investigation_does_not_name_is_refused(
    client: TestClient,
    auth: TokenFactory,
    role: Role,
    unit: str,
    purpose: str,
    rule: str,
) -> None:
    application = _application(client)
    scenario = investigated_case(application, INVESTIGATOR)
    order_for(application, scenario.case_id, INVESTIGATOR)
    request_id = uuid4().hex
    answer = client.get(
        f"/v1/investigations/{scenario.investigation_id}/report",
        headers={**auth(role, unit, purpose=purpose), "X-Request-Id": request_id},
    )
    assert answer.status_code == 404, answer.text
    (event,) = _report_events(application, request_id)
    assert isinstance(event, AccessDenied)
    assert event.rule == f"{rule}:{role}"
    assert event.case_id == NO_CASE
    assert scenario.investigation_id.hex not in answer.text


def test_an_unknown_investigation_is_refused_as_a_case_read(
    client: TestClient, auth: TokenFactory
) -> None:
    request_id = uuid4().hex
    answer = client.get(
        f"/v1/investigations/{UUID(int=7)}/report",
        headers={
            **auth(Role.INVESTIGATOR, UNIT, purpose="investigation"),
            "X-Request-Id": request_id,
        },
    )
    assert answer.status_code == 404
    (event,) = _report_events(_application(client), request_id)
    assert isinstance(event, AccessDenied)
    assert event.rule == "no_such_investigation"


def test_a_bad_format_names_the_field_and_writes_nothing(
    client: TestClient, auth: TokenFactory
) -> None:
    application = _application(client)
    headers = auth(Role.INVESTIGATOR, UNIT, purpose="investigation")  # registers: an event
    before = application.recorder.max_notification_id()
    answer = client.get(
        f"/v1/investigations/{UUID(int=7)}/report", params={"format": "<docx>"}, headers=headers
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == ["format"]
    assert "<docx>" not in answer.text
    assert application.recorder.max_notification_id() == before
