"""Corrections and transfers of a case file (issue 17), as pure domain rules: the events hold
the earlier and later values, the history is disclosed field by field, the ID number, date of
birth and gender stay consistent, and a transfer moves who may see the file (the sending
street for the grace period only)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from domain import clock, errors
from domain import commands as cmd
from domain.access import (
    ALL_FIELDS,
    IDENTITY,
    UNIT_MEMBER_BASE,
    Actor,
    CaseScope,
    ReadContext,
    decide,
    disclose,
)
from domain.case import Case
from domain.clock import local_today
from domain.deadlines import fold
from domain.identity import make_id_number
from domain.permissions import may
from domain.submissions import Period, periods_due_between
from domain.taxonomy import ProtectionFunction, Purpose, Role
from projections.investigation.history import history_of
from tests.domain.builders import (
    COORDINATOR,
    OTHER_STREET,
    OTHER_VILLAGE,
    POLICE,
    POLICE_MEMBER,
    REPORTER,
    SYNTHETIC_AREA,
    id_number_for,
    new_case,
    years_before,
)

OTHER_COORDINATOR = Actor(
    "coordinator-2", Role.COORDINATOR, "xiaoxi-governance-office", OTHER_STREET
)
GRACE = timedelta(hours=72)


def correct(case: Case, **body: Any) -> None:
    case.correct_details(
        cmd.CorrectDetails(**body, reason="身份证号录入错误"), by=COORDINATOR.as_record()
    )


def right_id(case: Case) -> str:
    """Another valid ID number with the file's date of birth and gender (another sequence)."""
    born = datetime.fromisoformat(case.minor["date_of_birth"]).date()
    return make_id_number(SYNTHETIC_AREA, born, 303 if case.minor["gender"] == "male" else 304)


def test_a_correction_keeps_the_earlier_value_in_its_event_and_history() -> None:
    case = new_case()
    wrong = case.minor["id_number"]
    new = right_id(case)
    correct(case, minor={"id_number": new}, village=OTHER_VILLAGE)
    assert case.minor["id_number"] == new and case.minor["village"] == OTHER_VILLAGE
    (event,) = [e for e in case.collect_events() if type(e).__name__ == "DetailsCorrected"]
    assert {c["field"]: (c["old"], c["new"]) for c in event.changes} == {  # type: ignore[attr-defined]
        "minor.id_number": (wrong, new),
        "village": ("dongshan-village", OTHER_VILLAGE),
    }
    (entry,) = disclose(case, ALL_FIELDS, reader_unit="x")["corrections"]
    assert entry["fields"] == ["minor.id_number", "village"]
    assert next((c["old"], c["new"]) for c in entry["changes"]) == (wrong, new)
    assert entry["reason"] == "身份证号录入错误"


def test_history_shows_a_field_s_values_only_to_readers_granted_it() -> None:
    case = new_case()
    wrong, new = case.minor["id_number"], right_id(case)
    correct(case, minor={"id_number": new})
    without_identity = UNIT_MEMBER_BASE - IDENTITY
    answer = disclose(case, without_identity, reader_unit=POLICE)
    (entry,) = answer["corrections"]
    assert entry["fields"] == ["minor.id_number"]  # that a correction happened, not what
    assert entry["changes"] == [] and "reason" not in entry
    text = repr(answer)
    assert wrong not in text and new not in text
    shown = repr(disclose(case, ALL_FIELDS, reader_unit="x"))
    assert wrong in shown and new in shown


def test_a_correction_that_changes_nothing_is_refused() -> None:
    case = new_case()
    with pytest.raises(errors.NothingToCorrect):
        correct(case, minor={"school": case.minor["school"]})
    assert not [e for e in case.collect_events() if type(e).__name__ == "DetailsCorrected"]


def test_corrected_id_number_must_agree_with_birth_date_and_gender() -> None:
    case = new_case()
    born = datetime.fromisoformat(case.minor["date_of_birth"]).date()
    other_day = id_number_for(years_before(born, 1), male=case.minor["gender"] == "male")
    with pytest.raises(errors.CorrectionInconsistent) as refused:
        correct(case, minor={"id_number": other_day})
    assert refused.value.field == "minor.id_number"
    assert other_day not in refused.value.message
    # Both corrected together: accepted.
    correct(
        case, minor={"id_number": other_day, "date_of_birth": years_before(born, 1).isoformat()}
    )
    assert case.minor["id_number"] == other_day


def test_who_may_correct_and_transfer() -> None:
    case = new_case()
    scope = CaseScope.of(case)
    assert may(COORDINATOR, "correct_details", scope)
    assert may(REPORTER, "correct_details", scope)
    assert not may(POLICE_MEMBER, "correct_details", scope)
    assert may(COORDINATOR, "transfer", scope)
    assert not may(REPORTER, "transfer", scope)
    assert not may(OTHER_COORDINATOR, "correct_details", scope)


def _transferred(case: Case) -> datetime:
    case.transfer(
        cmd.TransferCase(to_street=OTHER_STREET, to_village="xiaoxi-village", reason="随父母迁居"),
        by=COORDINATOR.as_record(),
    )
    return datetime.fromisoformat(case.transfers[-1]["at"])


def test_a_transfer_moves_the_file_and_the_sending_street_keeps_the_grace_period() -> None:
    case = new_case()
    assignment = case.assign_unit(
        cmd.AssignUnit(
            unit=POLICE,
            function=ProtectionFunction.JUDICIAL,
            task="核查",
            due_on=clock.local_today(),
        ),
        by=COORDINATOR.as_record(),
    )
    at = _transferred(case)
    assert case.street == OTHER_STREET and case.minor["village"] == "xiaoxi-village"
    assert case.assignments[str(assignment)]["ended"]["outcome"] == "transferred"
    scope = CaseScope.of(case)

    def rule(actor: Actor, now: datetime, purpose: Purpose = Purpose.CONSULTATION) -> str | None:
        decision = decide(actor, ReadContext(scope=scope, now=now, grace=GRACE), purpose)
        return decision.rule if decision.granted else None

    assert rule(OTHER_COORDINATOR, at) == "coordinator_same_street"
    assert rule(COORDINATOR, at + GRACE) == "coordinator_transferred_grace"
    assert rule(COORDINATOR, at + GRACE + timedelta(seconds=1)) is None
    assert (
        rule(REPORTER, at + timedelta(hours=1), Purpose.FOLLOW_UP) == "reporter_transferred_grace"
    )
    assert rule(REPORTER, at + GRACE + timedelta(seconds=1), Purpose.FOLLOW_UP) is None
    # The sending street's unit keeps its grace after its assignment ended with the transfer.
    assert rule(POLICE_MEMBER, at + timedelta(hours=1), Purpose.INTERVENTION) == "unit_member_grace"
    assert rule(POLICE_MEMBER, at + GRACE + timedelta(seconds=1), Purpose.INTERVENTION) is None
    # Commands: the receiving street's coordinator now, the sending street's no longer.
    assert may(OTHER_COORDINATOR, "correct_details", scope)
    assert not may(COORDINATOR, "correct_details", scope)
    assert not may(REPORTER, "correct_details", scope)


def test_a_transfer_to_another_street_names_the_village_and_must_move_something() -> None:
    case = new_case()
    with pytest.raises(errors.NothingToTransfer) as refused:
        case.transfer(
            cmd.TransferCase(to_street=OTHER_STREET, reason="迁居"), by=COORDINATOR.as_record()
        )
    assert refused.value.field == "to_village"
    with pytest.raises(errors.NothingToTransfer):
        case.transfer(
            cmd.TransferCase(
                to_street=case.street, to_village=case.minor["village"], reason="迁居"
            ),
            by=COORDINATOR.as_record(),
        )
    # Within the street, to another village: the units keep their assignments.
    case.transfer(
        cmd.TransferCase(to_street=case.street, to_village=OTHER_VILLAGE, reason="迁居"),
        by=COORDINATOR.as_record(),
    )
    assert case.minor["village"] == OTHER_VILLAGE and CaseScope.of(case).previous_streets == ()


def test_replay_and_an_old_snapshot_state_keep_the_history() -> None:
    case = new_case()
    correct(case, minor={"id_number": right_id(case)})
    _transferred(case)
    events = case.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Case)
    assert replayed.corrections == case.corrections and replayed.transfers == case.transfers
    state: dict[str, Any] = {"assignments": {}}
    Case.upcast_v2_v3(state)
    assert state["corrections"] == [] and state["transfers"] == []


def test_the_deadline_rules_follow_a_transfer_to_the_receiving_street() -> None:
    case = new_case()
    case.assign_unit(
        cmd.AssignUnit(
            unit=POLICE,
            function=ProtectionFunction.JUDICIAL,
            task="核查",
            due_on=clock.local_today(),
        ),
        by=COORDINATOR.as_record(),
    )
    _transferred(case)
    duties: dict[Any, Any] = {}
    fold(duties, case.collect_events())
    (folded,) = duties.values()
    assert folded.street == OTHER_STREET
    assert all(a["ended_at"] is not None for a in folded.assignments.values())


@pytest.mark.parametrize("text", ["0000Q1", "1999Q4", "2100Q1", "2026Q5", "initial ", "", "2026q1"])
def test_a_period_outside_the_service_s_years_or_malformed_is_refused(text: str) -> None:
    with pytest.raises(errors.SubmissionInvalid) as refused:
        Period.parse(text)
    assert refused.value.field == "period"


def test_periods_due_are_the_initial_one_then_every_quarter() -> None:
    found = periods_due_between(date(2026, 7, 23), date(2026, 7, 1), date(2027, 3, 31))
    assert [p.code for p in found] == ["initial", "2026Q3", "2026Q4", "2027Q1"]
    assert Period.parse("2026Q3").due_on(date(2026, 7, 23)) == date(2026, 9, 30)
    assert Period.parse("initial").due_on(date(2026, 7, 23)) == date(2026, 7, 23)


def test_a_corrected_birth_date_after_the_clue_was_found_is_refused() -> None:
    case = new_case(found_on=local_today() - timedelta(days=400))
    born = local_today() - timedelta(days=300)
    male = case.minor["gender"] == "male"
    with pytest.raises(errors.CorrectionInconsistent) as refused:
        correct(
            case,
            minor={"date_of_birth": born.isoformat(), "id_number": id_number_for(born, male=male)},
        )
    assert refused.value.field == "minor.date_of_birth"


def test_the_investigation_history_follows_a_transfer_as_the_aggregate_does() -> None:
    case = new_case()
    correct(case, minor={"id_number": right_id(case)})
    _transferred(case)
    history = history_of(case.id, enumerate(case.collect_events(), start=1))
    assert history.current is not None and history.current.street == case.street == OTHER_STREET
    assert [s.kind for s in history.steps] == ["clue_reported", "details_corrected", "transferred"]
