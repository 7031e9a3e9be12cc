"""The scripted scenario of issue 13, played on the real application over a SQLite file.

A grid worker (网格员) of the village finds a clue and the village reports it; the street's
coordinator reads it; the consultation (问题会商) is held late; the school and the police are
assigned, each notified (the relay's facts, stored as the relay stores them) and each unit's
client receives its notice; the police sign for it (签收), the school never does; the police read
the file; a health-centre member without an assignment is refused; a member of the social
affairs office reads it under break-glass; the coordinator closes the file.

Every step notes the store position and instant of the event it stored, read back from the store
by a plain decode (not through the code under test), so that the tests can state the expected
timeline, matrix and deadlines exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from domain import commands as cmd
from domain.access import Actor
from domain.application import AccessRefused, CaseTrail
from domain.clock import local_today
from domain.notices import notice_published, notice_received
from domain.taxonomy import Purpose, Role
from tests.domain import builders as b

SCHOOL = "chengguan-central-school"
SOCIAL = "chengguan-social-affairs-office"
GRID = Actor("grid-1", Role.REPORTER, b.VILLAGE, b.STREET)
SCHOOL_MEMBER = Actor("school-1", Role.UNIT_MEMBER, SCHOOL, b.STREET)
SOCIAL_MEMBER = Actor("social-1", Role.UNIT_MEMBER, SOCIAL, b.STREET)
FOUND_ON = local_today() - timedelta(days=2)
ISSUES = [
    {"category": "mental_health", "subtype": "depression"},
    {"category": "growth_environment", "subtype": "left_behind"},
]


@dataclass(frozen=True)
class Mark:
    position: int
    at: datetime

    @property
    def iso(self) -> str:
        return self.at.isoformat()


@dataclass
class Scenario:
    app: CaseTrail
    case_id: UUID
    school_aid: str = ""
    police_aid: str = ""
    held_on: date = field(default_factory=date.today)
    due_on: date = field(default_factory=lambda: local_today() + timedelta(days=10))
    marks: dict[str, Mark] = field(default_factory=dict)
    # Every free text and identifying value the scenario stored: no analysis may repeat one.
    secrets: list[str] = field(default_factory=list)


def _mark(app: CaseTrail) -> Mark:
    position = app.recorder.max_notification_id() or 0
    notification = next(iter(app.notifications(start=position)))
    event: Any = app.mapper.to_domain_event(notification)
    return Mark(position, event.timestamp)


def _change(app: CaseTrail, case_id: UUID, actor: Actor, action: str, change: Any) -> Any:
    return app.change_case(case_id, actor, action, change)


def play(app: CaseTrail) -> Scenario:
    body = b.report_body(issues=ISSUES, risk="medium", found_on=FOUND_ON)
    body["found_by"] = {"role": "grid_worker", "unit": b.VILLAGE}
    body["method"] = "grid_patrol"
    case_id = app.report_clue(cmd.ReportClue.model_validate(body), GRID)
    s = Scenario(app, case_id)
    s.secrets += [
        body["minor"]["name"],
        body["minor"]["id_number"],
        body["guardians"][0]["name"],
        body["guardians"][0]["phone"],
        body["description"],
        "学校与派出所分别跟进",
        "跟进核查",
        "学生情绪失控,需立即联系监护人",
        "已稳定",
    ]
    marks = s.marks
    marks["reported"] = _mark(app)

    app.read_case(case_id, b.COORDINATOR, Purpose.CONSULTATION, "req-coordinator")
    marks["coordinator_read"] = _mark(app)

    by = b.COORDINATOR.as_record()
    _change(
        app,
        case_id,
        b.COORDINATOR,
        "hold_consultation",
        lambda c: c.hold_consultation(
            cmd.HoldConsultation(
                held_on=s.held_on,
                participants=[b.GOVERNANCE_OFFICE, SCHOOL, b.POLICE],
                decision="学校与派出所分别跟进",
            ),
            by=by,
        ),
    )
    marks["consultation"] = _mark(app)

    due = s.due_on
    for unit, function, key in ((SCHOOL, "school", "school"), (b.POLICE, "judicial", "police")):
        aid = _change(
            app,
            case_id,
            b.COORDINATOR,
            "assign_unit",
            lambda c, unit=unit, function=function: c.assign_unit(
                cmd.AssignUnit(unit=unit, function=function, task="跟进核查", due_on=due), by=by
            ),
        )
        setattr(s, f"{key}_aid", str(aid))
        marks[f"{key}_assigned"] = _mark(app)
        published = notice_published(
            message_id=f"msg-{key}",
            unit=unit,
            street=b.STREET,
            kind="assignment",
            case_id=case_id,
            assignment_id=str(aid),
            source_event=f"{case_id}/{marks[f'{key}_assigned'].position}",
        )
        app.store_events([published])
        marks[f"{key}_published"] = _mark(app)
        app.store_events([notice_received(published, {"user": f"{key}-client", "unit": unit})])
        marks[f"{key}_received"] = _mark(app)

    police = b.POLICE_MEMBER.as_record()
    _change(
        app,
        case_id,
        b.POLICE_MEMBER,
        "acknowledge_assignment",
        lambda c: c.acknowledge_assignment(UUID(s.police_aid), unit=b.POLICE, by=police),
    )
    marks["police_signed"] = _mark(app)

    app.read_case(case_id, b.POLICE_MEMBER, Purpose.INTERVENTION, "req-police")
    marks["police_read"] = _mark(app)

    try:
        app.read_case(case_id, b.HEALTH_MEMBER, Purpose.INTERVENTION, "req-health")
    except AccessRefused:
        marks["health_refused"] = _mark(app)
    else:  # pragma: no cover - the rules refuse it
        raise AssertionError("a health-centre member without assignment was granted")

    app.read_case(
        case_id,
        SOCIAL_MEMBER,
        Purpose.EMERGENCY,
        "req-social",
        break_glass_reason="学生情绪失控,需立即联系监护人",
    )
    marks["break_glass"] = _mark(app)

    _change(
        app,
        case_id,
        b.COORDINATOR,
        "close",
        lambda c: c.close(cmd.CloseCase(reason="resolved", note="已稳定"), by=by),
    )
    marks["closed"] = _mark(app)
    return s
