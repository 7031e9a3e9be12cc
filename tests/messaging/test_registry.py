"""The unit registry, the due-date rule and the relay's routing, on a real SQLite store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain import commands as cmd
from domain import errors
from domain.access import Actor
from domain.application import CaseTrail
from domain.clock import local_today
from domain.notices import DUE_SOON, OVERDUE, OpenAssignment, reminders_due
from domain.taxonomy import Purpose, Role
from domain.units import RegisterUnit, UnitAlreadyRegistered, UnknownUnit
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.messaging.broker_config import NatsLayout, render_config
from gateway.messaging.registry import register_unit, rotate_unit_keys, unit_users
from gateway.messaging.relay import Directory, Publisher, Router
from gateway.messaging.sealing import UnitCredentials, open_envelope
from gateway.settings import Settings
from tests.integration.planted import planted_case

STREET, FAR = "chengguan-street", "far-street"
COORDINATOR = Actor("user-coordinator", Role.COORDINATOR, "chengguan-governance-office", STREET)
REPORTER = Actor("user-reporter", Role.REPORTER, "dongshan-village", STREET)


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


def add(
    settings: Settings,
    application: CaseTrail,
    unit_id: str,
    kind: str,
    street: str = STREET,
    out: Path | None = None,
) -> Path:
    out = out or settings.home / f"{unit_id}.pem"
    register_unit(
        settings,
        application,
        RegisterUnit(unit_id=unit_id, name="测试单位", type=kind, street=street),
        out,
    )
    return out


def test_a_unit_is_registered_once_with_public_keys_only(
    settings: Settings, application: CaseTrail
) -> None:
    out = add(settings, application, "chengguan-police-station", "police_station")
    unit = application.unit("chengguan-police-station")
    assert unit.type == "police_station"
    assert unit.nats_user.startswith("u")
    assert "police" not in unit.nats_user
    second = settings.home / "second.pem"
    with pytest.raises(UnitAlreadyRegistered):
        add(settings, application, "chengguan-police-station", "police_station", out=second)
    assert out.exists()
    assert not second.exists()  # nothing written for a refused registration
    with pytest.raises(UnknownUnit):
        application.unit("nobody")
    described = unit.describe()
    assert "sealing_key" not in described
    assert described["type_label"] == "公安派出所"


def test_bad_registrations_name_the_field(settings: Settings, application: CaseTrail) -> None:
    with pytest.raises(ValueError, match="type"):
        RegisterUnit(unit_id="x", name="某单位", type="king", street=STREET)
    with pytest.raises(ValueError, match="unit_id"):
        RegisterUnit(unit_id="Not A Code", name="某单位", type="school", street=STREET)


def test_rotating_keys_changes_them_and_keeps_the_address(
    settings: Settings, application: CaseTrail
) -> None:
    add(settings, application, "chengguan-police-station", "police_station")
    before = application.unit("chengguan-police-station")
    rotate_unit_keys(
        settings, application, "chengguan-police-station", settings.home / "rotated.pem"
    )
    after = application.unit("chengguan-police-station")
    assert after.key_version == 2
    assert after.sealing_key != before.sealing_key
    assert after.tls_fingerprint != before.tls_fingerprint
    assert after.nats_user == before.nats_user
    # The broker admits the new certificate only.
    config = render_config(NatsLayout(settings.home), unit_users(application))
    assert after.tls_fingerprint in config
    assert before.tls_fingerprint not in config


def test_the_due_date_rule() -> None:
    today = date(2026, 3, 10)

    def due(days: int) -> OpenAssignment:
        return OpenAssignment(
            case_id=uuid.uuid4(),
            assignment_id=f"a{days}",
            unit="u",
            due_on=today + timedelta(days=days),
        )

    reminders = reminders_due([due(d) for d in (-2, 0, 1, 2)], today)
    found = {r.assignment_id: r.reminder for r in reminders}
    assert found == {"a-2": OVERDUE, "a0": DUE_SOON, "a1": DUE_SOON}
    again = reminders_due([due(1)], today)
    assert again[0].originator_id == reminders_due([due(1)], today)[0].originator_id


def routed(application: CaseTrail, topic_suffix: str) -> list[Any]:
    directory = Directory(application)
    directory.load()
    router = Router(application, directory)
    found = []
    for notification in application.notifications():
        if notification.topic.endswith(topic_suffix):
            found += router.route(application.mapper.to_domain_event(notification))
    return found


def test_the_relay_routes_each_notice_to_the_units_the_rules_name(
    settings: Settings, application: CaseTrail
) -> None:
    add(settings, application, "chengguan-governance-office", "governance_office")
    add(settings, application, "far-governance-office", "governance_office", street=FAR)
    add(settings, application, "chengguan-police-station", "police_station")
    add(settings, application, "county-audit", "compliance_audit", street="county")
    case_id = application.report_clue(cmd.ReportClue(**planted_case().body), REPORTER)
    application.change_case(
        case_id,
        COORDINATOR,
        "assign_unit",
        lambda c: c.assign_unit(
            cmd.AssignUnit(
                unit="unregistered-unit",
                function="family",
                task="家访。",
                due_on=local_today(),
            ),
            by=COORDINATOR.as_record(),
        ),
    )
    application.change_case(
        case_id,
        COORDINATOR,
        "escalate",
        lambda c: c.escalate(
            cmd.Escalate(to="police_station", to_level="county", reason="紧急。"),
            by=COORDINATOR.as_record(),
        ),
    )
    outsider = Actor("user-x", Role.UNIT_MEMBER, "far-school", FAR)
    with pytest.raises(Exception):  # noqa: B017 (refused read: AccessRefused, recorded)
        application.read_case(case_id, outsider, Purpose.INTERVENTION, "req-0001")

    assert routed(application, "UnitAssigned") == []  # no such unit in the registry
    escalated = routed(application, "Escalated")
    assert sorted(o.recipient.unit_id for o in escalated) == [
        "chengguan-governance-office",
        "chengguan-police-station",
    ]
    assert "紧急" not in json.dumps([o.body for o in escalated], ensure_ascii=False)
    [alert] = routed(application, "AccessDenied")
    assert alert.recipient.unit_id == "county-audit"
    assert alert.body["actor"] == {"user": "user-x", "role": "unit_member", "unit": "far-school"}


def test_a_notice_is_sealed_to_the_units_current_key(
    settings: Settings, application: CaseTrail
) -> None:
    path = add(settings, application, "chengguan-police-station", "police_station")
    case_id = application.report_clue(cmd.ReportClue(**planted_case().body), REPORTER)
    application.change_case(
        case_id,
        COORDINATOR,
        "assign_unit",
        lambda c: c.assign_unit(
            cmd.AssignUnit(
                unit="chengguan-police-station",
                function="school",
                task="约谈家长。",
                due_on=local_today(),
            ),
            by=COORDINATOR.as_record(),
        ),
    )
    [out] = routed(application, "UnitAssigned")
    signer = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    publisher = Publisher(None, signer, b"k" * 32)  # type: ignore[arg-type]
    ident, envelope = publisher.envelope(out)
    credentials = UnitCredentials.load(path)
    content = open_envelope(
        envelope,
        recipient=credentials.user,
        private_key=credentials.sealing_key,
        service_key=credentials.service_key,
    ).content
    assert content["id"] == ident
    assert content["body"]["assignment"]["task"] == "约谈家长。"
    assert content["body"]["assignment"]["case_ref"] == str(case_id)


def test_a_registered_unit_of_another_street_cannot_be_assigned(
    settings: Settings, application: CaseTrail
) -> None:
    """A unit is the pair (street, code): a case is assigned only to its own street's units."""
    add(settings, application, "far-police-station", "police_station", street=FAR)
    add(settings, application, "chengguan-tribunal", "tribunal", street=STREET)
    case_id = application.report_clue(cmd.ReportClue(**planted_case().body), REPORTER)
    due = local_today() + timedelta(days=3)

    def assign(unit: str, function: str = "judicial") -> UUID:
        command = cmd.AssignUnit(unit=unit, function=function, task="核实。", due_on=due)
        result: UUID = application.change_case(
            case_id,
            COORDINATOR,
            "assign_unit",
            lambda c: application.assignable(unit, c).assign_unit(
                command, by=COORDINATOR.as_record()
            ),
        )
        return result

    version: int = application.repository.get(case_id).version
    with pytest.raises(errors.UnitOfAnotherStreet) as refused:
        assign("far-police-station")
    assert refused.value.field == "unit"
    assert application.repository.get(case_id).version == version
    assert isinstance(assign("chengguan-tribunal"), UUID)  # same street: registered, accepted
    # Not registered: refused, and how to register it is said (a silent drop otherwise).
    with pytest.raises(errors.UnitNotRegistered) as unregistered:
        assign("chengguan-school")
    assert unregistered.value.field == "unit"
    assert "casetrail unit add" in unregistered.value.message
    # Asked again, the same answers: a unit's street is kept once found (CaseTrail.assignable).
    with pytest.raises(errors.UnitOfAnotherStreet):
        assign("far-police-station")
    assert isinstance(assign("chengguan-tribunal", "government"), UUID)
    # A refusal is not kept: registered meanwhile by another process, the unit is accepted.
    other = open_application(settings)
    try:
        add(settings, other, "chengguan-school", "school")
    finally:
        other.close()
    assert isinstance(assign("chengguan-school"), UUID)
    assert application.repository.get(case_id).version == version + 3
