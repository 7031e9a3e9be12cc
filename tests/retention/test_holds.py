"""Legal holds (issue 19): a file is not erased while ANY file of the same minor is named by an
investigation, an investigation order in force, an unreviewed compliance finding or an explicit
hold; releasing the hold makes it due; who may place and release one; over HTTP, the status and
the holds through the API's identity, purpose and audit.

Real SQLite stores, encrypted with data keys; files closed years ago through the domain's clock
(tests/retention/retention_world.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain import errors
from domain.access import Actor
from domain.application import CaseTrail
from domain.clock import local_today
from domain.compliance.findings import Finding, Outcome
from domain.investigation_commands import OpenInvestigation
from domain.retention import KeyScope
from domain.retention_holds import HoldAlreadyReleased, PlaceHold, ReleaseHold
from domain.taxonomy import Purpose, Role
from gateway.bootstrap import open_application
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.domain.builders import COORDINATOR, REPORTER, STREET
from tests.retention.retention_world import (
    AUDITOR,
    OPERATOR,
    OTHER_COORDINATOR,
    closed_file,
    open_file,
    open_store,
    row_of,
    same_minor,
)

TODAY = date(2026, 12, 2)
BORN = date(2005, 3, 1)  # 18 + 3 years on 2026-03-01: a file closed in 2020 is due by TODAY
COUNTY_LEAD = Actor("county-lead-1", Role.COUNTY_LEAD, "county-office", "county")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[CaseTrail]:
    found, _ = open_store(f"sqlite:///{tmp_path / 'events.sqlite'}")
    try:
        yield found
    finally:
        found.close()


def two_files(app: CaseTrail) -> tuple[UUID, UUID]:
    """A due file of a minor, and another (open) file of the same minor."""
    due = closed_file(app, born=BORN, found_on=date(2020, 5, 1), closed_on=date(2020, 6, 1))
    other = open_file(app, same_minor(app, due, found_on=date(2021, 6, 1)))
    return due, other


def state(app: CaseTrail, case_id: UUID) -> str:
    return str(row_of(app.retention_status(TODAY), case_id)["state"])


def test_an_explicit_hold_on_another_file_of_the_minor_keeps_the_file_until_released(
    app: CaseTrail,
) -> None:
    due, other = two_files(app)
    stranger = closed_file(
        app, born=date(2004, 1, 1), found_on=date(2019, 5, 1), closed_on=date(2019, 6, 1)
    )
    assert state(app, due) == "due"
    hold = app.place_hold(PlaceHold(case_id=other, reason="诉讼保全:法院调取"), AUDITOR)

    rows = app.retention_status(TODAY)
    assert row_of(rows, due)["state"] == "held"
    assert row_of(rows, due)["held"] == ["explicit"]
    (found,) = row_of(rows, due)["holds"]
    assert found["source"] == str(hold.id) and found["case_id"] == str(other)
    assert found["by"] == AUDITOR.user
    assert row_of(rows, stranger)["state"] == "due"  # another minor is not held

    outcomes = app.apply_retention(TODAY, OPERATOR)
    assert [(o["stream_id"], o["outcome"]) for o in outcomes] == [(str(stranger), "erased")]
    assert app.data_keyring.has_key(due) and app.erasure_of(due) is None
    assert app.read_case(due, COORDINATOR, Purpose.FOLLOW_UP, "r-1")["id"] == str(due)

    app.release_hold(hold.id, ReleaseHold(reason="诉讼终结"), COORDINATOR)
    assert state(app, due) == "due"
    with pytest.raises(HoldAlreadyReleased):
        app.release_hold(hold.id, ReleaseHold(reason="again"), AUDITOR)
    outcomes = app.apply_retention(TODAY, OPERATOR)
    assert [(o["stream_id"], o["outcome"]) for o in outcomes] == [(str(due), "erased")]
    assert not app.data_keyring.has_key(due)
    assert state(app, due) == "erased"


def test_a_hold_placed_after_the_status_was_read_still_stops_the_erasure(app: CaseTrail) -> None:
    due, other = two_files(app)
    assert state(app, due) == "due"
    app.place_hold_by_operator(PlaceHold(case_id=other, reason="审计保全"), OPERATOR)
    # `erase` asks for the holds right before it stores the fact (the index follows the store).
    with pytest.raises(errors.DomainError) as raised:
        app.erase(
            due,
            scope=KeyScope.CASE,
            rule="retention",
            basis=app.retention_rules.basis(),
            due_on=TODAY,
            by=OPERATOR,
        )
    assert raised.value.code == "erasure_held"
    assert app.data_keyring.has_key(due)


def test_an_investigation_holds_every_file_of_its_minor(app: CaseTrail) -> None:
    due, other = two_files(app)
    case: Any = app.repository.get(due)
    command = OpenInvestigation.model_validate(
        {
            "kind": "harm",
            "incident_on": (local_today() - timedelta(days=2)).isoformat(),
            "minor": {"id_number": case.minor["id_number"]},
            "investigators": ["investigator-1"],
            "reason": "一案一倒查",
            "expires_at": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
        }
    )
    app.open_investigation(command, [other], COUNTY_LEAD)
    # The investigation itself, and the county order it issued on the linked file.
    assert {h["reason"] for h in app.holds_on(due)} == {"investigation", "investigation_order"}
    assert state(app, due) == "held"


def test_an_order_in_force_holds_and_a_revoked_one_does_not(app: CaseTrail) -> None:
    due, other = two_files(app)
    order = app.issue_investigation_order(
        cmd.IssueInvestigationOrder(
            case_id=other,
            investigator="investigator-1",
            reason="倒查",
            expires_at=datetime.now(UTC) + timedelta(days=5),
        ),
        COORDINATOR,
    )
    (hold,) = app.holds_on(due)
    assert hold["reason"] == "investigation_order" and hold["case_id"] == str(other)
    assert "until" in hold
    app.revoke_investigation_order(order, cmd.RevokeInvestigationOrder(reason="结束"), COORDINATOR)
    assert app.holds_on(due) == []
    assert state(app, due) == "due"


def test_an_unreviewed_finding_holds_until_it_is_reviewed(app: CaseTrail) -> None:
    due, other = two_files(app)
    now = datetime.now(UTC)
    finding = Finding(
        rule="bulk_browsing",
        evidence=[1],
        person="reporter-9",
        role="reporter",
        unit="dongshan-village",
        street=STREET,
        case_ids=[str(other)],
        window_start=(now - timedelta(hours=1)).isoformat(),
        window_end=now.isoformat(),
        detail={},
    )
    app.record_findings([finding])
    assert [h["reason"] for h in app.holds_on(due)] == ["compliance_finding"]
    app.review_finding(finding.id, Outcome.JUSTIFIED, "工作需要", AUDITOR)
    assert app.holds_on(due) == []


def test_who_may_place_and_release_a_hold(app: CaseTrail) -> None:
    due, _ = two_files(app)
    with pytest.raises(errors.CaseNotFound):  # another street's coordinator: not even visible
        app.place_hold(PlaceHold(case_id=due, reason="x"), OTHER_COORDINATOR)
    with pytest.raises(errors.NotPermitted):
        app.place_hold(PlaceHold(case_id=due, reason="x"), REPORTER)
    hold = app.place_hold(PlaceHold(case_id=due, reason="复核"), COORDINATOR)
    with pytest.raises(errors.NotPermitted):
        app.release_hold(hold.id, ReleaseHold(reason="x"), REPORTER)
    refusals = {(r.command, r.rule) for r in app.command_refusals()}
    assert ("place_retention_hold", "not_visible") in refusals
    assert ("place_retention_hold", "not_permitted") in refusals
    assert app.legal_hold(hold.id).active


# --- over HTTP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_status_and_holds_over_http(
    client: TestClient, auth: TokenFactory, settings: Settings
) -> None:
    app = open_application(settings)
    try:
        due, other = two_files(app)
    finally:
        app.close()
    auditor = auth(Role.COMPLIANCE_AUDITOR, "county-compliance", purpose="compliance_review")
    coordinator = auth(Role.COORDINATOR, "chengguan-governance-office", purpose="follow_up")
    reporter = auth(Role.REPORTER, "dongshan-village", purpose="follow_up")

    answer = client.get("/v1/retention", params={"today": TODAY.isoformat()}, headers=auditor)
    assert answer.status_code == 200, answer.text
    assert row_of(answer.json()["items"], due)["state"] == "due"
    assert "whichever is later" in answer.json()["rule"]

    refused = client.get("/v1/retention", headers=reporter)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"

    placed = client.post(
        "/v1/retention/holds", json={"case_id": str(other), "reason": "诉讼保全"}, headers=auditor
    )
    assert placed.status_code == 201, placed.text
    hold_id = placed.json()["id"]
    seen = client.get("/v1/retention", params={"today": TODAY.isoformat()}, headers=coordinator)
    assert row_of(seen.json()["items"], due)["state"] == "held"
    assert row_of(seen.json()["items"], due)["held"] == ["explicit"]
    assert row_of(seen.json()["items"], due)["holds"] == []  # the sources are the auditors'

    bad = client.post("/v1/retention/holds", json={"case_id": str(other)}, headers=auditor)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "reason"
    not_his = client.post(
        f"/v1/retention/holds/{hold_id}/release", json={"reason": "x"}, headers=reporter
    )
    assert not_his.status_code == 403
    unknown = client.post(
        f"/v1/retention/holds/{UUID(int=7)}/release", json={"reason": "x"}, headers=auditor
    )
    assert unknown.status_code == 404
    released = client.post(
        f"/v1/retention/holds/{hold_id}/release", json={"reason": "诉讼终结"}, headers=coordinator
    )
    assert released.status_code == 200 and released.json()["active"] is False
    again = client.get("/v1/retention", params={"today": TODAY.isoformat()}, headers=auditor)
    assert row_of(again.json()["items"], due)["state"] == "due"

    # Every read of the status was recorded, the refused one as a refusal.
    app = open_application(settings)
    try:
        rules = [
            (e.actor["role"], e.rule)
            for e in app.access_events(UUID(int=0))
            if "retention_status" in e.rule
        ]
    finally:
        app.close()
    assert ("reporter", "retention_status_not_for_role:reporter") in rules
    assert ("compliance_auditor", "retention_status:compliance_auditor") in rules
    assert ("coordinator", "retention_status:coordinator") in rules
