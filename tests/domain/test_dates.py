"""Dates that cannot be: every date of a command lies in the service's window, what happened is
not in the future, a due date is neither past nor beyond the horizon, a date of birth is a
minor's; and the aggregate refuses anything that happened on a file before its clue was found,
naming the field, with nothing triggered."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from domain import clock, errors
from domain import commands as cmd
from domain.case import Case
from tests.domain.builders import COORDINATOR, id_number_for, new_case, report_body

TODAY = clock.local_today()  # the office's calendar (UTC+8), as the rules judge it
BY = COORDINATOR.as_record()
Body = dict[str, Any]

# Each command with a date, a valid body, and the date's field.
DATED: list[tuple[type[BaseModel], Body, str]] = [
    (
        cmd.HoldConsultation,
        {"held_on": TODAY, "participants": ["chengguan-police-station"], "decision": "介入"},
        "held_on",
    ),
    (
        cmd.RecordIntervention,
        {"function": "family", "measure": "home_visit", "notes": "家访", "done_on": TODAY},
        "done_on",
    ),
    (
        cmd.SignGuardianshipLetter,
        {"guardian_index": 0, "reason": "parents_working_away", "signed_on": TODAY},
        "signed_on",
    ),
    (cmd.RecordFollowUp, {"visited_on": TODAY, "notes": "季度回访"}, "visited_on"),
]
IMPOSSIBLE = [date(1, 1, 1), date(1999, 12, 31), date(2100, 1, 1), date(9999, 12, 31)]


def error_locs(model: type[BaseModel], body: Body) -> list[tuple[str | int, ...]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    for error in caught.value.errors():
        # The message never quotes what was submitted.
        assert str(body) not in error["msg"]
    return [tuple(e["loc"]) for e in caught.value.errors()]


@pytest.mark.parametrize("day", [*IMPOSSIBLE, TODAY + timedelta(days=1)])
@pytest.mark.parametrize(("model", "body", "field"), DATED, ids=[d[2] for d in DATED])
def test_a_day_that_happened_outside_the_window_or_tomorrow_is_refused(
    model: type[BaseModel], body: Body, field: str, day: date
) -> None:
    assert model.model_validate(body)  # the body is valid as it stands
    assert error_locs(model, {**body, field: day}) == [(field,)]


@pytest.mark.parametrize("day", [*IMPOSSIBLE, TODAY + timedelta(days=1)])
def test_found_on_outside_the_window_or_in_the_future_is_refused(day: date) -> None:
    body = report_body()
    body["found_on"] = day.isoformat()
    assert error_locs(cmd.ReportClue, body) == [("found_on",)]


@pytest.mark.parametrize("born", [date(1, 1, 1), date(1900, 1, 1), date(9999, 12, 31)])
def test_a_date_of_birth_that_is_no_minor_is_refused(born: date) -> None:
    body = report_body()
    body["minor"]["date_of_birth"] = born.isoformat()
    assert ("minor", "date_of_birth") in error_locs(cmd.ReportClue, body)


def test_the_adult_message_says_no_age() -> None:
    body = report_body(born=date(TODAY.year - 40, 1, 1))
    with pytest.raises(ValidationError) as caught:
        cmd.ReportClue.model_validate(body)
    (error,) = [e for e in caught.value.errors() if e["loc"] == ("minor", "date_of_birth")]
    assert "aged" not in error["msg"] and "40" not in error["msg"] and "39" not in error["msg"]


def _assign(due: date) -> Body:
    return {
        "unit": "chengguan-police-station",
        "function": "judicial",
        "task": "核查",
        "due_on": due,
    }


@pytest.mark.parametrize(
    "due",
    [
        TODAY - timedelta(days=1),
        TODAY + cmd.DUE_HORIZON + timedelta(days=1),
        date(2099, 12, 31),
        date(9999, 12, 31),
        date(1, 1, 1),
    ],
)
def test_a_due_date_past_or_beyond_the_horizon_is_refused(due: date) -> None:
    assert error_locs(cmd.AssignUnit, _assign(due)) == [("due_on",)]


@pytest.mark.parametrize("due", [TODAY, TODAY + timedelta(days=90), TODAY + cmd.DUE_HORIZON])
def test_a_due_date_within_the_horizon_passes(due: date) -> None:
    assert cmd.AssignUnit.model_validate(_assign(due)).due_on == due


@pytest.mark.parametrize(
    "expires_at",
    ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2100-01-01T00:00:00+00:00"],
)
def test_an_order_expiry_that_cannot_be_is_refused_before_any_arithmetic(expires_at: str) -> None:
    body = {
        "case_id": "6f0c1a52-3f2b-4d8e-9a41-0d1f4c7b2e90",
        "investigator": "investigator-1",
        "reason": "一案一倒查",
        "expires_at": expires_at,
    }
    assert error_locs(cmd.IssueInvestigationOrder, body) == [("expires_at",)]


# --- the aggregate: nothing happens on a file before its clue was found -------------------------


def _case(found_on: date) -> Case:
    case = new_case(found_on=found_on, works_away=True)
    case.collect_events()
    return case


@pytest.mark.parametrize("days_before", [1, 30, 365 * 5])
@pytest.mark.parametrize(("model", "body", "field"), DATED, ids=[d[2] for d in DATED])
def test_a_day_before_the_clue_was_found_is_refused_naming_the_field(
    model: type[BaseModel], body: Body, field: str, days_before: int
) -> None:
    found_on = TODAY - timedelta(days=10)
    case = _case(found_on)
    command = model.model_validate({**body, field: found_on - timedelta(days=days_before)})
    act: dict[type[BaseModel], Callable[[Any], None]] = {
        cmd.HoldConsultation: lambda c: case.hold_consultation(c, by=BY),
        cmd.RecordIntervention: lambda c: case.record_intervention(c, by=BY),
        cmd.SignGuardianshipLetter: lambda c: case.sign_guardianship_letter(c, by=BY),
        cmd.RecordFollowUp: lambda c: case.record_follow_up(c, by=BY),
    }
    with pytest.raises(errors.DateOutOfOrder) as caught:
        act[model](command)
    assert caught.value.field == field
    assert caught.value.status == 422
    assert case.collect_events() == []
    # The same day as found_on passes.
    act[model](model.model_validate({**body, field: found_on}))
    assert len(case.collect_events()) == 1


def test_id_numbers_of_the_window_are_well_formed() -> None:
    """The builders can make a minor born on the earliest allowed day."""
    assert id_number_for(cmd.EARLIEST_BIRTH, male=True)[6:14] == f"{cmd.EARLIEST_BIRTH:%Y%m%d}"
