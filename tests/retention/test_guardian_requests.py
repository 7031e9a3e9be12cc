"""A guardian's requests (issue 19, domain/guardian_requests.py): to see, correct or delete a
minor's data, recorded with their handling and outcome.

Over HTTP (SQLite and PostgreSQL for the access request, SQLite for the rest): an access request
answered with the guardian's copy (the fields `domain.access.GUARDIAN_COPY_FIELDS`, nothing
else) and the file's accounting of disclosures, the read recorded with purpose
`guardian_request` and granted only while the request is open; a correction made through the
file's own correction and linked to the version it made; a deletion erasing the file; who may
do what, refusals recorded; bad input a problem naming the field. In the application: a held
erasure recorded as the request's refusal naming the holds (a `CaseTrail` whose `holds_on`
holds the file: the holds of issue 19 are another part's), and the due day from the setting.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain.access import GUARDIAN_COPY_FIELDS, Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.guardian_requests import (
    GuardianRequestClosed,
    GuardianRequests,
    IdentityCheck,
    ReceiveGuardianRequest,
    RequestKind,
)
from domain.identity import make_id_number
from domain.quarters import local_date
from domain.retention import HoldReason
from domain.taxonomy import GuardianRelation, Purpose, Role
from gateway import logs
from gateway.settings import Settings
from projections.readmodels import ReadModels
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
AUDIT = "audit"
COORDINATOR = Actor("coord-1", Role.COORDINATOR, OFFICE, "chengguan-street")


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def synced(client: TestClient) -> ReadModels:
    readmodels: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()
    return readmodels


def new_case(client: TestClient, auth: TokenFactory, seed: int) -> tuple[str, dict[str, Any]]:
    planted = planted_case(VILLAGE, seed=seed)
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    created = client.post("/v1/cases", json=planted.body, headers=reporter)
    assert created.status_code == 201, created.text
    return str(created.json()["id"]), planted.body


def request_body(case_id: str, kind: str) -> dict[str, str]:
    return {
        "kind": kind,
        "case_id": case_id,
        "relation": "mother",
        "identity_checked": "id_card_and_household_register",
    }


# Tests whose subject is no store's behaviour run on SQLite alone (the store's part, the copy,
# the correction and the erasure, run on both).
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    captured = io.StringIO()
    logs.configure("info", stream=captured)
    try:
        yield captured
    finally:
        logs.configure("info")


def test_an_access_request_is_answered_with_the_copy_and_the_accounting(
    client: TestClient, auth: TokenFactory, service_log: io.StringIO
) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    auditor = auth(Role.COMPLIANCE_AUDITOR, AUDIT)
    case_id, body = new_case(client, auth, seed=1901)
    # A disclosure before the request: the accounting lists it.
    assert client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code == 200
    app = application_of(client)

    # No open request: the purpose grants nothing (refused, recorded, answered as not visible).
    as_guardian = {**coordinator, "X-Purpose-Of-Use": "guardian_request"}
    refused = client.get(f"/v1/cases/{case_id}", headers=as_guardian)
    assert refused.status_code == 404, refused.text
    assert app.access_log(UUID(case_id))[-1]["rule"] == "guardian_request_not_open"

    received = client.post(
        "/v1/guardian-requests", json=request_body(case_id, "access"), headers=auditor
    )
    assert received.status_code == 201, received.text
    request = received.json()
    assert request["status"] == "open" and request["overdue"] is False
    assert request["requester"] == {
        "relation": "mother",
        "identity_checked": "id_card_and_household_register",
    }
    assert "第四十五条" in request["basis"]
    received_on = date.fromisoformat(request["received_on"])
    assert date.fromisoformat(request["due_on"]) == received_on + timedelta(days=15)
    listed = client.get("/v1/guardian-requests?status=open", headers=coordinator).json()
    assert [r["id"] for r in listed["requests"]] == [request["id"]]

    # A compliance auditor records requests but never reads the file: refused, recorded.
    not_auditor = client.post(
        f"/v1/guardian-requests/{request['id']}/answer", json={}, headers=auditor
    )
    assert not_auditor.status_code == 403, not_auditor.text
    assert not_auditor.headers["content-type"].startswith("application/problem+json")
    assert any(
        r.command == "answer_guardian_access" for r in app.command_refusals(case_id=UUID(case_id))
    )

    answered = client.post(
        f"/v1/guardian-requests/{request['id']}/answer", json={}, headers=coordinator
    )
    assert answered.status_code == 200, answered.text
    document = answered.json()
    copy = document["copy"]
    # The minor's own data; nothing others said or did about the child, nor the guardians'.
    assert copy["minor"]["name"] == body["minor"]["name"]
    assert copy["minor"]["id_number"] == body["minor"]["id_number"]
    for withheld in (
        "description",
        "issues",
        "consultations",
        "interventions",
        "found_by",
        "guardians",
    ):
        assert withheld not in copy
    assert body["description"] not in answered.text
    assert body["guardians"][0]["phone"] not in answered.text
    # The accounting: the coordinator's consultation read, and this copy itself.
    disclosures = document["accounting"]["disclosures"]
    assert [d["purpose"] for d in disclosures] == ["consultation", "guardian_request"]
    assert disclosures[0]["role"] == "coordinator" and disclosures[0]["unit"] == OFFICE
    # Who at the service: role and unit, not the person's id nor their client.
    assert "user-coordinator" not in str(disclosures) and "client" not in disclosures[0]
    assert document["accounting"]["count"] == 2
    # Recorded first, with its purpose and exactly the copy's fields.
    accessed = [
        e
        for e in app.access_records(UUID(case_id))
        if e.purpose == "guardian_request" and e.granted
    ]
    assert {f for r in accessed for f in r.fields} == set(GUARDIAN_COPY_FIELDS)
    outcome = document["request"]["outcome"]
    assert outcome["outcome"] == "disclosed"
    assert outcome["details"]["disclosures"] == 2
    assert set(outcome["details"]["fields"]) == set(GUARDIAN_COPY_FIELDS)
    assert outcome["details"]["request_id"] == accessed[0].request_id

    # One outcome per request; and the purpose grants nothing once it is closed.
    again = client.post(
        f"/v1/guardian-requests/{request['id']}/answer", json={}, headers=coordinator
    )
    assert again.status_code == 409, again.text
    assert client.get(f"/v1/cases/{case_id}", headers=as_guardian).status_code == 404
    assert client.get("/v1/guardian-requests?status=open", headers=auditor).json()["count"] == 0

    # The service's log holds ids and actions only.
    logged = service_log.getvalue()
    assert "guardian_request_answered" in logged
    assert body["minor"]["name"] not in logged and body["minor"]["id_number"] not in logged


@SQLITE_ONLY
def test_the_request_is_stored_under_a_data_key_of_its_own(
    client: TestClient, auth: TokenFactory, settings: Settings
) -> None:
    case_id, _ = new_case(client, auth, seed=1902)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    received = client.post(
        "/v1/guardian-requests", json=request_body(case_id, "access"), headers=coordinator
    )
    assert received.status_code == 201, received.text
    db = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    try:
        scopes = dict(db.execute("SELECT stream_id, scope FROM data_keys").fetchall())
        state = b"".join(r[0] for r in db.execute("SELECT state FROM stored_events"))
    finally:
        db.close()
    assert scopes[received.json()["id"]] == "request"
    assert scopes[case_id] == "case"
    assert b"id_card_and_household_register" not in state


@SQLITE_ONLY
def test_who_may_record_a_request(client: TestClient, auth: TokenFactory) -> None:
    case_id, _ = new_case(client, auth, seed=1903)
    app = application_of(client)
    body = request_body(case_id, "deletion")
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    member = auth(Role.UNIT_MEMBER, POLICE, purpose="intervention")
    elsewhere = auth(Role.COORDINATOR, "xiaoxi-governance-office", street="xiaoxi-street")
    assert client.post("/v1/guardian-requests", json=body, headers=reporter).status_code == 403
    assert client.post("/v1/guardian-requests", json=body, headers=member).status_code == 404
    assert client.post("/v1/guardian-requests", json=body, headers=elsewhere).status_code == 404
    rules = sorted(
        r.rule
        for r in app.command_refusals(case_id=UUID(case_id))
        if r.command == "receive_guardian_request"
    )
    assert rules == ["not_permitted", "not_visible", "not_visible"]
    # A request nobody else may see answers like a missing one.
    coordinator = auth(Role.COORDINATOR, OFFICE)
    made = client.post("/v1/guardian-requests", json=body, headers=coordinator).json()
    assert client.get(f"/v1/guardian-requests/{made['id']}", headers=elsewhere).status_code == 404
    assert client.get("/v1/guardian-requests", headers=elsewhere).json()["count"] == 0


BAD_BODIES: list[tuple[dict[str, str], str]] = [
    ({"kind": "forget"}, "kind"),
    ({"relation": "neighbour"}, "relation"),
    ({"identity_checked": "trust_me"}, "identity_checked"),
    ({"case_id": "not-a-uuid"}, "case_id"),
    ({"name": "张三"}, "body"),  # an unknown field: named as the body's, never echoed
]


@SQLITE_ONLY
def test_bad_requests_are_problems_naming_the_field(client: TestClient, auth: TokenFactory) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE)
    for body, field in BAD_BODIES:
        given = {**request_body("00000000-0000-4000-8000-000000000000", "access"), **body}
        answer = client.post("/v1/guardian-requests", json=given, headers=coordinator)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert field in answer.text
        assert "张三" not in answer.text and "trust_me" not in answer.text
    listed = client.get("/v1/guardian-requests?status=maybe", headers=coordinator)
    assert listed.status_code == 422 and "status" in listed.text
    assert client.get("/v1/guardian-requests", headers=coordinator).json()["count"] == 0


def test_a_correction_request_goes_through_the_files_correction(
    client: TestClient, auth: TokenFactory
) -> None:
    case_id, body = new_case(client, auth, seed=1904)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    made = client.post(
        "/v1/guardian-requests", json=request_body(case_id, "correction"), headers=coordinator
    ).json()
    url = f"/v1/guardian-requests/{made['id']}/answer"
    missing = client.post(url, json={}, headers=coordinator)
    assert missing.status_code == 422 and "correction" in missing.text
    nothing = client.post(
        url,
        json={"correction": {"minor": {"school": body["minor"]["school"]}, "reason": "监护人申请"}},
        headers=coordinator,
    )
    assert nothing.status_code == 422, nothing.text  # the file's own check: nothing to correct
    assert (
        client.get(f"/v1/guardian-requests/{made['id']}", headers=coordinator).json()["status"]
        == "open"
    )

    minor = body["minor"]
    right = make_id_number(
        minor["id_number"][:6],
        date.fromisoformat(minor["date_of_birth"]),
        int(minor["id_number"][14:17]) + 2 if int(minor["id_number"][14:17]) < 990 else 10,
    )
    done = client.post(
        url,
        json={"correction": {"minor": {"id_number": right}, "reason": "监护人申请更正身份证号"}},
        headers=coordinator,
    )
    assert done.status_code == 200, done.text
    outcome = done.json()["outcome"]
    assert outcome["outcome"] == "corrected"
    assert outcome["details"]["fields"] == ["minor.id_number"]
    stored: object = application_of(client).repository.get(UUID(case_id))
    assert isinstance(stored, Case)
    assert stored.minor["id_number"] == right
    assert outcome["details"]["case_version"] == stored.version
    assert stored.corrections[-1]["reason"] == "监护人申请更正身份证号"


def test_a_deletion_request_erases_the_file(client: TestClient, auth: TokenFactory) -> None:
    case_id, body = new_case(client, auth, seed=1905)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    auditor = auth(Role.COMPLIANCE_AUDITOR, AUDIT)
    made = client.post(
        "/v1/guardian-requests", json=request_body(case_id, "deletion"), headers=coordinator
    ).json()
    # An access answer is not a deletion's.
    refused = client.post(
        f"/v1/guardian-requests/{made['id']}/refuse",
        json={"ground": "maybe", "reason": "x"},
        headers=auditor,
    )
    assert refused.status_code == 422 and "ground" in refused.text
    done = client.post(f"/v1/guardian-requests/{made['id']}/answer", json={}, headers=auditor)
    assert done.status_code == 200, done.text
    outcome = done.json()["outcome"]
    assert outcome["outcome"] == "erased"
    app = application_of(client)
    erasure = app.erasure_of(UUID(case_id))
    assert erasure is not None
    assert erasure.rule == "guardian_request" and "第四十七条" in erasure.basis
    assert erasure.due_on is None and outcome["details"]["key_id"] == erasure.key_id
    assert not app.data_keyring.has_key(UUID(case_id))
    # The file is gone; the request still says what happened to it.
    assert client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code in (404, 410)
    shown = client.get(f"/v1/guardian-requests/{made['id']}", headers=coordinator)
    assert shown.status_code == 200 and shown.json()["outcome"]["outcome"] == "erased"
    assert body["minor"]["name"] not in shown.text


@SQLITE_ONLY
def test_a_request_may_be_refused_with_a_ground(client: TestClient, auth: TokenFactory) -> None:
    case_id, _ = new_case(client, auth, seed=1906)
    coordinator = auth(Role.COORDINATOR, OFFICE)
    made = client.post(
        "/v1/guardian-requests", json=request_body(case_id, "access"), headers=coordinator
    ).json()
    refused = client.post(
        f"/v1/guardian-requests/{made['id']}/refuse",
        json={"ground": "identity_not_verified", "reason": "未能出示户口簿"},
        headers=coordinator,
    )
    assert refused.status_code == 200, refused.text
    outcome = refused.json()["outcome"]
    assert (outcome["outcome"], outcome["ground"]) == ("refused", "identity_not_verified")
    assert (
        client.post(
            f"/v1/guardian-requests/{made['id']}/answer", json={}, headers=coordinator
        ).status_code
        == 409
    )


# --- in the application -------------------------------------------------------------------


class HeldTrail(CaseTrail):
    """A store where every file is held by an open investigation (the holds of issue 19 are
    another part's; only `holds_on` is replaced)."""

    def holds_on(self, stream_id: UUID) -> list[dict[str, Any]]:
        return [{"reason": HoldReason.INVESTIGATION, "investigation_id": "i-1"}]


@pytest.fixture
def sqlite_settings(home: Any, tmp_path: Any) -> Settings:
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}",
            "CASETRAIL_GUARDIAN_REQUEST_DAYS": "3",
        }
    )


def test_a_held_erasure_is_recorded_as_the_requests_refusal(sqlite_settings: Settings) -> None:
    app = HeldTrail(env=sqlite_settings.application_env())
    try:
        planted = planted_case(VILLAGE, seed=1907)
        case_id = app.report_clue(cmd.ReportClue.model_validate(planted.body), COORDINATOR)
        requests = GuardianRequests(app)
        request = requests.receive(
            ReceiveGuardianRequest(
                kind=RequestKind.DELETION,
                case_id=case_id,
                relation=GuardianRelation.FATHER,
                identity_checked=IdentityCheck.GUARDIANSHIP_DOCUMENT,
            ),
            COORDINATOR,
        )
        # The due day follows the setting (3 days here).
        today = local_date(datetime.now(UTC))
        assert request.due_on == (today + timedelta(days=3)).isoformat()
        assert request.overdue(today + timedelta(days=4)) and not request.overdue(today)

        answered = requests.answer_deletion(request.id, COORDINATOR)
        assert answered.outcome is not None
        assert answered.outcome["outcome"] == "refused"
        assert answered.outcome["ground"] == "held"
        assert answered.outcome["holds"] == [{"reason": "investigation"}]
        # Nothing erased; the refusal is stored, and the request is closed.
        assert app.erasure_of(case_id) is None and app.data_keyring.has_key(case_id)
        stored = requests.get(request.id)
        assert stored.outcome == answered.outcome
        with pytest.raises(GuardianRequestClosed):
            requests.answer_deletion(request.id, COORDINATOR)
        # The file still reads, for its street's coordinator.
        shown = app.read_case(case_id, COORDINATOR, Purpose.CONSULTATION, "r-held")
        assert shown["minor"]["name"] == planted.name
    finally:
        app.close()


def test_a_guardian_copy_read_is_granted_only_while_an_access_request_is_open(
    sqlite_settings: Settings,
) -> None:
    app = CaseTrail(env=sqlite_settings.application_env())
    try:
        planted = planted_case(VILLAGE, seed=1908)
        case_id = app.report_clue(cmd.ReportClue.model_validate(planted.body), COORDINATOR)
        requests = GuardianRequests(app)
        # A deletion request opens no copy.
        requests.receive(
            ReceiveGuardianRequest.model_validate(request_body(str(case_id), "deletion")),
            COORDINATOR,
        )
        with pytest.raises(Exception, match="guardian_request_not_open"):
            app.read_case(case_id, COORDINATOR, Purpose.GUARDIAN_REQUEST, "r-1")
        requests.receive(
            ReceiveGuardianRequest.model_validate(request_body(str(case_id), "access")),
            COORDINATOR,
        )
        shown = app.read_case(case_id, COORDINATOR, Purpose.GUARDIAN_REQUEST, "r-2")
        assert set(shown) <= GUARDIAN_COPY_FIELDS | {"minor"}
        assert "description" not in shown and shown["minor"]["name"] == planted.name
        last = app.access_records(case_id)[-1]
        assert (last.purpose, last.request_id, last.granted) == ("guardian_request", "r-2", True)
        assert set(last.fields) <= GUARDIAN_COPY_FIELDS
    finally:
        app.close()
