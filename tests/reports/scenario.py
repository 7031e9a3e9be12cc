"""A real store with one investigated case: a clue reported, read, reassessed and read again,
and an investigation opened over it with a finding and a rectification item. Shared by the
report tests that need the real application (document, CLI, route)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.investigations import Investigation
from domain.taxonomy import Purpose, Role
from tests.integration.planted import planted_case

REPORTER = Actor("user-r1", Role.REPORTER, "dongshan-village", "chengguan-street")
LEAD = {"user": "user-lead-1", "role": "county_lead", "unit": "county-office", "street": ""}
INVESTIGATOR = "user-inv-1"


@dataclass(frozen=True)
class Scenario:
    case_id: UUID
    investigation_id: UUID


def investigated_case(application: CaseTrail, investigator: str = INVESTIGATOR) -> Scenario:
    planted = planted_case()
    case_id = application.report_clue(cmd.ReportClue.model_validate(planted.body), REPORTER)
    application.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-scenario-1")
    application.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-scenario-2")
    investigation = Investigation.open(
        kind="suicide",
        incident_on=date(2026, 10, 2),
        id_number=planted.id_number,
        name=planted.name,
        case_ids=[case_id],
        by=LEAD,
    )
    investigation.assign_investigators([investigator], reason="县级倒查", by=LEAD)
    investigation.record_finding(
        duty="签收并落实交办任务",
        unit="no1-middle-school",
        person="user-school-7",
        determination="not_fulfilled",
        evidence=[1, 2],
        note="学校未签收交办任务。",
        by={"user": investigator, "role": "investigator", "unit": "county-inspection"},
    )
    investigation.add_rectification(
        item="建立交办任务签收督办机制",
        owner="no1-middle-school",
        due_on=date(2099, 1, 31),
        by=LEAD,
    )
    application.save(investigation)
    return Scenario(case_id, investigation.id)


def order_for(application: CaseTrail, case_id: UUID, investigator: str) -> None:
    """An investigation order in force for `investigator` on the case, by its coordinator."""
    coordinator = Actor("user-c1", Role.COORDINATOR, "chengguan-office", "chengguan-street")
    application.issue_investigation_order(
        cmd.IssueInvestigationOrder(
            case_id=case_id,
            investigator=investigator,
            reason="县级一案一倒查",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        ),
        coordinator,
    )
