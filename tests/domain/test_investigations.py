"""The Investigation aggregate and county orders, pure (no store): each rule refuses before any
event, each event replays to the same state (`domain/investigations.py`, `domain/orders.py`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from domain import errors
from domain.access import COUNTY_ORDER_RULE, Actor
from domain.application import CaseTrail, replay
from domain.clock import local_today
from domain.investigation_commands import OpenInvestigation
from domain.investigations import Investigation, hidden_from_street
from domain.orders import CountyOrder, county_order_id, order_id
from domain.taxonomy import Role
from tests.domain.builders import COORDINATOR, id_number_for, report_clue

LEAD = {"user": "lead-1", "role": str(Role.COUNTY_LEAD), "unit": "county-office", "street": ""}
ID_NUMBER = id_number_for(date(2014, 3, 9), male=True)


def opened(case_count: int = 2) -> Investigation:
    return Investigation.open(
        kind="suicide",
        incident_on=date(2026, 5, 1),
        id_number=ID_NUMBER,
        name="",
        case_ids=[uuid4() for _ in range(case_count)],
        by=LEAD,
    )


def rebuilt(aggregate: Investigation) -> Investigation:
    events = aggregate.collect_events()
    again = replay(None, events)
    assert isinstance(again, Investigation)
    return again


def test_an_investigation_holds_its_whole_account_and_replays_to_it() -> None:
    inv = opened()
    inv.assign_investigators(["inv-1", "inv-2"], reason="county order 2026-7", by=LEAD)
    case_id = inv.case_ids[0]
    expires = datetime.now(UTC) + timedelta(days=30)
    oid = county_order_id(uuid4(), "inv-1")
    inv.record_order(
        order_id=oid,
        case_id=case_id,  # type: ignore[arg-type]
        investigator="inv-1",
        covers="minor",
        reason="county order",
        expires_at=expires,
        by=LEAD,
    )
    inv.record_finding(
        duty="consultation within 24 hours",
        unit="chengguan-governance-office",
        person="coordinator-1",
        determination="late",
        evidence=[3, 1, 3],
        note="held on the third day",
        by=LEAD,
    )
    item = inv.add_rectification(
        item="train the grid workers", owner="street", due_on=date(2026, 9, 1), by=LEAD
    )
    inv.complete_rectification(item, on=local_today(), note="done", by=LEAD)
    inv.issue_report(format="html", sha256="ab" * 32, by=LEAD)

    again = rebuilt(inv)
    summary = again.summary(with_minor=False)
    assert summary == inv.summary(with_minor=False)
    assert "minor" not in summary
    assert again.summary(with_minor=True)["minor"] == {"id_number": ID_NUMBER}
    assert summary["investigators"] == ["inv-1", "inv-2"]
    assert summary["findings"][0]["evidence"] == [1, 3]
    assert summary["rectifications"][0]["completed"]["on"] == local_today().isoformat()
    assert summary["orders"][0]["covers"] == "minor"
    assert summary["reports"][0]["sha256"] == "ab" * 32
    for contract in (
        "InvestigationOpened",
        "FindingRecorded",
        "RectificationAdded",
        "RectificationCompleted",
        "ReportIssued",
    ):
        assert isinstance(getattr(Investigation, contract), type)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            lambda i: i.record_finding(
                duty="d",
                unit="u",
                person="p",
                determination="maybe",
                evidence=[],
                note="n",
                by=LEAD,
            ),
            errors.InvestigationInvalid,
        ),
        (
            lambda i: i.complete_rectification(uuid4(), on=local_today(), note="n", by=LEAD),
            errors.UnknownRectification,
        ),
        (
            lambda i: i.issue_report(format="docx", sha256="ab" * 32, by=LEAD),
            errors.InvestigationInvalid,
        ),
        (
            lambda i: i.issue_report(format="pdf", sha256="AB" * 32, by=LEAD),
            errors.InvestigationInvalid,
        ),
        (
            lambda i: i.record_order(
                order_id=uuid4(),
                case_id=uuid4(),
                investigator="x",
                covers="case",
                reason="r",
                expires_at=datetime.now(UTC),
                by=LEAD,
            ),
            errors.InvestigationInvalid,
        ),
    ],
)
def test_a_broken_rule_triggers_no_event(call, error) -> None:  # type: ignore[no-untyped-def]
    inv = opened()
    before = len(inv.collect_events())
    with pytest.raises(error):
        call(inv)
    assert inv.collect_events() == []
    assert before == 1


def test_a_rectification_completes_once() -> None:
    inv = opened()
    item = inv.add_rectification(item="i", owner="o", due_on=local_today(), by=LEAD)
    inv.complete_rectification(item, on=local_today(), note="n", by=LEAD)
    with pytest.raises(errors.RectificationAlreadyCompleted):
        inv.complete_rectification(item, on=local_today(), note="n", by=LEAD)


def test_an_unknown_kind_is_refused_naming_the_field() -> None:
    with pytest.raises(errors.InvestigationInvalid) as raised:
        Investigation.open(
            kind="accident",
            incident_on=local_today(),
            id_number=ID_NUMBER,
            name="",
            case_ids=[],
            by=LEAD,
        )
    assert raised.value.field == "kind"


def test_county_orders_are_streams_apart_from_the_streets() -> None:
    case_id = uuid4()
    assert county_order_id(case_id, "inv-1") != order_id(case_id, "inv-1")
    now = datetime.now(UTC)
    order = CountyOrder(
        investigation_id=uuid4(),
        case_id=case_id,
        investigator="inv-1",
        covers="case",
        reason="r",
        expires_at=(now + timedelta(days=3)).isoformat(),
        by=LEAD,
    )
    assert order.id == county_order_id(case_id, "inv-1")
    assert order.active_until(now) is not None
    order.revoke(reason="done", now=now, by=LEAD)
    assert order.active_until(now) is None
    with pytest.raises(errors.OrderNotActive):
        order.revoke(reason="again", now=now, by=LEAD)
    again = replay(None, order.collect_events())
    assert isinstance(again, CountyOrder) and again.revoked == {"reason": "done", "by": LEAD}


def test_county_lead_is_a_role() -> None:
    assert Role("county_lead") is Role.COUNTY_LEAD


def test_only_files_naming_the_minor_are_linked_and_ordered() -> None:
    """The read models hand the application candidate ids; the files themselves decide."""
    application = CaseTrail(env={})
    try:
        born = date(2015, 6, 1)
        minors = report_clue(born=born), report_clue(born=born, male=False)
        own, other = (application.report_clue(c, COORDINATOR) for c in minors)
        lead = Actor("lead-1", Role.COUNTY_LEAD, "county-office", "county")
        command = OpenInvestigation.model_validate(
            {
                "kind": "harm",
                "incident_on": local_today().isoformat(),
                "minor": {"id_number": minors[0].minor.id_number},
                "investigators": ["inv-1"],
                "reason": "倒查。",
                "expires_at": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            }
        )
        opened = application.investigation(
            application.open_investigation(command, [own, other, uuid4()], lead)
        )
        assert opened.case_ids == [str(own)]
        assert [o["case_id"] for o in opened.orders.values()] == [str(own)]
        with pytest.raises(errors.NotPermitted):
            application.open_investigation(command, [own], COORDINATOR)
    finally:
        application.close()


def test_a_report_issued_is_recorded_for_the_county_and_the_named_only() -> None:
    application = CaseTrail(env={})
    try:
        lead = Actor("lead-1", Role.COUNTY_LEAD, "county-office", "county")
        named = Actor("inv-1", Role.INVESTIGATOR, "county-team", "county")
        stranger = Actor("inv-9", Role.INVESTIGATOR, "county-team", "county")
        command = OpenInvestigation.model_validate(
            {
                "kind": "suicide",
                "incident_on": local_today().isoformat(),
                "minor": {"id_number": ID_NUMBER},
                "investigators": [named.user],
                "reason": "倒查。",
                "expires_at": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            }
        )
        investigation_id = application.open_investigation(command, [], lead)
        application.record_report_issued(investigation_id, "pdf", "0f" * 32, named)
        with pytest.raises(errors.InvestigationNotFound):
            application.record_report_issued(investigation_id, "pdf", "0f" * 32, stranger)
        with pytest.raises(errors.InvestigationInvalid):
            application.record_report_issued(investigation_id, "docx", "0f" * 32, lead)
        reports = application.investigation(investigation_id).reports
        assert [(r["format"], r["sha256"], r["by"]["user"]) for r in reports] == [
            ("pdf", "0f" * 32, named.user)
        ]
    finally:
        application.close()


@pytest.mark.parametrize("role", list(Role))
def test_reads_under_county_orders_are_hidden_from_the_street_only(role: Role) -> None:
    street = role in {Role.REPORTER, Role.COORDINATOR, Role.SUPERVISOR, Role.UNIT_MEMBER}
    assert hidden_from_street(COUNTY_ORDER_RULE, role) is street
    assert hidden_from_street(f"{COUNTY_ORDER_RULE}:as_of:3", role) is street
    assert hidden_from_street("investigation_order", role) is False
