"""Synthetic case histories for the read-model tests: every kind of case event, seeded.

Each case is reported by its village and then taken, at random, through consultations,
assignments (acknowledged or not, ended or not), interventions, guardianship letters,
follow-ups, reclassification, risk assessments, escalation, closure and reopening. Names and
ID numbers come from `gateway.cli.demo.synthetic_report` (Faker zh_CN): never a real person.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from faker import Faker

from domain import commands as cmd
from domain import errors
from domain.access import Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.clock import local_today
from domain.taxonomy import SUBTYPES, Category, ProtectionFunction, Role, risk_floor
from gateway.cli.demo import GOVERNANCE_OFFICE, MEMBER_UNITS, VILLAGES, synthetic_report

STREET = "chengguan-street"
COORDINATOR = Actor("coordinator-1", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)


def reporter(village: str) -> Actor:
    return Actor(f"reporter-{village}", Role.REPORTER, village, STREET)


def member(unit: str) -> Actor:
    return Actor(f"member-{unit}", Role.UNIT_MEMBER, unit, STREET)


@dataclass
class Workload:
    """Drives one application; remembers the bodies it reported (for planted-data searches)."""

    application: CaseTrail
    seed: int = 7
    bodies: dict[UUID, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.faker = Faker("zh_CN")
        self.faker.seed_instance(self.seed)

    def report(self, village: str | None = None, body: dict[str, Any] | None = None) -> UUID:
        village = village or self.rng.choice(VILLAGES)
        body = body or synthetic_report(self.faker, self.rng, village=village)
        case_id = self.application.report_clue(
            cmd.ReportClue.model_validate(body), reporter(body["minor"]["village"])
        )
        self.bodies[case_id] = body
        return case_id

    def _change(
        self, case_id: UUID, actor: Actor, action: str, change: Callable[[Case], Any]
    ) -> Any:
        return self.application.change_case(case_id, actor, action, change)

    def advance(self, case_id: UUID) -> None:
        """A random, valid history after the report."""
        rng, today, by = self.rng, local_today(), COORDINATOR.as_record()
        if rng.random() < 0.2:
            return  # still awaiting its consultation
        self._change(
            case_id,
            COORDINATOR,
            "hold_consultation",
            lambda c: c.hold_consultation(
                cmd.HoldConsultation(
                    held_on=date.fromisoformat(c.found_on),
                    participants=[GOVERNANCE_OFFICE],
                    decision="会商决定分工介入。",
                ),
                by=by,
            ),
        )
        for _ in range(rng.choice((1, 1, 2))):
            function, unit = rng.choice(list(MEMBER_UNITS.items()))
            self._assign(case_id, unit, function, today + timedelta(days=rng.randint(0, 30)))
        if rng.random() < 0.3:
            self._reclassify(case_id)
        if rng.random() < 0.3:
            self._assess(case_id)
        if rng.random() < 0.4:
            with contextlib.suppress(errors.GuardianshipLetterNotApplicable):
                self._change(
                    case_id,
                    COORDINATOR,
                    "sign_guardianship_letter",
                    lambda c: c.sign_guardianship_letter(
                        cmd.SignGuardianshipLetter(
                            guardian_index=0, reason="parents_working_away", signed_on=today
                        ),
                        by=by,
                    ),
                )
        for _ in range(rng.randint(0, 2)):
            self._change(
                case_id,
                COORDINATOR,
                "record_follow_up",
                lambda c: c.record_follow_up(
                    cmd.RecordFollowUp(
                        # Never before the clue was found: the aggregate refuses that.
                        visited_on=max(
                            date.fromisoformat(c.found_on),
                            today - timedelta(days=rng.randint(0, 200)),
                        ),
                        notes="季度回访。",
                    ),
                    by=by,
                ),
            )
        if rng.random() < 0.2:
            self._change(
                case_id,
                COORDINATOR,
                "escalate",
                lambda c: c.escalate(cmd.Escalate(to_level="county", reason="需县级协调。"), by=by),
            )
        if rng.random() < 0.25:
            self.close(case_id)
            if rng.random() < 0.3:
                self._change(
                    case_id,
                    COORDINATOR,
                    "reopen",
                    lambda c: c.reopen(cmd.ReopenCase(reason="情况反复。"), by=by),
                )

    def _assign(self, case_id: UUID, unit: str, function: ProtectionFunction, due: date) -> None:
        by = COORDINATOR.as_record()
        try:
            assignment = self._change(
                case_id,
                COORDINATOR,
                "assign_unit",
                lambda c: c.assign_unit(
                    cmd.AssignUnit(unit=unit, function=function, task="入户走访。", due_on=due),
                    by=by,
                ),
            )
        except errors.DuplicateAssignment:  # the same unit and function twice: skip it
            return
        if self.rng.random() < 0.6:
            who = member(unit)
            self._change(
                case_id,
                who,
                "acknowledge_assignment",
                lambda c: c.acknowledge_assignment(assignment, unit=unit, by=who.as_record()),
            )
            self._change(
                case_id,
                who,
                "record_intervention",
                lambda c: c.record_intervention(
                    cmd.RecordIntervention(
                        assignment_id=assignment,
                        function=function,
                        measure="home_visit",
                        notes="已走访。",
                        done_on=local_today(),
                    ),
                    by=who.as_record(),
                ),
            )
            if self.rng.random() < 0.3:
                self._change(
                    case_id,
                    COORDINATOR,
                    "end_assignment",
                    lambda c: c.end_assignment(
                        assignment, outcome="done", by=COORDINATOR.as_record()
                    ),
                )

    def _assess(self, case_id: UUID) -> None:
        def assess(case: Case) -> None:
            floor = risk_floor([(i["category"], i["subtype"]) for i in case.issues])
            level = "urgent" if floor.rank > 0 else self.rng.choice(("low", "medium", "high"))
            case.assess_risk(
                cmd.AssessRisk(level=level, reason="风险评估。"), by=COORDINATOR.as_record()
            )

        self._change(case_id, COORDINATOR, "assess_risk", assess)

    def _reclassify(self, case_id: UUID) -> None:
        category = self.rng.choice(list(Category))
        issues = [{"category": str(category), "subtype": self.rng.choice(list(SUBTYPES[category]))}]
        floor = risk_floor([(i["category"], i["subtype"]) for i in issues])
        risk = "urgent" if floor.rank > 0 else self.rng.choice(("low", "medium", "high"))
        self._change(
            case_id,
            COORDINATOR,
            "reclassify",
            lambda c: c.reclassify(
                cmd.Reclassify.model_validate(
                    {"issues": issues, "reason": "会商后重新分类。", "risk": risk}
                ),
                by=COORDINATOR.as_record(),
            ),
        )

    def close(self, case_id: UUID) -> None:
        self._change(
            case_id,
            COORDINATOR,
            "close",
            lambda c: c.close(
                cmd.CloseCase(reason="resolved", note="已化解。"), by=COORDINATOR.as_record()
            ),
        )

    def cases(self, count: int) -> list[UUID]:
        found = []
        for _ in range(count):
            case_id = self.report()
            self.advance(case_id)
            found.append(case_id)
        return found
