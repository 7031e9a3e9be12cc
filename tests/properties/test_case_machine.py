"""The case file's invariants under random command sequences (issue 22, Properties).

A `RuleBasedStateMachine` drives one `domain.case.Case` (pure domain objects, no store) with
every command a coordinator or a unit can give, each at random, valid or not, while a small
model says what must happen: which named refusal, or which new state. After every step:

- a closed file accepts nothing but reopening (each other command is refused with a
  `DomainError` and leaves no event behind), and closing ended every assignment;
- the risk is never below the floor its issues set (`domain.taxonomy.HIGH_RISK_FLOOR`);
- each assignment's duty cycle is the model's: published -> received (an old client's receipt,
  as upcast from a store written before the duty cycle) -> signed for -> result reported, or
  declined (not after signing for), or ended by the coordinator, by closing; `duty_state`
  agrees, and nothing moves out of an ended state;
- replaying the events stored so far rebuilds exactly the live state (so every prefix does,
  step by step);
- the stream's timestamps strictly increase, although the machine's clock steps back at random
  (`domain.clock.MonotonicTimestamps`).

Bounded by the `properties` profile (tests/properties/conftest.py); `soak` runs it longer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from domain import clock, errors
from domain import commands as cmd
from domain.application import replay
from domain.case import Case, DutyState, duty_state
from domain.taxonomy import HIGH_RISK_FLOOR, ProtectionFunction, RiskLevel, risk_floor
from tests.domain.builders import (
    COORDINATOR,
    HEALTH_MEMBER,
    POLICE_MEMBER,
    REPORTER,
    STREET,
    report_clue,
)
from tests.properties.conftest import bounded

# Two ordinary issues and every issue that sets the high floor.
ISSUES = [
    ("mental_health", "anxiety"),
    ("growth_environment", "left_behind"),
    *sorted((str(category), subtype) for category, subtype in HIGH_RISK_FLOOR),
]
issue_sets = st.lists(st.sampled_from(ISSUES), min_size=1, max_size=4, unique=True)
levels = st.sampled_from(list(RiskLevel))
members = st.sampled_from([POLICE_MEMBER, HEALTH_MEMBER])
functions = st.sampled_from([ProtectionFunction.GOVERNMENT, ProtectionFunction.JUDICIAL])
picks = st.integers(min_value=0, max_value=30)
NOTE = "依据走访情况处理。"

# Where a model assignment stands: the facts the machine expects the case to hold.
OPEN, SIGNED, DECLINED, RESULT, ENDED = "open", "signed", "declined", "result", "ended"
LIVE = {OPEN, SIGNED}


def floor_of(issues: list[tuple[str, str]]) -> RiskLevel:
    return risk_floor(issues)


def as_issues(keys: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"category": c, "subtype": s} for c, s in keys]


def state(case: Case | None) -> dict[str, Any] | None:
    if case is None:
        return None
    return {k: v for k, v in vars(case).items() if k != "_pending_events"}


class CaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = datetime.now(UTC)
        self.events: list[Any] = []
        self.model: dict[str, dict[str, Any]] = {}
        self.closed = False
        self.risk = RiskLevel.LOW
        self.issues: list[tuple[str, str]] = []
        self.case: Case

    # --- helpers ----------------------------------------------------------------------------

    def clock_source(self) -> datetime:
        return self.now

    def attempt(self, expected: type[errors.DomainError] | None, action: Callable[[], Any]) -> Any:
        """Run `action` on the machine's clock; the named refusal, or success and its events."""
        before = self.case.version
        with clock.using(self.clock_source):
            if expected is not None:
                with pytest.raises(expected):
                    action()
                # A refusal leaves no trace on the file.
                assert self.case.pending_events == []
                assert self.case.version == before
                return None
            result = action()
        new = self.case.collect_events()
        assert new, "a command that succeeded stored nothing"
        self.events.extend(new)
        return result

    def pick(self, index: int) -> str | None:
        # In the order assigned: uuid4 ids sorted would pick differently on each run of an
        # example, and hypothesis could not replay a failure.
        ids = list(self.model)
        return ids[index % len(ids)] if ids else None

    def held_refusal(self, assignment_id: str | None, member: Any) -> type[errors.DomainError]:
        """The refusal `_held_by` gives first, or DomainError when it should accept."""
        if assignment_id is None:
            return errors.UnknownAssignment
        held = self.model[assignment_id]
        if held["unit"] != member.unit:
            return errors.AssignmentNotHeld
        if held["state"] not in LIVE:
            return errors.AssignmentEnded
        return errors.DomainError

    # --- creation -------------------------------------------------------------------------------

    @initialize(issues=issue_sets, risk=levels)
    def report(self, issues: list[tuple[str, str]], risk: RiskLevel) -> None:
        floor = floor_of(issues)
        command = report_clue(issues=as_issues(issues), risk=str(risk))
        if risk.rank < floor.rank:
            with pytest.raises(errors.RiskBelowFloor):
                Case.report(command, street=STREET, by=REPORTER.as_record())
            risk = floor
            command = report_clue(issues=as_issues(issues), risk=str(risk))
        with clock.using(self.clock_source):
            self.case = Case.report(command, street=STREET, by=REPORTER.as_record())
        self.events.extend(self.case.collect_events())
        self.risk, self.issues = risk, issues

    # --- the clock ------------------------------------------------------------------------------

    @rule(seconds=st.integers(min_value=-3 * 24 * 3600, max_value=3600))
    def step_clock(self, seconds: int) -> None:
        # Mostly backwards: an NTP step, a restored VM, a wrong manual setting.
        self.now += timedelta(seconds=seconds)

    # --- the coordinator's commands -------------------------------------------------------------

    @rule(issues=issue_sets, risk=st.none() | levels)
    def reclassify(self, issues: list[tuple[str, str]], risk: RiskLevel | None) -> None:
        command = cmd.Reclassify(issues=as_issues(issues), reason=NOTE, risk=risk)
        effective = risk or self.risk
        expected: type[errors.DomainError] | None = None
        if self.closed:
            expected = errors.CaseClosed
        elif effective.rank < floor_of(issues).rank:
            expected = errors.RiskBelowFloor
        self.attempt(expected, lambda: self.case.reclassify(command, by=COORDINATOR.as_record()))
        if expected is None:
            self.risk, self.issues = effective, issues

    @rule(level=levels)
    def assess_risk(self, level: RiskLevel) -> None:
        command = cmd.AssessRisk(level=level, reason=NOTE)
        expected: type[errors.DomainError] | None = None
        if self.closed:
            expected = errors.CaseClosed
        elif level.rank < floor_of(self.issues).rank:
            expected = errors.RiskBelowFloor
        self.attempt(expected, lambda: self.case.assess_risk(command, by=COORDINATOR.as_record()))
        if expected is None:
            self.risk = level

    @rule()
    def hold_consultation(self) -> None:
        command = cmd.HoldConsultation(
            held_on=clock.local_today(), participants=["police"], decision=NOTE
        )
        self.attempt(
            errors.CaseClosed if self.closed else None,
            lambda: self.case.hold_consultation(command, by=COORDINATOR.as_record()),
        )

    @rule(member=members, function=functions, days=st.integers(min_value=0, max_value=30))
    def assign_unit(self, member: Any, function: ProtectionFunction, days: int) -> None:
        command = cmd.AssignUnit(
            unit=member.unit,
            function=function,
            task=NOTE,
            due_on=clock.local_today() + timedelta(days=days),
        )
        expected: type[errors.DomainError] | None = None
        if self.closed:
            expected = errors.CaseClosed
        elif any(
            a["unit"] == member.unit and a["function"] == function and a["state"] in LIVE
            for a in self.model.values()
        ):
            expected = errors.DuplicateAssignment
        assigned = self.attempt(
            expected, lambda: self.case.assign_unit(command, by=COORDINATOR.as_record())
        )
        if expected is None:
            assert isinstance(assigned, UUID)
            self.model[str(assigned)] = {
                "unit": member.unit,
                "function": function,
                "state": OPEN,
                "signed": False,
                "received": False,
            }

    @rule(index=picks)
    def end_assignment(self, index: int) -> None:
        chosen = self.pick(index)
        expected: type[errors.DomainError] | None = None
        if chosen is None:
            expected = errors.UnknownAssignment
        elif self.model[chosen]["state"] not in LIVE:
            expected = errors.AssignmentEnded
        target = UUID(chosen) if chosen else uuid4()
        self.attempt(
            expected,
            lambda: self.case.end_assignment(
                target, outcome="completed", by=COORDINATOR.as_record()
            ),
        )
        if expected is None and chosen is not None:
            self.model[chosen]["state"] = ENDED

    @rule()
    def record_follow_up(self) -> None:
        command = cmd.RecordFollowUp(visited_on=clock.local_today(), notes=NOTE)
        self.attempt(
            errors.CaseClosed if self.closed else None,
            lambda: self.case.record_follow_up(command, by=COORDINATOR.as_record()),
        )

    @rule()
    def escalate(self) -> None:
        command = cmd.Escalate(reason=NOTE)
        self.attempt(
            errors.CaseClosed if self.closed else None,
            lambda: self.case.escalate(command, by=COORDINATOR.as_record()),
        )

    @rule()
    def close(self) -> None:
        command = cmd.CloseCase(reason="resolved", note=NOTE)
        self.attempt(
            errors.CaseClosed if self.closed else None,
            lambda: self.case.close(command, by=COORDINATOR.as_record()),
        )
        if not self.closed:
            self.closed = True
            for assignment in self.model.values():
                if assignment["state"] in LIVE:
                    assignment["state"] = ENDED

    @rule()
    def reopen(self) -> None:
        command = cmd.ReopenCase(reason=NOTE)
        self.attempt(
            None if self.closed else errors.CaseNotClosed,
            lambda: self.case.reopen(command, by=COORDINATOR.as_record()),
        )
        self.closed = False

    # --- the unit's duty cycle --------------------------------------------------------------

    @rule(index=picks, member=members)
    def sign_for(self, index: int, member: Any) -> None:
        chosen = self.pick(index)
        expected: type[errors.DomainError] | None = self.held_refusal(chosen, member)
        if expected is errors.DomainError:
            assert chosen is not None
            live = self.model[chosen]["state"]
            expected = errors.AssignmentAlreadyAcknowledged if live == SIGNED else None
        target = UUID(chosen) if chosen else uuid4()
        self.attempt(
            expected,
            lambda: self.case.acknowledge_assignment(
                target, unit=member.unit, by=member.as_record()
            ),
        )
        if expected is None and chosen is not None:
            self.model[chosen].update(state=SIGNED, signed=True)

    @rule(index=picks, member=members)
    def decline(self, index: int, member: Any) -> None:
        chosen = self.pick(index)
        expected: type[errors.DomainError] | None = self.held_refusal(chosen, member)
        if expected is errors.DomainError:
            assert chosen is not None
            live = self.model[chosen]["state"]
            expected = errors.AssignmentAlreadyAcknowledged if live == SIGNED else None
        target = UUID(chosen) if chosen else uuid4()
        command = cmd.DeclineAssignment(reason=NOTE)
        self.attempt(
            expected,
            lambda: self.case.decline_assignment(target, command, by=member.as_record()),
        )
        if expected is None and chosen is not None:
            self.model[chosen]["state"] = DECLINED

    @rule(index=picks, member=members)
    def report_result(self, index: int, member: Any) -> None:
        chosen = self.pick(index)
        expected: type[errors.DomainError] | None = self.held_refusal(chosen, member)
        if expected is errors.DomainError:
            assert chosen is not None
            live = self.model[chosen]["state"]
            expected = errors.AssignmentNotSignedFor if live == OPEN else None
        target = UUID(chosen) if chosen else uuid4()
        command = cmd.ReportAssignmentResult(
            measures=["home_visit"], outcome=NOTE, recommendation="continue"
        )
        self.attempt(
            expected,
            lambda: self.case.report_assignment_result(target, command, by=member.as_record()),
        )
        if expected is None and chosen is not None:
            self.model[chosen]["state"] = RESULT

    @precondition(lambda self: bool(self.model))
    @rule(index=picks)
    def old_client_receipt(self, index: int) -> None:
        """A receipt as a store written before the duty cycle holds it (an `AssignmentAcknowledged`
        of version 1, upcast with `receipt` True): the unit's client received the notice. It
        moves nothing but `received_at`, the first time."""
        chosen = self.pick(index)
        assert chosen is not None
        held = self.model[chosen]
        self.attempt(
            None,
            lambda: self.case._assignment_acknowledged(
                assignment_id=chosen, unit=held["unit"], by={"unit": held["unit"]}, receipt=True
            ),
        )
        held["received"] = True

    # --- a closed file accepts nothing but reopening ----------------------------------------

    @precondition(lambda self: self.closed)
    @rule(index=picks, member=members)
    def closed_file_refuses_everything_but_reopening(self, index: int, member: Any) -> None:
        chosen = self.pick(index)
        target = UUID(chosen) if chosen else uuid4()
        coordinator = COORDINATOR.as_record()
        today = clock.local_today()
        # The commands are valid ones, built on the real clock; only the file refuses them.
        reclassify = cmd.Reclassify(issues=as_issues(self.issues), reason=NOTE)
        assess = cmd.AssessRisk(level=RiskLevel.URGENT, reason=NOTE)
        consult = cmd.HoldConsultation(held_on=today, participants=["police"], decision=NOTE)
        assign = cmd.AssignUnit(
            unit=member.unit, function=ProtectionFunction.SOCIETY, task=NOTE, due_on=today
        )
        follow_up = cmd.RecordFollowUp(visited_on=today, notes=NOTE)
        attempts: list[Callable[[], Any]] = [
            lambda: self.case.reclassify(reclassify, by=coordinator),
            lambda: self.case.assess_risk(assess, by=coordinator),
            lambda: self.case.hold_consultation(consult, by=coordinator),
            lambda: self.case.assign_unit(assign, by=coordinator),
            lambda: self.case.record_follow_up(follow_up, by=coordinator),
            lambda: self.case.escalate(cmd.Escalate(reason=NOTE), by=coordinator),
            lambda: self.case.close(cmd.CloseCase(reason="resolved", note=NOTE), by=coordinator),
            lambda: self.case.acknowledge_assignment(
                target, unit=member.unit, by=member.as_record()
            ),
            lambda: self.case.decline_assignment(
                target, cmd.DeclineAssignment(reason=NOTE), by=member.as_record()
            ),
            lambda: self.case.end_assignment(target, outcome="completed", by=coordinator),
        ]
        for action in attempts:
            self.attempt(errors.DomainError, action)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def closure_ends_every_assignment(self) -> None:
        assert self.case.is_closed == self.closed
        if self.closed:
            assert self.case.closure is not None
            assert all(a["ended"] is not None for a in self.case.assignments.values())

    @invariant()
    def risk_never_below_its_floor(self) -> None:
        keys = [(i["category"], i["subtype"]) for i in self.case.issues]
        assert RiskLevel(self.case.risk).rank >= risk_floor(keys).rank
        assert self.case.risk == self.risk

    @invariant()
    def assignments_follow_the_duty_cycle(self) -> None:
        assert set(self.case.assignments) == set(self.model)
        today = clock.local_today()
        for key, expected in self.model.items():
            held = self.case.assignments[key]
            signed, declined, result = held["signed_for"], held["declined"], held["result"]
            ended = held["ended"]
            assert (ended is None) == (expected["state"] in LIVE)
            # Signed for stays a fact once true, whatever ended the assignment after.
            assert (signed is not None) == expected["signed"]
            assert (declined is not None) == (expected["state"] == DECLINED)
            assert (result is not None) == (expected["state"] == RESULT)
            # Declined only before signing for; a result only after it.
            assert not (declined and signed)
            state_now = duty_state(
                ended_at=ended["at"] if ended else None,
                outcome=ended["outcome"] if ended else None,
                due_on=held["due_on"],
                signed_for_at=signed["at"] if signed else None,
                received_at=held["received_at"],
                today=today,
            )
            if expected["state"] == DECLINED:
                assert state_now is DutyState.DECLINED
            elif expected["state"] == RESULT:
                assert state_now is DutyState.RESULT_REPORTED
            elif expected["state"] == ENDED:
                assert state_now is DutyState.ENDED
            elif expected["state"] == SIGNED:
                assert state_now in {DutyState.SIGNED_FOR, DutyState.RESULT_DUE}
            elif expected["received"]:
                assert state_now is DutyState.RECEIVED
            else:
                assert state_now is DutyState.PUBLISHED
            assert (held["received_at"] is not None) == expected["received"]

    @invariant()
    def replay_rebuilds_the_state(self) -> None:
        assert state(replay(None, self.events)) == state(self.case)

    @invariant()
    def the_stream_keeps_its_order(self) -> None:
        assert [e.originator_version for e in self.events] == list(range(1, len(self.events) + 1))
        stamps = [e.timestamp for e in self.events]
        assert all(a < b for a, b in itertools.pairwise(stamps)), stamps


CaseMachine.TestCase.settings = bounded()
test_case_machine = CaseMachine.TestCase
