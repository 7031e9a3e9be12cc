"""A unit member's pages never contain fields outside their set (issue 18): a case with a
unique planted value in every field it can disclose (Faker zh_CN plus unique suffixes), its
page opened as each role, and the HTML scanned: every planted value of a field outside the
role's set (`domain.access`: UNIT_MEMBER_BASE with FUNCTION_DETAIL, REPORTER_FIELDS,
ALL_FIELDS) is absent, and every value of a field inside it is present (so the scan can fail).
The same read is recorded with channel `web` and exactly the fields the rules granted. Run on
both stores (the `client` fixture); the forms and the browser are tests/web/test_case_pages.py
and test_coordination_pages.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from faker import Faker
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain.access import (
    ALL_FIELDS,
    FUNCTION_DETAIL,
    INVESTIGATOR_FIELDS,
    REPORTER_FIELDS,
    UNIT_MEMBER_BASE,
    Actor,
    CaseAccessed,
)
from domain.application import CaseTrail
from domain.clock import local_today
from domain.taxonomy import ProtectionFunction, Role
from gateway.bootstrap import open_application
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.domain.builders import STREET, id_number_for, register_units, years_before
from tests.people import fixture_user

VILLAGE = "dongshan-village"
REPORTING = "dongshan-village"
POLICE = "chengguan-police-station"
HEALTH = "chengguan-health-centre"
SCHOOL = "chengguan-school"
GOVERNANCE = "chengguan-governance-office"
SUPERVISION = "chengguan-supervision"
INVESTIGATIONS = "county-investigations"
AUDIT = "county-compliance"


@dataclass(frozen=True)
class PlantedCase:
    case_id: UUID
    # field (as in domain.access.FIELDS) -> the planted values only that field discloses
    values: dict[str, list[str]]


def _unique(faker: Faker, prefix: str) -> str:
    return f"{prefix}{faker.word()}{secrets.token_hex(4)}"


def plant(application: CaseTrail) -> PlantedCase:
    """A case of STREET reported by REPORTING, with every field planted, consulted on, assigned
    to POLICE (judicial) and HEALTH (society), each unit's intervention, a follow-up, a
    guardianship letter and an escalation."""
    faker = Faker("zh_CN")
    mark = secrets.token_hex(3)
    today = local_today()
    born = years_before(today, 11)
    surname = faker.last_name()
    name = f"{surname}{faker.first_name()}泽{mark[:1]}"
    guardian = f"{surname}{faker.first_name()}瑾"
    phone = "139" + str(secrets.randbelow(10**8)).zfill(8)
    body: dict[str, Any] = {
        "minor": {
            "name": name,
            "gender": "male",
            "date_of_birth": born.isoformat(),
            "id_number": id_number_for(born, male=True),
            "school": f"第{secrets.randbelow(900) + 100}中学{mark}",
            "grade_class": f"{secrets.randbelow(6) + 1}年级{mark}班",
            "village": VILLAGE,
        },
        "guardians": [{"name": guardian, "relation": "father", "phone": phone, "works_away": True}],
        "issues": [
            {"category": "growth_environment", "subtype": "left_behind"},
            {"category": "mental_health", "subtype": "insomnia"},
            {"category": "unlawful_harm", "subtype": "drugged"},
            {"category": "social_abnormality", "subtype": "teacher_discrimination"},
        ],
        "description": _unique(faker, "描述标记"),
        "found_by": {"role": "child_director", "unit": REPORTING},
        "method": "home_visit",
        "found_on": (today - timedelta(days=5)).isoformat(),
        "risk": "high",
    }
    reporter = Actor("fs-reporter", Role.REPORTER, REPORTING, STREET)
    coordinator = Actor("fs-coordinator", Role.COORDINATOR, GOVERNANCE, STREET)
    police = Actor("fs-police", Role.UNIT_MEMBER, POLICE, STREET)
    health = Actor("fs-health", Role.UNIT_MEMBER, HEALTH, STREET)
    case_id = application.report_clue(cmd.ReportClue.model_validate(body), reporter)
    decision = _unique(faker, "会商标记")
    police_notes = _unique(faker, "派出所措施标记")
    health_notes = _unique(faker, "卫生院措施标记")
    follow_up = _unique(faker, "回访标记")
    escalation = _unique(faker, "提级标记")
    task = _unique(faker, "任务标记")
    by = coordinator.as_record()

    def change(actor: Actor, action: str, do: Any) -> None:
        application.change_case(case_id, actor, action, do)

    change(
        coordinator,
        "hold_consultation",
        lambda c: c.hold_consultation(
            cmd.HoldConsultation(held_on=today, participants=[POLICE, HEALTH], decision=decision),
            by=by,
        ),
    )
    for unit, function in ((POLICE, "judicial"), (HEALTH, "society")):
        command = cmd.AssignUnit.model_validate(
            {"unit": unit, "function": function, "task": task, "due_on": today.isoformat()}
        )
        change(
            coordinator,
            "assign_unit",
            lambda c, command=command: application.assignable(command.unit, c).assign_unit(
                command, by=by
            ),
        )
    for actor, notes, function in (
        (police, police_notes, "judicial"),
        (health, health_notes, "society"),
    ):
        intervention = cmd.RecordIntervention.model_validate(
            {
                "function": function,
                "measure": "home_visit",
                "notes": notes,
                "done_on": today.isoformat(),
            }
        )
        change(
            actor,
            "record_intervention",
            lambda c, i=intervention, a=actor: c.record_intervention(i, by=a.as_record()),
        )
    change(
        coordinator,
        "record_follow_up",
        lambda c: c.record_follow_up(cmd.RecordFollowUp(visited_on=today, notes=follow_up), by=by),
    )
    change(
        coordinator,
        "sign_guardianship_letter",
        lambda c: c.sign_guardianship_letter(
            cmd.SignGuardianshipLetter.model_validate(
                {
                    "guardian_index": 0,
                    "reason": "parents_working_away",
                    "signed_on": today.isoformat(),
                }
            ),
            by=by,
        ),
    )
    # An investigation order for the investigator the `auth` fixture signs in.
    application.issue_investigation_order(
        cmd.IssueInvestigationOrder(
            case_id=case_id,
            investigator=fixture_user(Role.INVESTIGATOR, INVESTIGATIONS),
            reason="一案一倒查：核查知情范围。",
            expires_at=datetime.now(UTC) + timedelta(days=10),
        ),
        coordinator,
    )
    change(
        coordinator,
        "escalate",
        lambda c: c.escalate(cmd.Escalate(to_level="county", reason=escalation), by=by),
    )
    values = {
        "minor.name": [name],
        "minor.id_number": [body["minor"]["id_number"]],
        "minor.school": [body["minor"]["school"]],
        "minor.grade_class": [body["minor"]["grade_class"]],
        "guardians": [guardian, phone],
        "description": [body["description"]],
        "issues.growth_environment": ["留守儿童"],
        "issues.mental_health": ["失眠"],
        "issues.unlawful_harm": ["被人麻醉"],
        "issues.social_abnormality": ["遭受教师歧视"],
        "consultations": [decision],
        "letters": ["父母外出务工"],
        "follow_ups": [follow_up],
        "escalations": [escalation],
        "assignments": [task],
        # Another unit's notes: only with `interventions` (all of them).
        "interventions": [health_notes],
        # The police's own notes: with `interventions`, or as the police's own.
        "interventions.own_unit": [police_notes],
    }
    return PlantedCase(case_id, values)


@pytest.fixture
def planted(settings: Settings, client: TestClient) -> Iterator[tuple[CaseTrail, PlantedCase]]:
    application = open_application(settings)
    try:
        register_units(application, POLICE, HEALTH, SCHOOL, GOVERNANCE)
        yield application, plant(application)
    finally:
        application.close()


def _visible(field: str, fields: frozenset[str], unit: str) -> bool:
    """Whether the planted values of `field` may be on the page of a reader granted
    `fields` (of unit `unit`)."""
    if field in _NOTES_OF:
        # A unit's intervention notes: all of them with `interventions`, its own with
        # `interventions.own_unit`.
        own = "interventions.own_unit" in fields and unit == _NOTES_OF[field]
        return "interventions" in fields or own
    return field in fields


# Whose intervention notes each planted value is.
_NOTES_OF = {"interventions": HEALTH, "interventions.own_unit": POLICE}


# (role, unit, purpose, the fields the rules grant it on this case)
READERS = [
    (
        Role.UNIT_MEMBER,
        POLICE,
        "intervention",
        UNIT_MEMBER_BASE | FUNCTION_DETAIL[ProtectionFunction.JUDICIAL],
    ),
    (
        Role.UNIT_MEMBER,
        HEALTH,
        "follow_up",
        UNIT_MEMBER_BASE | FUNCTION_DETAIL[ProtectionFunction.SOCIETY],
    ),
    (Role.REPORTER, REPORTING, "follow_up", REPORTER_FIELDS),
    (Role.COORDINATOR, GOVERNANCE, "consultation", ALL_FIELDS),
    (Role.SUPERVISOR, SUPERVISION, "follow_up", ALL_FIELDS),
    # Under an order: every field (its access log is read on its own, never on this page).
    (Role.INVESTIGATOR, INVESTIGATIONS, "investigation", INVESTIGATOR_FIELDS - {"access_log"}),
]


@pytest.mark.parametrize(("role", "unit", "purpose", "fields"), READERS)
def test_a_readers_page_holds_exactly_its_field_set(
    client: TestClient,
    auth: TokenFactory,
    planted: tuple[CaseTrail, PlantedCase],
    role: Role,
    unit: str,
    purpose: str,
    fields: frozenset[str],
) -> None:
    application, case = planted
    headers = auth(role, unit)
    answer = client.get(f"/cases/{case.case_id}?purpose={purpose}", headers=headers)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["cache-control"] == "no-store"
    html = answer.text
    leaked = {
        f: v
        for f, values in case.values.items()
        if not _visible(f, fields, unit)
        for v in values
        if v in html
    }
    assert not leaked, f"{role}/{unit}: fields outside its set on the page: {sorted(leaked)}"
    missing = {
        f: v
        for f, values in case.values.items()
        if _visible(f, fields, unit)
        for v in values
        if v not in html
    }
    assert not missing, f"{role}/{unit}: fields of its set not shown: {sorted(missing)}"
    # The read behind the page: recorded with channel web, the granted fields exactly.
    reads = [
        e
        for e in application.access_events(case.case_id)
        if isinstance(e, CaseAccessed) and e.actor["unit"] == unit and e.channel == "web"
    ]
    assert reads, "the page's read was not recorded with channel web"
    assert set(reads[-1].fields) == set(fields)
    assert reads[-1].purpose == purpose


def test_the_judicial_unit_member_sees_no_consultation_nor_other_units_notes(
    client: TestClient, auth: TokenFactory, planted: tuple[CaseTrail, PlantedCase]
) -> None:
    """The issue's sentence, said plainly for the police (judicial): no consultation, no
    health centre notes, no mental-health detail, no letters, no follow-ups; its own notes,
    the unlawful-harm detail and the description are there."""
    _, case = planted
    html = client.get(
        f"/cases/{case.case_id}?purpose=intervention", headers=auth(Role.UNIT_MEMBER, POLICE)
    ).text
    for hidden in ("consultations", "interventions", "issues.mental_health", "letters"):
        for value in case.values[hidden]:
            assert value not in html, hidden
    assert "会商研判" not in html  # not even the section's heading
    for shown in ("interventions.own_unit", "issues.unlawful_harm", "description", "minor.name"):
        for value in case.values[shown]:
            assert value in html, shown


@pytest.mark.parametrize(
    ("role", "unit", "purpose"),
    [
        (Role.UNIT_MEMBER, SCHOOL, "intervention"),  # a unit never assigned
        (Role.REPORTER, "xihe-village", "follow_up"),  # another village's reporter
        (Role.INVESTIGATOR, "county-investigations-2", "investigation"),  # no order
        # An access log's reader, never a case's content.
        (Role.COMPLIANCE_AUDITOR, AUDIT, "compliance_review"),
    ],
)
def test_a_reader_without_the_case_gets_the_missing_case_page(
    client: TestClient,
    auth: TokenFactory,
    planted: tuple[CaseTrail, PlantedCase],
    role: Role,
    unit: str,
    purpose: str,
) -> None:
    _, case = planted
    headers = auth(role, unit)
    refused = client.get(f"/cases/{case.case_id}?purpose={purpose}", headers=headers)
    missing = client.get(
        f"/cases/{UUID(int=secrets.randbits(122))}?purpose={purpose}", headers=headers
    )
    assert refused.status_code == missing.status_code == 404
    assert "未找到，或您无权查看" in refused.text
    for values in case.values.values():
        for value in values:
            assert value not in refused.text
    # The same page for both, but for the request id.
    assert _without_request_id(refused.text) == _without_request_id(missing.text)


def _without_request_id(html: str) -> str:
    start = html.find('<span class="rid">')
    return html if start < 0 else html[:start] + html[html.find("</span>", start) :]
