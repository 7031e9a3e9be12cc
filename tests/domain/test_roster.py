"""The roster's pure rules (`domain.roster`, `domain.screening`): a roster row is a case file's
`Minor` plus grid, guardian and markers; one stream per minor and street; a re-listing with the
same details is no change; another village is a conflict; a guardianship letter only for the
left-behind and unsupervised; who may see a village's roster; a campaign's period and a visit's
shape. No message quotes a submitted value."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from domain import errors
from domain.access import Actor
from domain.clock import local_today
from domain.identity import make_id_number
from domain.roster import (
    KeyMarker,
    RosterConflict,
    RosterEntry,
    RosterMinor,
    is_key_student,
    needs_letter,
    roster_entry_id,
    roster_rule,
)
from domain.screening import Campaign, OpenCampaign, RecordVisit
from domain.taxonomy import LetterReason, Role

BORN = local_today() - timedelta(days=10 * 365)
ID_NUMBER = make_id_number("330102", BORN, 481)  # 17th digit odd: male
STREET = "chengguan-street"
VILLAGE = "dongshan-village"
BY = {"user": "u-1", "role": "reporter", "unit": VILLAGE, "street": STREET}


def row(**changes: Any) -> dict[str, Any]:
    return {
        "name": "林小明",
        "gender": "male",
        "date_of_birth": BORN.isoformat(),
        "id_number": ID_NUMBER,
        "school": "城关镇中心小学",
        "grade_class": "四年级",
        "village": VILLAGE,
        "grid": "第1网格",
        "guardian": "林建国",
        "markers": ["orphan", "left_behind", "left_behind"],
        **changes,
    }


def entry(**changes: Any) -> RosterEntry:
    minor = RosterMinor.model_validate(row(**changes)).model_dump(mode="json")
    return RosterEntry(street=STREET, id_index="idx-1", minor=minor, source={}, by=BY)


def test_a_roster_row_is_checked_as_a_case_files_minor() -> None:
    minor = RosterMinor.model_validate(row())
    assert minor.markers == [KeyMarker.LEFT_BEHIND, KeyMarker.ORPHAN]  # distinct, in order
    bad_check = ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1")
    for changes in (
        {"id_number": bad_check},
        {"date_of_birth": (BORN - timedelta(days=1)).isoformat()},
        {"gender": "female"},
        {"name": "林\u200b小明"},
        {"markers": ["poor"]},
        {
            "date_of_birth": date(2000, 1, 1).isoformat(),
            "id_number": make_id_number("330102", date(2000, 1, 1), 481),
        },
    ):
        with pytest.raises(ValidationError) as caught:
            RosterMinor.model_validate(row(**changes))
        for value in changes.values():
            # The typed values (ID numbers, dates, names); a code like `female` is the rule's.
            if value not in ("female", ["poor"]):
                assert str(value) not in str(caught.value.errors(include_input=False))


def test_one_stream_per_minor_and_street() -> None:
    assert roster_entry_id(STREET, "idx-1") == roster_entry_id(STREET, "idx-1")
    assert roster_entry_id(STREET, "idx-1") != roster_entry_id("other-street", "idx-1")
    assert entry().id == roster_entry_id(STREET, "idx-1")


def test_listing_again_stores_only_a_change_and_refuses_another_village() -> None:
    listed = entry()
    same = RosterMinor.model_validate(row()).model_dump(mode="json")
    assert listed.listed_again(same, {}, BY) is False
    assert listed.collect_events()[-1].originator_version == 1
    moved_grid = RosterMinor.model_validate(row(grid="第2网格")).model_dump(mode="json")
    assert listed.listed_again(moved_grid, {}, BY) is True
    assert listed.minor["grid"] == "第2网格"
    elsewhere = RosterMinor.model_validate(row(village="xishan-village")).model_dump(mode="json")
    with pytest.raises(RosterConflict) as caught:
        listed.listed_again(elsewhere, {}, BY)
    assert caught.value.field == "village" and "xishan" not in caught.value.message


def test_a_letter_only_for_the_left_behind_and_unsupervised() -> None:
    listed = entry()
    listed.sign_letter(LetterReason.PARENTS_WORKING_AWAY, local_today(), BY)
    listed.sign_letter(LetterReason.UNSUPERVISED, local_today(), BY)
    assert len(listed.letters) == 2
    single = entry(markers=["single_parent"])
    with pytest.raises(errors.GuardianshipLetterNotApplicable):
        single.sign_letter(LetterReason.PARENTS_WORKING_AWAY, local_today(), BY)
    with pytest.raises(errors.DateOutOfOrder):
        listed.sign_letter(LetterReason.UNSUPERVISED, BORN - timedelta(days=1), BY)
    assert needs_letter(["orphan"]) and not needs_letter(["disabled", "single_parent"])
    assert is_key_student(["disabled"]) and not is_key_student([])


@pytest.mark.parametrize(
    ("role", "unit", "street", "rule"),
    [
        (Role.COORDINATOR, "office", STREET, "roster_street_coordinator"),
        (Role.REPORTER, VILLAGE, STREET, "roster_village_reporter"),
        (Role.REPORTER, "xishan-village", STREET, None),
        (Role.REPORTER, VILLAGE, "other-street", None),
        (Role.COORDINATOR, "office", "other-street", None),
        (Role.SUPERVISOR, "supervision", STREET, None),
        (Role.UNIT_MEMBER, VILLAGE, STREET, None),
        (Role.INVESTIGATOR, "county", STREET, None),
        (Role.ADMIN, "county", STREET, None),
    ],
)
def test_who_sees_a_villages_roster(role: Role, unit: str, street: str, rule: str | None) -> None:
    assert roster_rule(Actor("u", role, unit, street), STREET, VILLAGE) == rule


def test_a_campaigns_period_and_a_visits_shape() -> None:
    today = local_today()
    with pytest.raises(ValidationError):
        OpenCampaign.model_validate(
            {"name": "排查", "starts_on": today, "ends_on": today - timedelta(days=1)}
        )
    campaign = Campaign(
        street=STREET,
        name="排查",
        villages=[VILLAGE],
        starts_on=today.isoformat(),
        ends_on=today.isoformat(),
        by=BY,
    )
    assert campaign.covers(VILLAGE) and not campaign.covers("xishan-village")
    assert campaign.in_period(today) and not campaign.in_period(today - timedelta(days=1))
    base = {"visited_on": today, "method": "home_visit", "result": "no_issue"}
    RecordVisit.model_validate({**base, "id_number": ID_NUMBER})
    for bad in (
        base,  # no minor named
        {**base, "id_number": ID_NUMBER, "entry_id": str(roster_entry_id(STREET, "x"))},
        {**base, "id_number": ID_NUMBER, "result": "clue"},  # a clue without its content
    ):
        with pytest.raises(ValidationError):
            RecordVisit.model_validate(bad)
