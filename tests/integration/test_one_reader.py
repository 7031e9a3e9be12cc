"""One reader, one refusal: every channel that discloses case data (case read, access log,
evidence bundle, ledger page, lookup by GET and by POST, export, worklists, report) stores a
refused attempt as `AccessDenied` with the case read's rule names, before it answers, and
answers it exactly as a refused case read: the same problem (type, title, status, detail,
errors) and, for a "no such case", no sooner than the refusal floor; a refusal the store cannot
record is answered 503, never as a refusal. Through the real ASGI app, on SQLite and PostgreSQL
(`gateway/http/reader.py`).

A refusal that names no case (a ledger, a lookup...) is stored with the nil UUID as its case id
(`domain.application.NO_CASE`): the event keeps the stored shape of every other `AccessDenied`
and appears in no case's access log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from domain.access import NO_CASE, AccessDenied, CaseAccessed
from domain.application import ACCESS_TOPICS, CaseTrail
from domain.taxonomy import Role
from gateway.cli.main import DEFAULT_STREET
from gateway.http.app import create_app
from gateway.http.reader import refusal_answer
from gateway.settings import Settings
from tests.conftest import PG_DSN, TokenFactory
from tests.integration.planted import planted_case
from tests.people import fixture_user, register

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "county-police"
FAR = "far-street"

Request = Callable[[TestClient, dict[str, str], str], httpx.Response]


def application_of(client: TestClient) -> CaseTrail:
    app: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return app


def stored(client: TestClient, response: httpx.Response) -> list[CaseAccessed | AccessDenied]:
    """The access events stored for this request (by its request id), in store order."""
    application = application_of(client)
    request_id = response.headers["X-Request-ID"]
    found: list[CaseAccessed | AccessDenied] = []
    for notification in application.notifications(topics=ACCESS_TOPICS):
        event = application.mapper.to_domain_event(notification)
        if isinstance(event, CaseAccessed | AccessDenied) and event.request_id == request_id:
            found.append(event)
    return found


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The answer minus what differs per request (its id, the route's template)."""
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return {k: v for k, v in body.items() if k not in ("request_id", "instance")}


# --- the channels: each a request for a case id (ignored by those that name no case) -------------

CASE_CHANNELS: dict[str, Request] = {
    "case read": lambda c, h, case: c.get(f"/v1/cases/{case}", headers=h),
    "access log": lambda c, h, case: c.get(f"/v1/cases/{case}/accesses", headers=h),
    "bundle": lambda c, h, case: c.get(f"/v1/evidence/cases/{case}/bundle", headers=h),
}
LEDGER_CHANNELS: dict[str, Request] = {
    "ledger page": lambda c, h, _: c.get("/v1/ledger", headers=h),
    "lookup (GET)": lambda c, h, _: c.post("/v1/cases/search", json={"name": "张三"}, headers=h),
    "lookup (POST)": lambda c, h, _: c.post("/v1/cases/search", json={"name": "张三"}, headers=h),
    "export": lambda c, h, _: c.get("/v1/ledger/export", params={"format": "json"}, headers=h),
    "consultations worklist": lambda c, h, _: c.get("/v1/worklists/consultations", headers=h),
    "assignments worklist": lambda c, h, _: c.get("/v1/worklists/assignments", headers=h),
    "updates worklist": lambda c, h, _: c.get("/v1/worklists/quarterly-updates", headers=h),
    "quarterly report": lambda c, h, _: c.get("/v1/reports/quarterly", headers=h),
}
EVERY_CHANNEL = {**CASE_CHANNELS, **LEDGER_CHANNELS}


@pytest.fixture
def case_id(client: TestClient, auth: TokenFactory) -> str:
    created = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    )
    assert created.status_code == 201, created.text
    found: str = created.json()["id"]
    return found


def assert_refused(
    client: TestClient,
    response: httpx.Response,
    *,
    rule: str,
    case_id: UUID,
    answer: dict[str, Any],
) -> None:
    """Stored as one `AccessDenied` with `rule` (and nothing granted), answered as `answer`."""
    assert problem_of(response) == answer, response.text
    events = stored(client, response)
    assert [type(e) for e in events] == [AccessDenied], events
    (event,) = events
    assert event.rule == rule
    assert event.case_id == case_id


@pytest.mark.parametrize("channel", sorted(EVERY_CHANNEL))
def test_a_purpose_the_role_may_not_declare_is_refused_alike_everywhere(
    client: TestClient, auth: TokenFactory, case_id: str, channel: str
) -> None:
    headers = auth(Role.UNIT_MEMBER, POLICE, purpose="consultation")
    expected = problem_of(CASE_CHANNELS["case read"](client, headers, case_id))
    assert expected["status"] == 403
    assert expected["type"] == "urn:casetrail:problem:purpose-not-allowed"
    assert expected["errors"] == [
        {"field": "X-Purpose-Of-Use", "message": "not allowed for your role"}
    ]
    response = EVERY_CHANNEL[channel](client, headers, case_id)
    assert response.status_code == 403
    assert_refused(
        client,
        response,
        rule="purpose_not_allowed_for_role:unit_member:consultation",
        case_id=UUID(case_id) if channel in CASE_CHANNELS else NO_CASE,
        answer=expected,
    )


@pytest.mark.parametrize("channel", sorted(CASE_CHANNELS))
@pytest.mark.parametrize(
    ("role", "unit", "street", "purpose"),
    [
        (Role.COORDINATOR, "far-office", FAR, "consultation"),  # another street's coordinator
        (Role.INVESTIGATOR, "county-inspection", None, "investigation"),  # without an order
    ],
)
def test_a_case_not_visible_is_refused_alike_everywhere_after_the_floor(
    client: TestClient,
    auth: TokenFactory,
    settings: Settings,
    case_id: str,
    channel: str,
    role: Role,
    unit: str,
    street: str | None,
    purpose: str,
) -> None:
    headers = auth(role, unit, purpose=purpose, **({"street": street} if street else {}))
    expected = problem_of(CASE_CHANNELS["case read"](client, headers, case_id))
    assert expected == {
        "type": "urn:casetrail:problem:case-not-found",
        "title": "No such case is visible to you",
        "status": 404,
        "detail": "no case with this id is visible to you; the attempt was recorded",
    }
    floor = settings.refusal_floor_ms / 1000
    for target, rule in ((case_id, "out_of_scope"), (str(uuid4()), "no_such_case")):
        started = time.perf_counter()
        response = CASE_CHANNELS[channel](client, headers, target)
        elapsed = time.perf_counter() - started
        assert response.status_code == 404
        assert elapsed >= floor, (channel, elapsed)
        assert_refused(client, response, rule=rule, case_id=UUID(target), answer=expected)


def test_a_bundle_for_a_role_that_may_read_the_case_is_refused_as_a_case_not_visible(
    client: TestClient, auth: TokenFactory, settings: Settings, case_id: str
) -> None:
    """The reporter may read the file, the supervisor too, the auditor its access log: none of
    them may have its evidence bundle; each is answered as a case that is not visible."""
    not_visible = problem_of(
        client.get(
            f"/v1/cases/{uuid4()}", headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up")
        )
    )
    for role, unit, purpose in (
        (Role.REPORTER, VILLAGE, "follow_up"),
        (Role.SUPERVISOR, OFFICE, "consultation"),
        (Role.COMPLIANCE_AUDITOR, "county-compliance", "compliance_review"),
    ):
        headers = auth(role, unit, purpose=purpose)
        started = time.perf_counter()
        response = CASE_CHANNELS["bundle"](client, headers, case_id)
        assert time.perf_counter() - started >= settings.refusal_floor_ms / 1000
        assert response.status_code == 404
        assert_refused(
            client,
            response,
            rule=f"evidence_bundle_not_for_role:{role}",
            case_id=UUID(case_id),
            answer=not_visible,
        )


@pytest.mark.parametrize("channel", sorted(LEDGER_CHANNELS))
@pytest.mark.parametrize(
    ("role", "purpose"),
    [(Role.INVESTIGATOR, "investigation"), (Role.COMPLIANCE_AUDITOR, "compliance_review")],
)
def test_a_role_without_ledgers_is_refused_and_the_refusal_recorded(
    client: TestClient, auth: TokenFactory, channel: str, role: Role, purpose: str
) -> None:
    response = LEDGER_CHANNELS[channel](client, auth(role, "county", purpose=purpose), "")
    assert response.status_code == 403
    expected = refusal_answer(f"ledger_not_for_role:{role}")
    assert_refused(
        client,
        response,
        rule=f"ledger_not_for_role:{role}",
        case_id=NO_CASE,
        answer={
            "type": "urn:casetrail:problem:not-permitted",
            "title": expected.title,
            "status": 403,
            "detail": expected.detail,
        },
    )
    assert "the refusal was recorded" in response.json()["detail"]


def test_an_identity_export_or_a_report_beyond_the_role_is_refused_and_recorded(
    client: TestClient, auth: TokenFactory
) -> None:
    supervisor = auth(Role.SUPERVISOR, OFFICE, purpose="consultation")
    named = client.get("/v1/ledger/export", params={"identity": "true"}, headers=supervisor)
    assert named.status_code == 403
    assert named.json()["type"] == "urn:casetrail:problem:not-permitted"
    assert [e["field"] for e in named.json()["errors"]] == ["identity"]
    assert [(type(e), e.rule, e.case_id) for e in stored(client, named)] == [
        (AccessDenied, "identity_export_not_for_role:supervisor", NO_CASE)
    ]
    report = client.get(
        "/v1/reports/quarterly", headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    )
    assert report.status_code == 403
    assert report.json()["type"] == "urn:casetrail:problem:not-permitted"
    assert [(type(e), e.rule, e.case_id) for e in stored(client, report)] == [
        (AccessDenied, "report_not_for_role:reporter", NO_CASE)
    ]


def test_a_refusal_naming_no_case_keeps_the_stored_shape_and_no_case_lists_it(
    client: TestClient, auth: TokenFactory, case_id: str
) -> None:
    """The same event class with the same fields as a case read's refusal: whatever reads
    `AccessDenied` (the relay's compliance alerts, bundles, access logs, an older service)
    reads it; its case id is the nil UUID, which no case has."""
    ledger = client.get(
        "/v1/ledger", headers=auth(Role.INVESTIGATOR, "county", purpose="investigation")
    )
    case_read = client.get(
        f"/v1/cases/{case_id}", headers=auth(Role.INVESTIGATOR, "county", purpose="investigation")
    )
    (ledger_refusal,) = stored(client, ledger)
    (case_refusal,) = stored(client, case_read)
    assert type(ledger_refusal) is type(case_refusal) is AccessDenied
    assert set(vars(ledger_refusal)) == set(vars(case_refusal))
    assert isinstance(ledger_refusal.case_id, UUID) and ledger_refusal.case_id.int == 0
    application = application_of(client)
    assert [e.request_id for e in application.access_events(UUID(case_id))] == [
        case_read.headers["X-Request-ID"]
    ]
    assert ledger.headers["X-Request-ID"] in {
        e.request_id for e in application.access_events(NO_CASE)
    }


def test_grants_are_unchanged_and_recorded_before_the_answer(
    client: TestClient, auth: TokenFactory, case_id: str
) -> None:
    """The control: the same channels, for those they are for, answer 200 with their access
    events stored (a coordinator's bundle: one read of the case's content)."""
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    bundle = CASE_CHANNELS["bundle"](client, coordinator, case_id)
    assert bundle.status_code == 200, bundle.text
    assert [(type(e), e.rule) for e in stored(client, bundle)] == [
        (CaseAccessed, "coordinator_same_street")
    ]
    read = CASE_CHANNELS["case read"](
        client, auth(Role.REPORTER, VILLAGE, purpose="follow_up"), case_id
    )
    assert read.status_code == 200
    assert [(type(e), e.rule) for e in stored(client, read)] == [
        (CaseAccessed, "reporter_own_unit")
    ]
    for channel in sorted(LEDGER_CHANNELS):
        response = LEDGER_CHANNELS[channel](client, coordinator, case_id)
        assert response.status_code == 200, (channel, response.text)
        assert not [e for e in stored(client, response) if isinstance(e, AccessDenied)]


def test_a_refusal_that_cannot_be_stored_is_answered_503_on_every_channel(
    pg_schema: str, home: Path, auth: TokenFactory
) -> None:
    """Refused, and the refusal not stored: the answer is the store's 503, never the refusal
    (an unrecorded refusal would be an attempt nobody can reconstruct)."""
    settings = Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": f"{PG_DSN}?schema={pg_schema}"}
    )
    # This store is the test's own: its users are registered here, before it refuses writes.
    for role, unit in ((Role.REPORTER, VILLAGE), (Role.UNIT_MEMBER, POLICE)):
        register(settings, fixture_user(role, unit), role, unit, DEFAULT_STREET)
    investigator = fixture_user(Role.INVESTIGATOR, "county")
    register(settings, investigator, Role.INVESTIGATOR, "county", DEFAULT_STREET)
    wrong_purpose = auth(Role.UNIT_MEMBER, POLICE, purpose="consultation")
    no_ledger = auth(Role.INVESTIGATOR, "county", purpose="investigation")
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        created = client.post(
            "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
        )
        case_id = created.json()["id"]
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(
                f"CREATE FUNCTION {pg_schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'store is read-only'; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON {pg_schema}.casetrail_events "
                f"FOR EACH ROW EXECUTE FUNCTION {pg_schema}.refuse()"
            )
        for channel, headers in (
            *((name, wrong_purpose) for name in sorted(EVERY_CHANNEL)),
            *((name, no_ledger) for name in sorted(LEDGER_CHANNELS)),
            ("bundle", reporter),
            ("case read", no_ledger),
        ):
            response = EVERY_CHANNEL[channel](client, headers, case_id)
            assert response.status_code == 503, (channel, response.text)
            assert response.json()["type"] == "urn:casetrail:problem:store-unavailable"
