"""`POST /v1/notices/{message_id}/receipt` over the real ASGI app, on SQLite and PostgreSQL: the
unit's client receipt is stored once as `NoticeReceived`, for the unit the relay's
`NoticePublished` names only, and nothing about the notice is taken from the caller.
`/healthz` counts undeliverable notices (a number only)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.notices import (
    NoticeReceived,
    notice_published,
    notice_undeliverable,
    received_id,
)
from domain.taxonomy import Role
from tests.conftest import TokenFactory

STREET = "chengguan-street"
POLICE = "chengguan-police-station"
MESSAGE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def _application(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def _publish(client: TestClient, message: str = MESSAGE) -> Any:
    published = notice_published(
        message_id=message,
        unit=POLICE,
        street=STREET,
        kind="assignment",
        case_id=uuid4(),
        assignment_id=str(uuid4()),
        source_event=f"{uuid4()}/2",
    )
    _application(client).store_events([published])
    return published


def _receipts(client: TestClient, message: str = MESSAGE) -> list[NoticeReceived]:
    return [
        e
        for e in _application(client).events.get(received_id(message))
        if isinstance(e, NoticeReceived)
    ]


def test_a_receipt_is_stored_once_and_answered_the_same(
    client: TestClient, auth: TokenFactory
) -> None:
    published = _publish(client)
    headers = {**auth(Role.UNIT_MEMBER, POLICE), "User-Agent": "casetrail-unit/test"}
    first = client.post(f"/v1/notices/{MESSAGE}/receipt", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["message_id"] == MESSAGE
    second = client.post(f"/v1/notices/{MESSAGE}/receipt", headers=headers)
    assert second.status_code == 200
    assert second.json() == first.json()
    [stored] = _receipts(client)
    assert (stored.unit, stored.street, stored.kind) == (POLICE, STREET, "assignment")
    assert (stored.case_id, stored.assignment_id) == (published.case_id, published.assignment_id)
    assert stored.client["user"] == f"user-{Role.UNIT_MEMBER}-{POLICE}"
    assert stored.client["unit"] == POLICE
    assert stored.client["user_agent"] == "casetrail-unit/test"
    assert "address" in stored.client


def test_only_the_recipient_unit_may_confirm_and_others_learn_nothing(
    client: TestClient, auth: TokenFactory
) -> None:
    _publish(client)
    never = "f" * 32
    answers = [
        client.post(f"/v1/notices/{MESSAGE}/receipt", headers=auth(Role.UNIT_MEMBER, "x-school")),
        client.post(
            f"/v1/notices/{MESSAGE}/receipt",
            headers=auth(Role.UNIT_MEMBER, POLICE, street="far-street"),  # same code, other street
        ),
        client.post(f"/v1/notices/{never}/receipt", headers=auth(Role.UNIT_MEMBER, POLICE)),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert {a.json()["type"] for a in answers} == {"urn:casetrail:problem:notice-not-found"}
    assert answers[0].json()["detail"] == answers[2].json()["detail"]  # no oracle
    assert all(a.headers["content-type"].startswith("application/problem+json") for a in answers)
    assert _receipts(client) == []


def test_a_bad_message_id_is_a_422_naming_it_and_unauthenticated_is_a_401(
    client: TestClient, auth: TokenFactory
) -> None:
    bad = client.post("/v1/notices/NOT-AN-ID/receipt", headers=auth(Role.UNIT_MEMBER, POLICE))
    assert bad.status_code == 422
    assert "NOT-AN-ID" not in bad.text
    assert [e["field"] for e in bad.json()["errors"]] == ["message_id"]
    assert client.post(f"/v1/notices/{MESSAGE}/receipt").status_code == 401


def test_healthz_counts_undeliverable_notices_with_a_token_only(
    client: TestClient, auth: TokenFactory
) -> None:
    headers = auth(Role.COORDINATOR, "chengguan-governance-office")
    assert client.get("/healthz", headers=headers).json()["undeliverable_notices"] == 0
    fact = notice_undeliverable(
        source_event=f"{uuid4()}/1",
        kind="new_clue",
        unit=None,
        street=STREET,
        case_id=uuid4(),
        reason="no_governance_office",
    )
    _application(client).store_events([fact])
    answer = client.get("/healthz", headers=headers).json()
    assert answer["undeliverable_notices"] == 1
    assert "undeliverable_notices" not in client.get("/healthz").json()
    assert [f.reason for f in _application(client).undeliverable_notices(STREET)] == [
        "no_governance_office"
    ]
    assert _application(client).undeliverable_notices("far-street") == []
