"""Validation of commands before anything is written: each bad input names its field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from domain import commands as cmd
from domain.clock import local_today
from domain.identity import age_on
from domain.taxonomy import Gender
from tests.domain.builders import id_number_for, report_body, years_before

Loc = tuple[str | int, ...]
Body = dict[str, Any]


def errors_of(model: type[BaseModel], body: Body) -> list[tuple[Loc, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def only_error_loc(model: type[BaseModel], body: Body) -> Loc:
    """The location of the single error the body raises (fails if it raises several)."""
    found = errors_of(model, body)
    assert len(found) == 1, found
    return found[0][0]


def changed(edit: Callable[[Body], None], body: Body | None = None) -> Body:
    changed_body = copy.deepcopy(body or report_body())
    edit(changed_body)
    return changed_body


# --- ReportClue: the valid body -------------------------------------------------------------


def test_a_valid_report_passes_and_keeps_its_values() -> None:
    body = report_body(male=False)
    clue = cmd.ReportClue.model_validate(body)
    assert clue.minor.id_number == body["minor"]["id_number"]
    assert clue.minor.date_of_birth == date.fromisoformat(body["minor"]["date_of_birth"])
    assert clue.minor.gender is Gender.FEMALE
    assert clue.issues[0].key() == ("mental_health", "anxiety")
    assert clue.guardians[0].phone == "13900000000"


def test_id_number_is_upper_cased_and_text_is_stripped() -> None:
    # Find a date of birth whose check character is X, so that lower case can be tried.
    born = years_before(local_today(), 9)
    while not id_number_for(born, male=True).endswith("X"):
        born -= timedelta(days=1)
    body = report_body(born=born)
    body["minor"]["id_number"] = " " + body["minor"]["id_number"].lower() + " "
    body["description"] = "  情绪低落  "
    clue = cmd.ReportClue.model_validate(body)
    assert clue.minor.id_number == id_number_for(born, male=True)
    assert clue.description == "情绪低落"


def test_several_issues_across_categories_pass() -> None:
    issues = [
        {"category": "growth_environment", "subtype": "maltreatment"},
        {"category": "unlawful_harm", "subtype": "maltreatment"},
        {"category": "social_abnormality", "subtype": "bullied"},
    ]
    clue = cmd.ReportClue.model_validate(report_body(issues=issues))
    assert [i.key() for i in clue.issues] == [(i["category"], i["subtype"]) for i in issues]


# --- the minor ------------------------------------------------------------------------------


def test_bad_id_checksum_names_minor_id_number() -> None:
    def edit(body: Body) -> None:
        number = body["minor"]["id_number"]
        body["minor"]["id_number"] = number[:17] + ("0" if number[17] != "0" else "1")

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("minor", "id_number")


def test_id_date_disagreeing_with_date_of_birth_names_minor_id_number() -> None:
    born = years_before(local_today(), 10)

    def edit(body: Body) -> None:
        body["minor"]["id_number"] = id_number_for(born - timedelta(days=1), male=True)

    body = changed(edit, report_body(born=born, male=True))
    assert only_error_loc(cmd.ReportClue, body) == ("minor", "id_number")


def test_gender_disagreeing_with_id_names_minor_id_number() -> None:
    def edit(body: Body) -> None:
        body["minor"]["gender"] = "female"

    assert only_error_loc(cmd.ReportClue, changed(edit, report_body(male=True))) == (
        "minor",
        "id_number",
    )


def test_female_id_with_male_gender_names_minor_id_number() -> None:
    def edit(body: Body) -> None:
        body["minor"]["gender"] = "male"

    assert only_error_loc(cmd.ReportClue, changed(edit, report_body(male=False))) == (
        "minor",
        "id_number",
    )


def test_an_adult_on_the_report_date_names_minor_date_of_birth() -> None:
    today = local_today()
    born = years_before(today, 18)
    assert age_on(born, today) == 18
    body = report_body(born=born, found_on=today)
    assert only_error_loc(cmd.ReportClue, body) == ("minor", "date_of_birth")


def test_a_seventeen_year_old_whose_18th_birthday_is_tomorrow_passes() -> None:
    today = local_today()
    tomorrow = today + timedelta(days=1)
    try:
        born = tomorrow.replace(year=tomorrow.year - 18)
    except ValueError:  # tomorrow is 29 February: the 18th birthday is then 1 March
        born = date(tomorrow.year - 18, 3, 1)
    assert age_on(born, today) == 17
    clue = cmd.ReportClue.model_validate(report_body(born=born, found_on=today))
    assert clue.minor.date_of_birth == born


def test_a_date_of_birth_in_the_future_names_minor_date_of_birth() -> None:
    def edit(body: Body) -> None:
        body["minor"]["date_of_birth"] = (local_today() + timedelta(days=1)).isoformat()

    errors = errors_of(cmd.ReportClue, changed(edit))
    assert ("minor", "date_of_birth") in [loc for loc, _ in errors]


@pytest.mark.parametrize("value", ["", "   ", "张" * 33])
def test_minor_name_empty_or_too_long(value: str) -> None:
    def edit(body: Body) -> None:
        body["minor"]["name"] = value

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("minor", "name")


@pytest.mark.parametrize("village", ["东山村", "Dongshan", "-village", "a b"])
def test_village_must_be_a_code(village: str) -> None:
    def edit(body: Body) -> None:
        body["minor"]["village"] = village

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("minor", "village")


# --- issues ---------------------------------------------------------------------------------


def test_unknown_subtype_names_the_issue_subtype() -> None:
    body = report_body(issues=[{"category": "mental_health", "subtype": "boredom"}])
    assert only_error_loc(cmd.ReportClue, body) == ("issues", 0, "subtype")


def test_subtype_of_another_category_names_the_issue_subtype() -> None:
    body = report_body(issues=[{"category": "mental_health", "subtype": "left_behind"}])
    assert only_error_loc(cmd.ReportClue, body) == ("issues", 0, "subtype")


def test_the_position_of_the_bad_issue_is_named() -> None:
    body = report_body(
        issues=[
            {"category": "mental_health", "subtype": "anxiety"},
            {"category": "social_abnormality", "subtype": "pregnancy"},
        ]
    )
    assert only_error_loc(cmd.ReportClue, body) == ("issues", 1, "subtype")


def test_unknown_category_names_the_issue_category() -> None:
    body = report_body(issues=[{"category": "school_life", "subtype": "anxiety"}])
    errors = errors_of(cmd.ReportClue, body)
    assert errors == [(("issues", 0, "category"), "enum")]


def test_duplicate_issue_names_issues() -> None:
    issue = {"category": "mental_health", "subtype": "anxiety"}
    body = report_body(issues=[issue, dict(issue)])
    assert only_error_loc(cmd.ReportClue, body) == ("issues",)


def test_no_issue_names_issues() -> None:
    def edit(body: Body) -> None:
        body["issues"] = []

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("issues",)


# --- texts ----------------------------------------------------------------------------------


def test_description_of_2000_characters_passes_and_2001_does_not() -> None:
    def at_limit(body: Body) -> None:
        body["description"] = "情" * 2000

    def over_limit(body: Body) -> None:
        body["description"] = "情" * 2001

    assert len(cmd.ReportClue.model_validate(changed(at_limit)).description) == 2000
    errors = errors_of(cmd.ReportClue, changed(over_limit))
    assert errors == [(("description",), "string_too_long")]


@pytest.mark.parametrize(
    "control",
    ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b"],
)
def test_control_characters_in_text_are_refused(control: str) -> None:
    def edit(body: Body) -> None:
        body["description"] = f"情绪低落{control}注意力不集中"

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("description",)


def test_control_characters_in_a_nested_name_are_refused() -> None:
    def edit(body: Body) -> None:
        body["guardians"][0]["name"] = "张\x1b[31m三"

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("guardians", 0, "name")


def test_new_lines_and_tabs_are_allowed_in_a_description() -> None:
    def edit(body: Body) -> None:
        body["description"] = "第一次走访:\n\t情绪低落\n第二次走访:好转"

    assert "\n\t" in cmd.ReportClue.model_validate(changed(edit)).description


# --- unknown fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "loc"),
    [
        (lambda b: b.update(score=3), ("score",)),
        (lambda b: b["minor"].update(nickname="小明"), ("minor", "nickname")),
        (lambda b: b["guardians"][0].update(email="a@example.com"), ("guardians", 0, "email")),
        (lambda b: b["issues"][0].update(severity="high"), ("issues", 0, "severity")),
        (lambda b: b["found_by"].update(user="someone"), ("found_by", "user")),
    ],
)
def test_unknown_fields_are_forbidden_at_every_level(
    edit: Callable[[Body], None], loc: Loc
) -> None:
    assert errors_of(cmd.ReportClue, changed(edit)) == [(loc, "extra_forbidden")]


def test_unknown_field_on_another_command_is_forbidden() -> None:
    body = {"level": "high", "reason": "复评", "by": "someone-else"}
    assert errors_of(cmd.AssessRisk, body) == [(("by",), "extra_forbidden")]


# --- guardians, dates -----------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["12345", "1290000000", "+86 139 0000 0000", "电话", ""])
def test_bad_phone_names_the_guardian_phone(phone: str) -> None:
    def edit(body: Body) -> None:
        body["guardians"][0]["phone"] = phone

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("guardians", 0, "phone")


def test_more_than_six_guardians_names_guardians() -> None:
    def edit(body: Body) -> None:
        body["guardians"] = [dict(body["guardians"][0]) for _ in range(7)]

    assert only_error_loc(cmd.ReportClue, changed(edit)) == ("guardians",)


def test_future_found_on_names_found_on() -> None:
    body = report_body(found_on=local_today() + timedelta(days=1))
    assert only_error_loc(cmd.ReportClue, body) == ("found_on",)


def test_found_on_today_passes() -> None:
    assert cmd.ReportClue.model_validate(report_body(found_on=local_today())).found_on == (
        local_today()
    )


def test_found_on_before_birth_names_found_on() -> None:
    born = years_before(local_today(), 10)
    body = report_body(born=born, found_on=born - timedelta(days=1))
    assert only_error_loc(cmd.ReportClue, body) == ("found_on",)


def test_unknown_risk_names_risk() -> None:
    def edit(body: Body) -> None:
        body["risk"] = "critical"

    assert errors_of(cmd.ReportClue, changed(edit)) == [(("risk",), "enum")]


# --- other commands -------------------------------------------------------------------------


def _assign_body(due_on: date) -> Body:
    return {
        "unit": "chengguan-police-station",
        "function": "judicial",
        "task": "入户核查",
        "due_on": due_on.isoformat(),
    }


def test_assign_unit_due_today_passes() -> None:
    assert cmd.AssignUnit.model_validate(_assign_body(local_today())).due_on == local_today()


def test_assign_unit_due_in_the_past_names_due_on() -> None:
    body = _assign_body(local_today() - timedelta(days=1))
    assert only_error_loc(cmd.AssignUnit, body) == ("due_on",)


def test_assign_unit_unknown_function_names_function() -> None:
    body = _assign_body(local_today()) | {"function": "military"}
    assert only_error_loc(cmd.AssignUnit, body) == ("function",)


@pytest.mark.parametrize(
    ("model", "body", "loc"),
    [
        (
            cmd.HoldConsultation,
            {"held_on": "+1", "participants": ["chengguan-governance-office"], "decision": "会商"},
            ("held_on",),
        ),
        (
            cmd.RecordIntervention,
            {"function": "family", "measure": "home_visit", "notes": "走访", "done_on": "+1"},
            ("done_on",),
        ),
        (
            cmd.SignGuardianshipLetter,
            {"guardian_index": 0, "reason": "unsupervised", "signed_on": "+1"},
            ("signed_on",),
        ),
        (cmd.RecordFollowUp, {"visited_on": "+1", "notes": "季度回访"}, ("visited_on",)),
    ],
)
def test_dates_of_things_done_cannot_be_in_the_future(
    model: type[BaseModel], body: Body, loc: Loc
) -> None:
    tomorrow = (local_today() + timedelta(days=1)).isoformat()
    today = local_today().isoformat()
    future = {k: (tomorrow if v == "+1" else v) for k, v in body.items()}
    present = {k: (today if v == "+1" else v) for k, v in body.items()}
    assert only_error_loc(model, future) == loc
    model.model_validate(present)


def test_consultation_needs_a_participant() -> None:
    body = {"held_on": local_today().isoformat(), "participants": [], "decision": "会商"}
    assert only_error_loc(cmd.HoldConsultation, body) == ("participants",)


def test_intervention_measure_must_be_known() -> None:
    body = {"function": "family", "measure": "scolding", "notes": "n", "done_on": "2020-01-01"}
    assert only_error_loc(cmd.RecordIntervention, body) == ("measure",)


def test_guardianship_letter_guardian_index_is_bounded() -> None:
    body = {"guardian_index": 6, "reason": "unsupervised", "signed_on": "2020-01-01"}
    assert only_error_loc(cmd.SignGuardianshipLetter, body) == ("guardian_index",)


@pytest.mark.parametrize(("level", "valid"), [("street", True), ("county", True), ("city", False)])
def test_escalation_level(level: str, valid: bool) -> None:
    body = {"to_level": level, "reason": "需上级协调"}
    if valid:
        assert cmd.Escalate.model_validate(body).to_level == level
    else:
        assert only_error_loc(cmd.Escalate, body) == ("to_level",)


def test_reclassify_refuses_duplicate_issues() -> None:
    issue = {"category": "unlawful_harm", "subtype": "maltreatment"}
    body = {"issues": [issue, dict(issue)], "reason": "复核"}
    assert only_error_loc(cmd.Reclassify, body) == ("issues",)


def test_commands_are_frozen() -> None:
    clue = cmd.ReportClue.model_validate(report_body())
    with pytest.raises(ValidationError):
        clue.description = "改写"  # type: ignore[misc]
