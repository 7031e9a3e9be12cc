"""The case's rules answer without quoting what was submitted (an index, a unit code, an
assignment id, a level) or what the file holds (how many guardians): each message names the
rule and what to do."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain import commands as cmd
from domain import errors
from domain.case import Case
from domain.clock import local_today
from tests.domain.builders import COORDINATOR, POLICE, new_case

BY = COORDINATOR.as_record()


def _case() -> Case:
    case = new_case(works_away=False)
    case.collect_events()
    return case


@pytest.mark.parametrize("index", [1, 3, 5])
def test_a_missing_guardian_index_is_not_quoted_nor_the_count(index: int) -> None:
    case = _case()
    command = cmd.SignGuardianshipLetter(
        guardian_index=index, reason="parents_working_away", signed_on=local_today()
    )
    with pytest.raises(errors.GuardianshipLetterNotApplicable) as caught:
        case.sign_guardianship_letter(command, by=BY)
    assert caught.value.field == "guardian_index"
    assert str(index) not in caught.value.message
    assert str(len(case.guardians)) not in caught.value.message


def test_an_unknown_assignment_id_is_not_quoted() -> None:
    case = _case()
    unknown = uuid4()
    with pytest.raises(errors.UnknownAssignment) as caught:
        case.acknowledge_assignment(unknown, unit=POLICE, by=BY)
    assert str(unknown) not in caught.value.message
    with pytest.raises(errors.UnknownAssignment) as ended:
        case.end_assignment(unknown, outcome="completed", by=BY)
    assert str(unknown) not in ended.value.message


@pytest.mark.parametrize("unit", [POLICE, "chengguan-health-centre", "dongshan-village"])
def test_a_unit_code_is_not_quoted(unit: str) -> None:
    case = _case()
    command = cmd.AssignUnit.model_validate(
        {"unit": unit, "function": "family", "task": "家访", "due_on": local_today()}
    )
    assignment = case.assign_unit(command, by=BY)
    with pytest.raises(errors.DuplicateAssignment) as caught:
        case.assign_unit(command, by=BY)
    assert unit not in caught.value.message
    with pytest.raises(errors.AssignmentNotHeld) as held:
        case.acknowledge_assignment(assignment, unit="chengguan-other-unit", by=BY)
    assert "chengguan-other-unit" not in held.value.message


@pytest.mark.parametrize("level", ["low", "medium"])
def test_a_risk_below_the_floor_does_not_quote_the_level_given(level: str) -> None:
    case = _case()
    command = cmd.Reclassify.model_validate(
        {
            "issues": [{"category": "mental_health", "subtype": "self_harm"}],
            "reason": "复核",
            "risk": level,
        }
    )
    with pytest.raises(errors.RiskBelowFloor) as caught:
        case.reclassify(command, by=BY)
    assert f"'{level}'" not in caught.value.message
    assert "'high'" in caught.value.message  # what to choose instead
