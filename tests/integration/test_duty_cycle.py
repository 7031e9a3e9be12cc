"""The units' duty cycle over HTTP (issue 14), on the real ASGI app and store (SQLite; the main
flow on PostgreSQL too).

- An unregistered unit is refused: 422 problem+json `unit-not-registered` naming `unit`, saying
  how to register it, never quoting the code; nothing is stored.
- A person of the assigned unit signs for the task (the stored event names them), declines it
  with a reason, or reports its result; each refusal answers its rule's code, changes nothing
  and is recorded as `CommandRefused` (issue 15).
- Bad bodies are 422 naming the field, nothing stored, nothing echoed.
- `GET /v1/inbox`: the unit's assignments with their states, no case content, no access
  event stored; other roles are refused (stored `AccessDenied`).
- The worklists and the ledger carry the new states.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain.access import NO_CASE, AccessDenied, CaseAccessed
from domain.application import CaseTrail
from domain.case import Case
from domain.notices import notice_published, notice_undeliverable
from domain.taxonomy import Role
from projections.ledger.quarters import today as local_today
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
SCHOOL = "chengguan-school-district-office"
TASK = "到校了解欺凌情况并约谈相关学生家长。"
REASON = "该事项属学校保护职责,建议交学区办处理。"


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def position(client: TestClient) -> int:
    return int(application_of(client).recorder.max_notification_id() or 0)


def case_state(client: TestClient, case_id: str) -> Case:
    found: object = application_of(client).repository.get(UUID(case_id))
    assert isinstance(found, Case)
    return found


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:casetrail:problem:{code}", body
    return body


class Flow:
    """One case reported and consulted, units registered, tokens for each role."""

    def __init__(self, client: TestClient, auth: TokenFactory) -> None:
        self.client = client
        self.coordinator = auth(Role.COORDINATOR, OFFICE)
        self.police = auth(Role.UNIT_MEMBER, POLICE)
        self.police_reader = auth(Role.UNIT_MEMBER, POLICE, purpose="intervention")
        self.school = auth(Role.UNIT_MEMBER, SCHOOL)
        self.planted = planted_case()
        reporter = auth(Role.REPORTER, VILLAGE)
        created = client.post("/v1/cases", json=self.planted.body, headers=reporter)
        assert created.status_code == 201, created.text
        self.case_id = str(created.json()["id"])
        self.base = f"/v1/cases/{self.case_id}"

    def assign(self, unit: str = POLICE, function: str = "judicial", days: int = 7) -> str:
        # Days counted from the local day (Asia/Shanghai), the one states are judged on.
        due = (local_today() + timedelta(days=days)).isoformat()
        body = {"unit": unit, "function": function, "task": TASK, "due_on": due}
        answer = self.client.post(f"{self.base}/assignments", json=body, headers=self.coordinator)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["assignment_id"])

    def post(self, aid: str, step: str, headers: dict[str, str], body: Any = None) -> Any:
        path = f"{self.base}/assignments/{aid}/{step}"
        return self.client.post(path, json=body, headers=headers)


def result_body(**overrides: Any) -> dict[str, Any]:
    return {
        "measures": ["home_visit", "guidance_education"],
        "outcome": "已约谈家长,学生情况稳定。",
        "recommendation": "close",
    } | overrides


@pytest.fixture
def flow(client: TestClient, auth: TokenFactory) -> Flow:
    register_units(application_of(client), POLICE, SCHOOL)
    return Flow(client, auth)


# The other tests run on SQLite only (the store's part is the same): the suite stays fast.
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


# --- no silent drops -------------------------------------------------------------------------


@SQLITE_ONLY
def test_an_unregistered_unit_is_refused_with_how_to_register_it_and_nothing_is_stored(
    client: TestClient, auth: TokenFactory
) -> None:
    flow = Flow(client, auth)  # nothing registered
    code = "chengguan-unheard-of-unit"
    before, version = position(client), case_state(client, flow.case_id).version
    due = (local_today() + timedelta(days=3)).isoformat()
    response = client.post(
        f"{flow.base}/assignments",
        json={"unit": code, "function": "judicial", "task": TASK, "due_on": due},
        headers=flow.coordinator,
    )
    body = problem(response, 422, "unit-not-registered")
    assert [e["field"] for e in body["errors"]] == ["unit"]
    assert "casetrail unit add" in body["detail"]
    assert code not in response.text and TASK not in response.text
    assert position(client) == before
    assert case_state(client, flow.case_id).version == version
    # Registered, the same command is taken.
    register_units(application_of(client), code)
    again = client.post(
        f"{flow.base}/assignments",
        json={"unit": code, "function": "judicial", "task": TASK, "due_on": due},
        headers=flow.coordinator,
    )
    assert again.status_code == 201, again.text


# --- signing for, declining, the result ------------------------------------------------------


def _main_flow(flow: Flow) -> None:
    client = flow.client
    aid = flow.assign()
    declined = flow.assign(POLICE, "family")
    still_open = flow.assign(POLICE, "school")  # the unit keeps the case in sight meanwhile
    signed = flow.post(aid, "acknowledgement", flow.police)
    assert signed.status_code == 200, signed.text
    assert signed.json() == {"id": flow.case_id}
    record = case_state(client, flow.case_id).assignments[aid]
    assert record["signed_for"]["user"] == f"user-{Role.UNIT_MEMBER}-{POLICE}"
    assert record["signed_for"]["unit"] == POLICE
    assert record["received_at"] is None
    problem(flow.post(aid, "acknowledgement", flow.police), 409, "assignment-already-acknowledged")
    problem(flow.post(aid, "decline", flow.police, {"reason": REASON}), 409,
            "assignment-already-acknowledged")  # fmt: skip
    reported = flow.post(aid, "result", flow.police, result_body(recommendation="continue"))
    assert reported.status_code == 200, reported.text
    record = case_state(client, flow.case_id).assignments[aid]
    assert record["ended"]["outcome"] == "result_reported"
    assert record["result"]["recommendation"] == "continue"
    assert record["result"]["measures"] == ["home_visit", "guidance_education"]
    problem(flow.post(aid, "result", flow.police, result_body()), 409, "assignment-ended")

    # Declined: it ends, and nothing can follow.
    answer = flow.post(declined, "decline", flow.police, {"reason": REASON})
    assert answer.status_code == 200, answer.text
    record = case_state(client, flow.case_id).assignments[declined]
    assert record["declined"]["reason"] == REASON
    assert record["ended"]["outcome"] == "declined"
    problem(flow.post(declined, "acknowledgement", flow.police), 409, "assignment-ended")
    problem(flow.post(declined, "result", flow.police, result_body()), 409, "assignment-ended")

    # Once the unit holds no open assignment on the case it may act on none (as for every
    # command of an assigned unit; it still reads the case for the grace period).
    assert flow.post(still_open, "decline", flow.police, {"reason": REASON}).status_code == 200
    problem(flow.post(still_open, "acknowledgement", flow.police), 403, "not-permitted")


def test_sign_for_report_the_result_and_decline(flow: Flow) -> None:
    """The main flow, on SQLite and PostgreSQL (the shared `store_url` fixture's two)."""
    _main_flow(flow)


@SQLITE_ONLY
def test_only_a_member_of_the_assigned_unit_may_act_and_refusals_change_nothing(
    flow: Flow, auth: TokenFactory
) -> None:
    client = flow.client
    aid = flow.assign()
    # The same unit code in another street is another unit (registered here: an event).
    elsewhere = auth(Role.UNIT_MEMBER, POLICE, street="xiaoxi-street")
    before = position(client)
    # Another unit of the street holds nothing on the case: as for an outsider, 404.
    for step, body in (
        ("acknowledgement", None),
        ("decline", {"reason": REASON}),
        ("result", result_body()),
    ):
        problem(flow.post(aid, step, flow.school, body), 404, "case-not-found")
        # The coordinator may assign, not sign for, decline or report for the unit.
        problem(flow.post(aid, step, flow.coordinator, body), 403, "not-permitted")
        problem(flow.post(aid, step, elsewhere, body), 404, "case-not-found")
    # A result before signing for.
    problem(flow.post(aid, "result", flow.police, result_body()), 409, "assignment-not-signed-for")
    # An assignment the unit does not hold, on a case it holds another on.
    schools = flow.assign(SCHOOL, "school")
    problem(flow.post(schools, "acknowledgement", flow.police), 403, "assignment-not-held")
    # The school's assignment, and each refusal recorded as such (issue 15): nothing else.
    application = application_of(client)
    stored = [
        type(application.mapper.to_domain_event(n)).__name__
        for n in application.notifications(start=before + 1)
    ]
    assert sorted(set(stored)) == ["CommandRefused", "UnitAssigned"]
    assert stored.count("UnitAssigned") == 1 and stored.count("CommandRefused") == 10


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("step", "body", "field"),
    [
        ("decline", {}, "reason"),
        ("decline", {"reason": ""}, "reason"),
        ("decline", {"reason": "x" * 1001}, "reason"),
        ("decline", {"reason": "理由\u202e"}, "reason"),
        ("result", result_body(measures=[]), "measures"),
        ("result", result_body(measures=["秘密措施"]), "measures"),
        ("result", result_body(measures=["home_visit", "home_visit"]), "measures"),
        ("result", result_body(recommendation="closed"), "recommendation"),
        ("result", result_body(outcome=""), "outcome"),
        ("result", {"measures": ["home_visit"], "recommendation": "close"}, "outcome"),
    ],
)
def test_a_bad_body_is_422_naming_the_field_and_stores_nothing(
    flow: Flow, step: str, body: dict[str, Any], field: str
) -> None:
    aid = flow.assign()
    if step == "result":
        assert flow.post(aid, "acknowledgement", flow.police).status_code == 200
    before = position(flow.client)
    response = flow.post(aid, step, flow.police, body)
    answer = problem(response, 422, "validation-error")
    assert any(e["field"].startswith(field) for e in answer["errors"]), answer
    assert "秘密措施" not in response.text and "x" * 50 not in response.text
    assert position(flow.client) == before


# --- the inbox -------------------------------------------------------------------------------


def inbox(flow: Flow, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    flow.client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]
    response = flow.client.get("/v1/inbox", params=params, headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


@SQLITE_ONLY
def test_the_inbox_shows_each_state_and_no_case_content(flow: Flow, auth: TokenFactory) -> None:
    client = flow.client
    published = flow.assign(POLICE, "judicial", days=1)
    signed = flow.assign(POLICE, "family", days=2)
    result_due = flow.assign(POLICE, "school", days=0)
    declined = flow.assign(POLICE, "society", days=3)
    reported = flow.assign(POLICE, "online", days=4)
    ended = flow.assign(POLICE, "government", days=5)
    schools = flow.assign(SCHOOL, "school", days=5)
    for aid in (signed, result_due, reported):
        assert flow.post(aid, "acknowledgement", flow.police).status_code == 200
    assert flow.post(declined, "decline", flow.police, {"reason": REASON}).status_code == 200
    assert flow.post(reported, "result", flow.police, result_body()).status_code == 200
    end = client.post(
        f"{flow.base}/assignments/{ended}/end", json={"outcome": "withdrawn"},
        headers=flow.coordinator,
    )  # fmt: skip
    assert end.status_code == 200, end.text
    accesses = len(application_of(client).access_events(UUID(flow.case_id)))

    page = inbox(flow, flow.police_reader)
    states = {i["assignment_id"]: i["state"] for i in page["items"]}
    assert states == {
        published: "published",
        signed: "signed_for",
        result_due: "result_due",
        declined: "declined",
        reported: "result_reported",
        ended: "ended",
    }
    assert schools not in states  # another unit's
    assert page["unit"] == POLICE
    assert page["counts"]["signed_for"] == 1
    # Open ones first, earliest due first.
    assert [i["assignment_id"] for i in page["items"][:3]] == [result_due, published, signed]
    item = next(i for i in page["items"] if i["assignment_id"] == reported)
    assert item["case_id"] == flow.case_id
    assert item["recommendation"] == "close"
    assert item["signed_for_at"] is not None and item["result_at"] is not None
    # Assignment metadata only: nothing of the case, nor the task's or the reason's text.
    text = str(page)
    planted = flow.planted
    for value in (planted.name, planted.id_number, planted.description, planted.phone):
        assert value not in text, "case content in the inbox"
    for value in (TASK, REASON, VILLAGE, planted.body["minor"]["school"]):
        assert value not in text, "case content in the inbox"
    assert set(item) == {
        "case_id", "assignment_id", "function", "function_label", "assigned_at", "due_on",
        "state", "received_at", "signed_for_at", "declined_at", "result_at", "recommendation",
        "ended_at", "outcome", "overdue",
    }  # fmt: skip
    # Nothing disclosed: no access event stored for it.
    assert len(application_of(client).access_events(UUID(flow.case_id))) == accesses

    # A day after the first due date, the unsigned one is overdue.
    later = inbox(flow, flow.police_reader, on=(local_today() + timedelta(days=2)).isoformat())
    states = {i["assignment_id"]: i["state"] for i in later["items"]}
    assert states[published] == "overdue"
    assert states[result_due] == "overdue"
    assert states[signed] == "result_due"


@SQLITE_ONLY
def test_a_unit_clients_receipt_shows_as_received_not_as_signed_for(flow: Flow) -> None:
    """The machine's receipt (`NoticeReceived`, through the receipt call the unit's client
    makes) reaches the inbox and the ledger as `received`; only a person signs for."""
    aid = flow.assign(POLICE, "judicial", days=3)
    other = flow.assign(POLICE, "family", days=3)
    message = "5e1f0c3b2a49d8e7f6a5b4c3d2e1f0a9"
    application_of(flow.client).store_events(
        [
            notice_published(
                message_id=message,
                unit=POLICE,
                street="chengguan-street",
                kind="assignment",
                case_id=UUID(flow.case_id),
                assignment_id=aid,
                source_event=f"{flow.case_id}/3",
            )
        ]
    )
    receipt = flow.client.post(f"/v1/notices/{message}/receipt", headers=flow.police)
    assert receipt.status_code == 200, receipt.text

    states = {i["assignment_id"]: i for i in inbox(flow, flow.police_reader)["items"]}
    assert states[aid]["state"] == "received"
    assert states[aid]["received_at"] is not None and states[aid]["signed_for_at"] is None
    assert states[other]["state"] == "published"
    # A person signs for it: the receipt stays, the state moves on.
    assert flow.post(aid, "acknowledgement", flow.police).status_code == 200
    states = {i["assignment_id"]: i for i in inbox(flow, flow.police_reader)["items"]}
    assert states[aid]["state"] == "signed_for"
    assert states[aid]["received_at"] is not None


@SQLITE_ONLY
def test_other_roles_have_no_inbox_and_their_refusal_is_stored(
    flow: Flow, auth: TokenFactory
) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    response = flow.client.get("/v1/inbox", headers=coordinator)
    problem(response, 403, "not-permitted")
    request_id = response.headers["X-Request-ID"]
    denied = [
        e
        for e in application_of(flow.client).access_events(UUID(int=0))
        if e.request_id == request_id
    ]
    assert len(denied) == 1 and isinstance(denied[0], AccessDenied)
    assert denied[0].rule.startswith("inbox_not_for_role")
    auditor = auth(Role.COMPLIANCE_AUDITOR, "county-compliance-office", purpose="compliance_review")
    problem(flow.client.get("/v1/inbox", headers=auditor), 403, "not-permitted")


# --- worklists and the ledger ----------------------------------------------------------------


@SQLITE_ONLY
def test_worklists_and_the_ledger_carry_the_states(flow: Flow, auth: TokenFactory) -> None:
    client = flow.client
    signed = flow.assign(POLICE, "judicial")
    declined = flow.assign(POLICE, "family")
    reported = flow.assign(SCHOOL, "school")
    open_one = flow.assign(SCHOOL, "society")
    assert flow.post(signed, "acknowledgement", flow.police).status_code == 200
    assert flow.post(declined, "decline", flow.police, {"reason": REASON}).status_code == 200
    assert flow.post(reported, "acknowledgement", flow.school).status_code == 200
    assert flow.post(reported, "result", flow.school, result_body()).status_code == 200
    client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")

    def listed(state: str) -> dict[str, str]:
        answer = client.get("/v1/worklists/assignments", params={"state": state}, headers=headers)
        assert answer.status_code == 200, answer.text
        return {i["assignment_id"]: i["state"] for i in answer.json()["items"]}

    assert listed("open") == {signed: "signed_for", open_one: "published"}
    assert listed("signed_for") == {signed: "signed_for"}
    assert listed("unacknowledged") == {open_one: "published"}
    assert listed("declined") == {declined: "declined"}
    assert listed("result_reported") == {reported: "result_reported"}

    page = client.get("/v1/ledger", headers=headers)
    assert page.status_code == 200, page.text
    (row,) = [r for r in page.json()["rows"] if r["id"] == flow.case_id]
    shown = {a["id"]: a for a in row["assignments"]}
    assert shown[signed]["state"] == "signed_for" and shown[signed]["signed_for_at"]
    assert shown[declined]["state"] == "declined" and shown[declined]["declined_at"]
    assert shown[reported]["recommendation"] == "close"
    assert shown[open_one]["state"] == "published"
    # The ledger's own access events are its business; the case read shows the same records.
    read = client.get(flow.base, headers=headers)
    assert read.status_code == 200
    assert {a["id"] for a in read.json()["assignments"]} == set(shown)
    assert any(
        isinstance(e, CaseAccessed)
        for e in application_of(client).access_events(UUID(flow.case_id))
    )


@SQLITE_ONLY
def test_the_quarterly_report_counts_the_duty_cycle(flow: Flow, auth: TokenFactory) -> None:
    client = flow.client
    signed = flow.assign(POLICE, "judicial", days=1)
    declined = flow.assign(POLICE, "family")
    reported = flow.assign(SCHOOL, "school")
    flow.assign(SCHOOL, "society", days=2)
    assert flow.post(signed, "acknowledgement", flow.police).status_code == 200
    assert flow.post(declined, "decline", flow.police, {"reason": REASON}).status_code == 200
    assert flow.post(reported, "acknowledgement", flow.school).status_code == 200
    assert flow.post(reported, "result", flow.school, result_body()).status_code == 200
    client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")

    def counts(as_of: date) -> dict[str, int]:
        answer = client.get(
            "/v1/reports/quarterly", params={"as_of": as_of.isoformat()}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        return {c["code"]: c["count"] for c in answer.json()["assignments"]}

    today = local_today()
    assert counts(today) == {
        "assigned": 4,
        "signed_for": 2,
        "declined": 1,
        "result_reported": 1,
        "overdue": 0,
    }
    # Three days on (same quarter or not, the open ones are past due then): the signed one
    # (due in a day) and the unsigned school one (due in two) are overdue; the ended ones not.
    later = counts(today + timedelta(days=3))
    assert later["overdue"] == 2


# --- notices nobody could take -----------------------------------------------------------------


@SQLITE_ONLY
def test_the_street_worklist_lists_undeliverable_notices_of_its_street_only(
    flow: Flow, auth: TokenFactory
) -> None:
    application = application_of(flow.client)
    ours = notice_undeliverable(
        source_event=f"{flow.case_id}/1",
        kind="new_clue",
        unit=None,
        street="chengguan-street",
        case_id=UUID(flow.case_id),
        reason="no_governance_office",
    )
    theirs = notice_undeliverable(
        source_event=f"{UUID(int=7)}/1",
        kind="new_clue",
        unit=None,
        street="another-street",
        case_id=UUID(int=7),
        reason="no_governance_office",
    )
    application.store_events([ours, theirs])

    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    answer = flow.client.get("/v1/worklists/undeliverable-notices", headers=coordinator)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["count"] == 1
    (item,) = page["items"]
    assert item["case_id"] == flow.case_id
    assert (item["kind"], item["reason"]) == ("new_clue", "no_governance_office")

    refused = flow.client.get("/v1/worklists/undeliverable-notices", headers=flow.police_reader)
    assert refused.status_code == 403, refused.text
    stored = [
        e
        for e in application.access_events(NO_CASE)
        if e.request_id == refused.headers["X-Request-ID"]
    ]
    assert [e.rule for e in stored] == [f"street_worklist_not_for_role:{Role.UNIT_MEMBER}"]
