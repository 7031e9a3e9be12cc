"""The case file (一线索一档案): one aggregate per clue, its whole life as events.

Each public method checks the rules against the current state and raises a named error from
`domain.errors` when one is broken; only then does it trigger the event (the `@event` methods),
so replaying history never re-checks rules that held when the event happened. Event payloads are
plain JSON values (dates as ISO strings) so that the stored form does not depend on Python types.

Dates: whatever a command says happened on a file (a consultation held, an intervention done, a
letter signed, a follow-up visit) did not happen before the clue was found (`found_on`); the
command models (`domain.commands`) bound every date against today and a horizon. Proven in
`tests/domain/test_dates.py` and over HTTP, nothing written, in `tests/integration/test_dates.py`.
No rule's message quotes a submitted value or what the file holds (`tests/domain/test_messages.py`).

The units' duty cycle on an assignment (issue 14): a person of the assigned unit signs for it
(签收, `AssignmentAcknowledged` version 2), or declines it with a reason, and reports its result
(办结反馈); declining and the result end it. Version 1 acknowledgements (sent by the unit's client
on its own) are upcast as receipts, in events and in snapshots, so a store written before reads
them as `received_at`, never as signed for. `duty_state` is the one rule for an assignment's
state. Proven in `tests/domain/test_duty_cycle.py` (each refusal, the old store) and over HTTP
in `tests/integration/test_duty_cycle.py`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from domain import commands as cmd
from domain import errors, identity
from domain.clock import MonotonicTimestamps
from domain.taxonomy import CaseStatus, Category, Gender, LetterReason, RiskLevel, risk_floor

Record = dict[str, Any]

# Issues that make a guardianship responsibility letter (监护责任书) applicable for each reason.
_LETTER_ISSUES = {
    LetterReason.PARENTS_WORKING_AWAY: {(Category.GROWTH_ENVIRONMENT, "left_behind")},
    LetterReason.UNSUPERVISED: {
        (Category.GROWTH_ENVIRONMENT, "long_without_guardianship"),
        (Category.GROWTH_ENVIRONMENT, "de_facto_unsupported"),
        (Category.GROWTH_ENVIRONMENT, "orphan"),
        (Category.GROWTH_ENVIRONMENT, "left_behind"),
    },
}


def _issue_keys(issues: list[Record]) -> list[tuple[str, str]]:
    return [(i["category"], i["subtype"]) for i in issues]


def _at(timestamp: datetime | None) -> str:
    """The time of the event being applied, as ISO text.

    An `@event` method that names a `timestamp` parameter receives its own event's timestamp.
    `self.modified_on` must not be used there: it is still the previous event's time.
    """
    if timestamp is None:
        raise TypeError("the event's timestamp was not passed to the @event method")
    return timestamp.isoformat()


def _check_floor(issues: list[Record], level: str, field: str) -> None:
    floor = risk_floor(_issue_keys(issues))
    if RiskLevel(level).rank < floor.rank:
        # The floor is the rule's, not the caller's input: it says what to choose instead.
        raise errors.RiskBelowFloor(
            f"the risk given is below the floor '{floor}' required by the issues listed "
            "(self-harm, suspected sexual assault, pregnancy, being drugged and long-term lack "
            f"of guardianship are never below '{RiskLevel.HIGH}')",
            field=field,
        )


# Keys of an assignment record added with the units' duty cycle (issue 14), all None at first:
# `received_at` (the unit client's receipt, only from a version 1 acknowledgement), `signed_for`
# ({"at", "user", "unit"}), `declined` ({"at", "reason", "user"}), `result` ({"at", "measures",
# "outcome", "recommendation", "user"}).
_DUTY_CYCLE_KEYS: dict[str, Any] = {
    "received_at": None,
    "signed_for": None,
    "declined": None,
    "result": None,
}


def _upcast_assignment(assignment: Record) -> None:
    """An assignment record of a snapshot taken before the duty cycle: its `acknowledged_at`
    came from the unit client's automatic acknowledgement, a receipt (as `upcast_v1_v2` of the
    event says), so it moves to `received_at` and nothing is signed for."""
    received = assignment.get("acknowledged_at")
    assignment.update(_DUTY_CYCLE_KEYS)
    assignment["received_at"] = received
    assignment["acknowledged_at"] = None


class DutyState(StrEnum):
    """Where a unit stands with one assignment (its inbox, the worklists, the ledger)."""

    PUBLISHED = "published"  # assigned; its notice is on its way, no receipt known yet
    RECEIVED = "received"  # the unit's client confirmed receipt (a machine)
    SIGNED_FOR = "signed_for"  # a person of the unit signed for it (签收), due after today
    RESULT_DUE = "result_due"  # signed for, and due today
    OVERDUE = "overdue"  # the due date passed without a result
    DECLINED = "declined"  # the unit declined it (ended)
    RESULT_REPORTED = "result_reported"  # 办结反馈 (ended)
    ENDED = "ended"  # ended otherwise: completed, withdrawn, transferred, case closed


DUTY_STATE_LABELS: dict[DutyState, str] = {
    DutyState.PUBLISHED: "已发送",
    DutyState.RECEIVED: "已接收",
    DutyState.SIGNED_FOR: "已签收",
    DutyState.RESULT_DUE: "今日应反馈",
    DutyState.OVERDUE: "已逾期",
    DutyState.DECLINED: "已退回",
    DutyState.RESULT_REPORTED: "已办结反馈",
    DutyState.ENDED: "已结束",
}


def duty_state(
    *,
    ended_at: str | None,
    outcome: str | None,
    due_on: str,
    signed_for_at: str | None,
    received_at: str | None,
    today: date,
) -> DutyState:
    """The state of an assignment from its facts, on `today` (the local day): an ended one by
    how it ended; an open one overdue once its due date has passed, else by how far the unit
    got (signed for, received, only published). One rule for every reader of it."""
    if ended_at is not None:
        if outcome == "declined":
            return DutyState.DECLINED
        if outcome == "result_reported":
            return DutyState.RESULT_REPORTED
        return DutyState.ENDED
    due = date.fromisoformat(due_on)
    if due < today:
        return DutyState.OVERDUE
    if signed_for_at is not None:
        return DutyState.RESULT_DUE if due == today else DutyState.SIGNED_FOR
    if received_at is not None:
        return DutyState.RECEIVED
    return DutyState.PUBLISHED


class Case(MonotonicTimestamps, Aggregate):
    """One clue about one minor, from report to closure.

    Its events' timestamps strictly increase even when the wall clock steps back
    (`domain.clock.MonotonicTimestamps`; tests/properties/test_clock.py)."""

    # Version 2 of the state (snapshots): assignment records carry the duty cycle's keys.
    # Version 3: the corrections and transfers of the file (issue 17), none before.
    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        for assignment in state.get("assignments", {}).values():
            _upcast_assignment(assignment)

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state.setdefault("corrections", [])
        state.setdefault("transfers", [])

    # --- creation -----------------------------------------------------------------------------

    @classmethod
    def report(cls, command: cmd.ReportClue, *, street: str, by: Record) -> Case:
        data = cmd.plain(command)
        _check_floor(data["issues"], data["risk"], "risk")
        return cls(street=street, reported_by=by, **data)

    @event("ClueReported")
    def __init__(
        self,
        *,
        street: str,
        reported_by: Record,
        minor: Record,
        guardians: list[Record],
        issues: list[Record],
        description: str,
        found_by: Record,
        method: str,
        found_on: str,
        risk: str,
    ) -> None:
        self.street = street
        self.reported_by = reported_by
        self.reporting_unit: str = reported_by["unit"]
        self.minor = minor
        self.guardians = guardians
        self.issues = issues
        self.description = description
        self.found_by = found_by
        self.method = method
        self.found_on = found_on
        self.risk = risk
        self.status = CaseStatus.AWAITING_CONSULTATION.value
        self.consultations: list[Record] = []
        self.assignments: dict[str, Record] = {}
        self.interventions: list[Record] = []
        self.letters: list[Record] = []
        self.follow_ups: list[Record] = []
        self.escalations: list[Record] = []
        self.closure: Record | None = None
        self.corrections: list[Record] = []
        self.transfers: list[Record] = []

    # --- rules shared by the commands ---------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.status == CaseStatus.CLOSED

    def _require_open(self, doing: str) -> None:
        if self.is_closed:
            raise errors.CaseClosed(f"cannot {doing}: the case is closed; reopen it first")

    def open_assignments_of(self, unit: str) -> list[Record]:
        return [a for a in self.assignments.values() if a["unit"] == unit and a["ended"] is None]

    def _not_before_found(self, day: date, field: str) -> None:
        if day < date.fromisoformat(self.found_on):
            raise errors.DateOutOfOrder(
                f"{field} is before the clue was found (the file's found_on); "
                "give the day it actually happened",
                field=field,
            )

    def _assignment(self, assignment_id: UUID | str) -> Record:
        try:
            return self.assignments[str(assignment_id)]
        except KeyError:
            raise errors.UnknownAssignment(
                "the assignment does not exist on this case; the case's answer lists its "
                "assignments"
            ) from None

    # --- commands and their events ------------------------------------------------------------

    def reclassify(self, command: cmd.Reclassify, *, by: Record) -> None:
        self._require_open("reclassify")
        data = cmd.plain(command)
        risk = data["risk"] or self.risk
        _check_floor(data["issues"], risk, "risk")
        self._reclassified(issues=data["issues"], reason=data["reason"], risk=risk, by=by)

    @event("Reclassified")
    def _reclassified(self, issues: list[Record], reason: str, risk: str, by: Record) -> None:
        self.issues = issues
        self.risk = risk

    def assess_risk(self, command: cmd.AssessRisk, *, by: Record) -> None:
        self._require_open("assess risk")
        _check_floor(self.issues, command.level, "level")
        self._risk_assessed(level=str(command.level), reason=command.reason, by=by)

    @event("RiskAssessed")
    def _risk_assessed(self, level: str, reason: str, by: Record) -> None:
        self.risk = level

    def hold_consultation(self, command: cmd.HoldConsultation, *, by: Record) -> None:
        self._require_open("hold a consultation")
        self._not_before_found(command.held_on, "held_on")
        self._consultation_held(**cmd.plain(command), by=by)

    @event("ConsultationHeld")
    def _consultation_held(
        self, held_on: str, participants: list[str], decision: str, by: Record
    ) -> None:
        self.consultations.append(
            {"held_on": held_on, "participants": participants, "decision": decision, "by": by}
        )
        self.status = CaseStatus.INTERVENING.value

    def assign_unit(self, command: cmd.AssignUnit, *, by: Record) -> UUID:
        self._require_open("assign a unit")
        for held in self.open_assignments_of(command.unit):
            if held["function"] == command.function:
                raise errors.DuplicateAssignment(
                    f"the unit already holds open assignment {held['id']} under this protection "
                    "function; record its progress instead",
                    field="unit",
                )
        assignment_id = uuid4()
        self._unit_assigned(assignment_id=str(assignment_id), **cmd.plain(command), by=by)
        return assignment_id

    @event("UnitAssigned")
    def _unit_assigned(
        self,
        assignment_id: str,
        unit: str,
        function: str,
        task: str,
        due_on: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        self.assignments[assignment_id] = {
            "id": assignment_id,
            "unit": unit,
            "function": function,
            "task": task,
            "due_on": due_on,
            "assigned_at": _at(timestamp),
            "acknowledged_at": None,
            "ended": None,
            **_DUTY_CYCLE_KEYS,
        }
        self.status = CaseStatus.INTERVENING.value

    # --- the unit's duty cycle on an assignment: signing for (签收), declining, its result ------
    #
    # Four facts a reverse investigation (一案一倒查) tells apart: the unit's client received the
    # notice (a machine: `domain.notices.NoticeReceived`, never in this stream), a person of the
    # unit signed for the task (`AssignmentAcknowledged` v2), or declined it with a reason
    # (`AssignmentDeclined`), and the unit reported its result (办结反馈,
    # `AssignmentResultReported`). Declining and the result end the assignment. Each refusal
    # is its own named error (tests/domain/test_duty_cycle.py).

    def _held_by(self, assignment_id: UUID | str, by: Record, doing: str) -> Record:
        """The assignment, once checked that `by` is a person of the assigned unit (the pair
        street + unit code) and that it is still open."""
        assignment = self._assignment(assignment_id)
        if assignment["unit"] != by["unit"] or by.get("street", self.street) != self.street:
            raise errors.AssignmentNotHeld(
                f"your unit does not hold this assignment; only a member of the assigned unit "
                f"can {doing} it"
            )
        if assignment["ended"] is not None:
            declined = assignment.get("declined") is not None
            raise errors.AssignmentEnded(
                "the assignment was declined and has ended; the coordinator may assign again"
                if declined
                else "the assignment has already ended"
            )
        return assignment

    def acknowledge_assignment(self, assignment_id: UUID, *, unit: str, by: Record) -> None:
        """签收: a person of the assigned unit takes responsibility for the task (once)."""
        assignment = self._held_by(assignment_id, {**by, "unit": unit}, "sign for")
        signed = assignment.get("signed_for")
        if signed is not None:
            raise errors.AssignmentAlreadyAcknowledged(
                f"the assignment was already signed for at {signed['at']}"
            )
        self._assignment_acknowledged(
            assignment_id=str(assignment_id), unit=unit, by=by, receipt=False
        )

    class AssignmentAcknowledged(Aggregate.Event):
        """Version 2: a person of the assigned unit signed for the task (签收), `receipt` False.

        Version 1 (stored before the duty cycle) was sent by the unit's client on its own as
        soon as the notice arrived: a machine's receipt, not a person's. `upcast_v1_v2` keeps
        that meaning (`receipt` True), so that an old store shows those as receipts
        (`received_at`), never as signed for (tests/domain/test_duty_cycle.py)."""

        class_version = 2
        assignment_id: str
        unit: str
        by: Record
        receipt: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["receipt"] = True

    @event(AssignmentAcknowledged)
    def _assignment_acknowledged(
        self,
        assignment_id: str,
        unit: str,
        by: Record,
        receipt: bool,
        timestamp: datetime | None = None,
    ) -> None:
        assignment = self.assignments[assignment_id]
        at = _at(timestamp)
        if receipt:
            if assignment.get("received_at") is None:
                assignment["received_at"] = at
            return
        assignment["signed_for"] = {"at": at, "user": by.get("user"), "unit": unit}
        # Kept for readers of the state written before the duty cycle: the time signed for.
        assignment["acknowledged_at"] = at

    def decline_assignment(
        self, assignment_id: UUID, command: cmd.DeclineAssignment, *, by: Record
    ) -> None:
        """The unit declines the task with a reason (not after signing for it): it ends."""
        assignment = self._held_by(assignment_id, by, "decline")
        signed = assignment.get("signed_for")
        if signed is not None:
            raise errors.AssignmentAlreadyAcknowledged(
                f"the assignment was signed for at {signed['at']}; report its result instead, "
                "or ask the coordinator to end it"
            )
        self._assignment_declined(assignment_id=str(assignment_id), reason=command.reason, by=by)

    @event("AssignmentDeclined")
    def _assignment_declined(
        self, assignment_id: str, reason: str, by: Record, timestamp: datetime | None = None
    ) -> None:
        at = _at(timestamp)
        assignment = self.assignments[assignment_id]
        assignment["declined"] = {"at": at, "reason": reason, "user": by.get("user")}
        assignment["ended"] = {"at": at, "outcome": "declined"}

    def report_assignment_result(
        self, assignment_id: UUID, command: cmd.ReportAssignmentResult, *, by: Record
    ) -> None:
        """办结反馈: the unit that signed for the task reports what it did; the assignment ends."""
        assignment = self._held_by(assignment_id, by, "report the result of")
        if assignment.get("signed_for") is None:
            raise errors.AssignmentNotSignedFor(
                "the assignment has not been signed for; a member of the unit signs for it "
                "(POST .../acknowledgement) before reporting its result"
            )
        self._assignment_result_reported(
            assignment_id=str(assignment_id), **cmd.plain(command), by=by
        )

    @event("AssignmentResultReported")
    def _assignment_result_reported(
        self,
        assignment_id: str,
        measures: list[str],
        outcome: str,
        recommendation: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        at = _at(timestamp)
        assignment = self.assignments[assignment_id]
        assignment["result"] = {
            "at": at,
            "measures": measures,
            "outcome": outcome,
            "recommendation": recommendation,
            "user": by.get("user"),
        }
        assignment["ended"] = {"at": at, "outcome": "result_reported"}

    def end_assignment(self, assignment_id: UUID, *, outcome: str, by: Record) -> None:
        assignment = self._assignment(assignment_id)
        if assignment["ended"] is not None:
            raise errors.AssignmentEnded("the assignment has already ended")
        self._assignment_ended(assignment_id=str(assignment_id), outcome=outcome, by=by)

    @event("AssignmentEnded")
    def _assignment_ended(
        self, assignment_id: str, outcome: str, by: Record, timestamp: datetime | None = None
    ) -> None:
        self.assignments[assignment_id]["ended"] = {
            "at": _at(timestamp),
            "outcome": outcome,
        }

    def record_intervention(self, command: cmd.RecordIntervention, *, by: Record) -> None:
        self._require_open("record an intervention")
        self._not_before_found(command.done_on, "done_on")
        if command.assignment_id is not None:
            assignment = self._assignment(command.assignment_id)
            if assignment["unit"] != by["unit"]:
                raise errors.AssignmentNotHeld(
                    "your unit does not hold this assignment", field="assignment_id"
                )
            if assignment["ended"] is not None:
                raise errors.AssignmentEnded("the assignment has ended", field="assignment_id")
        self._intervention_recorded(**cmd.plain(command), by=by)

    @event("InterventionRecorded")
    def _intervention_recorded(
        self,
        assignment_id: str | None,
        function: str,
        measure: str,
        notes: str,
        done_on: str,
        by: Record,
    ) -> None:
        self.interventions.append(
            {
                "assignment_id": assignment_id,
                "function": function,
                "measure": measure,
                "notes": notes,
                "done_on": done_on,
                "unit": by["unit"],
            }
        )

    def sign_guardianship_letter(self, command: cmd.SignGuardianshipLetter, *, by: Record) -> None:
        self._require_open("sign a guardianship letter")
        self._not_before_found(command.signed_on, "signed_on")
        if command.guardian_index >= len(self.guardians):
            # Neither the index given nor how many guardians the file holds: file content.
            raise errors.GuardianshipLetterNotApplicable(
                "guardian_index names no guardian recorded on this file; read the case for its "
                "guardians (counted from 0)",
                field="guardian_index",
            )
        applicable = bool(_LETTER_ISSUES[command.reason] & set(_issue_keys(self.issues)))
        if command.reason is LetterReason.PARENTS_WORKING_AWAY:
            applicable = applicable or any(g["works_away"] for g in self.guardians)
        if not applicable:
            raise errors.GuardianshipLetterNotApplicable(
                "a guardianship letter for this reason applies to minors whose parents "
                "work away or who are unsupervised; nothing on this file says so",
                field="reason",
            )
        self._guardianship_letter_signed(**cmd.plain(command), by=by)

    @event("GuardianshipLetterSigned")
    def _guardianship_letter_signed(
        self, guardian_index: int, reason: str, signed_on: str, by: Record
    ) -> None:
        self.letters.append(
            {"guardian_index": guardian_index, "reason": reason, "signed_on": signed_on}
        )

    def record_follow_up(self, command: cmd.RecordFollowUp, *, by: Record) -> None:
        self._require_open("record a follow-up")
        self._not_before_found(command.visited_on, "visited_on")
        self._follow_up_recorded(**cmd.plain(command), by=by)

    @event("FollowUpRecorded")
    def _follow_up_recorded(self, visited_on: str, notes: str, by: Record) -> None:
        self.follow_ups.append({"visited_on": visited_on, "notes": notes, "unit": by["unit"]})

    def escalate(self, command: cmd.Escalate, *, by: Record) -> None:
        self._require_open("escalate")
        self._escalated(**cmd.plain(command), by=by)

    @event("Escalated")
    def _escalated(
        self,
        to: str | None,
        to_level: str,
        reason: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        self.escalations.append(
            {"to": to, "to_level": to_level, "reason": reason, "at": _at(timestamp)}
        )

    def close(self, command: cmd.CloseCase, *, by: Record) -> None:
        if self.is_closed:
            raise errors.CaseClosed("the case is already closed")
        self._closed(**cmd.plain(command), by=by)

    @event("Closed")
    def _closed(
        self, reason: str, note: str, by: Record, timestamp: datetime | None = None
    ) -> None:
        at = _at(timestamp)
        # Closing ends every open assignment: units lose sight of the case with it.
        for assignment in self.assignments.values():
            if assignment["ended"] is None:
                assignment["ended"] = {"at": at, "outcome": "case_closed"}
        self.closure = {"reason": reason, "note": note, "at": at}
        self.status = CaseStatus.CLOSED.value

    def reopen(self, command: cmd.ReopenCase, *, by: Record) -> None:
        if not self.is_closed:
            raise errors.CaseNotClosed("the case is not closed; there is nothing to reopen")
        self._reopened(reason=command.reason, by=by)

    @event("Reopened")
    def _reopened(self, reason: str, by: Record) -> None:
        self.closure = None
        self.status = CaseStatus.AWAITING_CONSULTATION.value

    # --- corrections and transfers (动态更新, issue 17) ------------------------------------------
    #
    # Append-only: a correction is an event holding, for each field it changes, the value before
    # and the value after (the store encrypts both, as every payload), so the history keeps the
    # earlier values; who may see which of them is `domain.access.disclose`'s (a reader sees the
    # old and new values of a field only if that field is in their field set). A transfer moves
    # the file to another street and/or village: the sending street's coordinators keep sight of
    # it for the grace period (`domain.access.CaseScope.previous_streets`), its units' open
    # assignments end (outcome `transferred`). Proven in tests/domain/test_corrections.py.

    def correct_details(self, command: cmd.CorrectDetails, *, by: Record) -> None:
        data = cmd.plain(command)
        changes: list[Record] = []
        minor = dict(self.minor)
        for key, value in (data.get("minor") or {}).items():
            if value is not None and minor.get(key) != value:
                changes.append({"field": f"minor.{key}", "old": minor.get(key), "new": value})
                minor[key] = value
        if data.get("village") is not None and data["village"] != self.minor["village"]:
            changes.append(
                {"field": "village", "old": self.minor["village"], "new": data["village"]}
            )
        if data.get("guardians") is not None and data["guardians"] != self.guardians:
            changes.append({"field": "guardians", "old": self.guardians, "new": data["guardians"]})
        if data.get("description") is not None and data["description"] != self.description:
            changes.append(
                {"field": "description", "old": self.description, "new": data["description"]}
            )
        if not changes:
            raise errors.NothingToCorrect(
                "the correction changes no value of the file; give the fields that are wrong "
                "with their right values",
                field="minor",
            )
        _check_identity(minor)
        if minor["date_of_birth"] > self.found_on:
            raise errors.CorrectionInconsistent(
                "the corrected date of birth is after the day the clue was found; check both",
                field="minor.date_of_birth",
            )
        self._details_corrected(changes=changes, reason=data["reason"], by=by)

    @event("DetailsCorrected")
    def _details_corrected(
        self,
        changes: list[Record],
        reason: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        minor = dict(self.minor)
        for change in changes:
            field = change["field"]
            if field.startswith("minor."):
                minor[field.removeprefix("minor.")] = change["new"]
            elif field == "village":
                minor["village"] = change["new"]
            elif field == "guardians":
                self.guardians = change["new"]
            elif field == "description":
                self.description = change["new"]
        self.minor = minor
        self.corrections.append(
            {
                "at": _at(timestamp),
                "reason": reason,
                "by": {"role": by.get("role"), "unit": by.get("unit"), "user": by.get("user")},
                "changes": changes,
            }
        )

    def transfer(
        self,
        command: cmd.TransferCase,
        *,
        by: Record,
        streets: Collection[str] | None = None,
    ) -> None:
        """`streets`: the streets registered units belong to (the service passes them); a
        transfer to another street not among them is refused (422 `to_street`), as a file
        there would be seen by nobody."""
        self._require_open("transfer")
        to_street = command.to_street
        to_village = command.to_village
        if streets is not None and to_street != self.street and to_street not in streets:
            raise errors.StreetNotRegistered(
                "no registered unit belongs to this street; check the street code, or register "
                "the street's governance office first (casetrail unit add)",
                field="to_street",
            )
        if to_street != self.street and to_village is None:
            raise errors.NothingToTransfer(
                "a transfer to another street names the village (村社区) there the minor now "
                "lives in",
                field="to_village",
            )
        if to_street == self.street and to_village in (None, self.minor["village"]):
            raise errors.NothingToTransfer(
                "the file is already in this street and village; name another street or "
                "village to transfer it to",
                field="to_street",
            )
        self._transferred(
            from_street=self.street,
            to_street=to_street,
            from_village=self.minor["village"],
            to_village=to_village or self.minor["village"],
            reason=command.reason,
            by=by,
        )

    @event("Transferred")
    def _transferred(
        self,
        from_street: str,
        to_street: str,
        from_village: str,
        to_village: str,
        reason: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        at = _at(timestamp)
        if to_street != from_street:
            # The sending street's member units hand the file over: their open assignments end
            # (they keep sight for the grace period, as after any assignment).
            for assignment in self.assignments.values():
                if assignment["ended"] is None:
                    assignment["ended"] = {"at": at, "outcome": "transferred"}
        self.street = to_street
        self.minor = {**self.minor, "village": to_village}
        self.transfers.append(
            {
                "at": at,
                "from_street": from_street,
                "to_street": to_street,
                "from_village": from_village,
                "to_village": to_village,
                "reason": reason,
                "by": {"role": by.get("role"), "unit": by.get("unit"), "user": by.get("user")},
            }
        )


def _check_identity(minor: Record) -> None:
    """The ID number, the date of birth and the gender of a corrected file agree (as when a
    clue is reported: `domain.commands.Minor`). Messages quote no value."""
    try:
        born, is_male = identity.parse_id_number(minor["id_number"])
    except identity.InvalidIdNumber as exc:
        raise errors.CorrectionInconsistent(
            f"resident ID number {exc}", field="minor.id_number"
        ) from None
    if born.isoformat() != minor["date_of_birth"]:
        raise errors.CorrectionInconsistent(
            "the date in the resident ID number (characters 7-14) disagrees with the date of "
            "birth the file would hold; correct both together",
            field="minor.id_number",
        )
    if is_male != (minor["gender"] == Gender.MALE.value):
        raise errors.CorrectionInconsistent(
            "the resident ID number's 17th digit (odd: male, even: female) disagrees with the "
            "gender the file would hold; correct both together",
            field="minor.id_number",
        )
