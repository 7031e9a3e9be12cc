"""The relay's routing of alerts and its notice facts, on a real SQLite store, without a broker:
who a new clue and a county escalation go to, which notices are undeliverable (and why), and
`Relay.store_facts` storing each fact once when some copies are stored already."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.clock import local_today
from domain.notices import NoticePublished, notice_published, published_id
from domain.taxonomy import Role
from domain.units import RegisterUnit
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.messaging.broker import NatsSettings
from gateway.messaging.broker_config import NatsLayout
from gateway.messaging.registry import register_unit
from gateway.messaging.relay import Directory, Relay, Routed, Router
from gateway.settings import Settings
from tests.integration.planted import planted_case

STREET, FAR = "chengguan-street", "far-street"
OFFICE = "chengguan-governance-office"
COORDINATOR = Actor("user-coordinator", Role.COORDINATOR, OFFICE, STREET)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    return Settings.from_env({"CASETRAIL_HOME": str(home)})


@pytest.fixture
def application(settings: Settings) -> Iterator[CaseTrail]:
    opened = open_application(settings)
    try:
        yield opened
    finally:
        opened.close()


def add(settings: Settings, application: CaseTrail, unit: str, kind: str, street: str) -> None:
    register_unit(
        settings,
        application,
        RegisterUnit(unit_id=unit, name="测试单位", type=kind, street=street),
        settings.home / f"{unit}.pem",
    )


def report(application: CaseTrail, risk: str, street: str = STREET) -> UUID:
    body = planted_case().body
    body["issues"] = [{"category": "growth_environment", "subtype": "left_behind"}]
    body["risk"] = risk
    reporter = Actor("user-reporter", Role.REPORTER, "some-village", street)
    return application.report_clue(cmd.ReportClue(**body), reporter)


def routed_for(application: CaseTrail, case_id: UUID, suffix: str) -> Routed:
    directory = Directory(application)
    directory.load()
    router = Router(application, directory)
    found = Routed([], [])
    for event in application.events.get(case_id):
        if type(event).__qualname__.endswith(suffix):
            one = router.routed(event)
            found.outgoing += one.outgoing
            found.undeliverable += one.undeliverable
    return found


def test_a_new_clue_goes_to_the_office_and_if_high_or_urgent_to_the_supervisor(
    settings: Settings, application: CaseTrail
) -> None:
    add(settings, application, OFFICE, "governance_office", STREET)
    add(settings, application, "chengguan-supervision", "street_supervision", STREET)
    add(settings, application, "far-supervision", "street_supervision", FAR)
    by_risk = {}
    for risk in ("low", "medium", "high", "urgent"):
        case_id = report(application, risk)
        found = routed_for(application, case_id, "ClueReported")
        assert found.undeliverable == []
        by_risk[risk] = sorted(o.recipient.unit_id for o in found.outgoing)
        for out in found.outgoing:
            assert out.kind == "new_clue"
            assert (out.case_id, out.assignment_id, out.fact) == (case_id, None, True)
            assert out.body == {
                "case_ref": str(case_id),
                "risk": risk,
                "found_on": out.body["found_on"],
                "reported_at": out.issued_at,
            }
    assert by_risk == {
        "low": [OFFICE],
        "medium": [OFFICE],
        "high": [OFFICE, "chengguan-supervision"],
        "urgent": [OFFICE, "chengguan-supervision"],
    }


def test_missing_recipients_are_undeliverable_facts_naming_the_street_and_reason(
    settings: Settings, application: CaseTrail
) -> None:
    add(settings, application, "far-office", "governance_office", FAR)
    case_id = report(application, "urgent")  # chengguan-street: nobody registered
    found = routed_for(application, case_id, "ClueReported")
    assert found.outgoing == []
    assert sorted((f.reason, f.street, f.unit) for f in found.undeliverable) == [
        ("no_governance_office", STREET, None),
        ("no_street_supervision", STREET, None),
    ]
    assert {f.case_id for f in found.undeliverable} == {case_id}
    # Routed again (a relay re-reading after a crash): the same facts, the same ids.
    again = routed_for(application, case_id, "ClueReported")
    assert {f.originator_id for f in again.undeliverable} == {
        f.originator_id for f in found.undeliverable
    }

    # An assignment to a unit that is not registered: its code, and the case's street.
    application.change_case(
        case_id,
        COORDINATOR,
        "assign_unit",
        lambda c: c.assign_unit(
            cmd.AssignUnit(
                unit="unregistered-unit",
                function="family",
                task="家访。",
                due_on=local_today() + timedelta(days=3),
            ),
            by=COORDINATOR.as_record(),
        ),
    )
    [fact] = routed_for(application, case_id, "UnitAssigned").undeliverable
    assert (fact.reason, fact.unit, fact.street, fact.kind) == (
        "unit_not_registered",
        "unregistered-unit",
        STREET,
        "assignment",
    )


def escalate(application: CaseTrail, case_id: UUID, **fields: Any) -> None:
    application.change_case(
        case_id,
        COORDINATOR,
        "escalate",
        lambda c: c.escalate(
            cmd.Escalate(reason="需要协调。", **fields), by=COORDINATOR.as_record()
        ),
    )


def test_an_escalation_to_the_county_goes_to_the_county_unit_whatever_its_street(
    settings: Settings, application: CaseTrail
) -> None:
    add(settings, application, OFFICE, "governance_office", STREET)
    case_id = report(application, "medium")
    escalate(application, case_id, to_level="county")
    without = routed_for(application, case_id, "Escalated")
    assert [o.recipient.unit_id for o in without.outgoing] == [OFFICE]
    assert [(f.reason, f.street) for f in without.undeliverable] == [("no_county_office", None)]

    add(settings, application, "county-office", "county_office", "county")
    found = routed_for(application, case_id, "Escalated")
    assert sorted(o.recipient.unit_id for o in found.outgoing) == [OFFICE, "county-office"]
    assert found.undeliverable == []
    # To the street level: the county is not told.
    escalate(application, case_id, to_level="street")
    by_level = [
        (o.body["to_level"], o.recipient.unit_id)
        for o in routed_for(application, case_id, "Escalated").outgoing
    ]
    assert ("street", "county-office") not in by_level
    assert ("street", OFFICE) in by_level


def test_store_facts_stores_each_fact_once_when_some_were_stored_before(
    settings: Settings, application: CaseTrail
) -> None:
    relay = Relay(
        application,
        nats_settings=NatsSettings(url="tls://127.0.0.1:1"),
        layout=NatsLayout(settings.home),
        signer=keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key"),
        index_key=keyring.load_index_key(settings.keys_dir),
    )

    def fact(n: int) -> NoticePublished:
        return notice_published(
            message_id=f"{n:032x}",
            unit=OFFICE,
            street=STREET,
            kind="new_clue",
            case_id=None,
            assignment_id=None,
            source_event=f"s/{n}",
        )

    assert relay.store_facts([fact(1), fact(2)]) == 2  # one transaction
    assert relay.store_facts([fact(1), fact(2), fact(3)]) == 1  # refused whole, then one by one
    assert relay.store_facts([fact(3)]) == 0
    assert relay.store_facts([]) == 0
    for n in (1, 2, 3):
        assert len(list(application.events.get(published_id(f"{n:032x}")))) == 1
