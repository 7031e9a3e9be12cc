"""The retention rule (issue 19, README "Retention"): a closed file is due N years after its
closure or when the minor has been 18 for M years, whichever is later; a roster entry when the
minor has been 18 for M years; N and M are settings that reach the application."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.application import CaseTrail
from domain.retention import RetentionRules
from domain.retention_holds import minor_due_on
from gateway.settings import Settings, SettingsProblem
from gateway.store.eventstore import ENV_DATA_KEY_CACHE_SECONDS


@pytest.mark.parametrize(
    ("closed_on", "born", "due_on"),
    [
        # The minor is long of age: three years after closure.
        (date(2026, 5, 10), date(2000, 1, 1), date(2029, 5, 10)),
        # A young minor: 18 + 3 years after birth, later than closure + 3.
        (date(2026, 5, 10), date(2015, 8, 20), date(2036, 8, 20)),
        # Equal: either.
        (date(2026, 5, 10), date(2008, 5, 10), date(2029, 5, 10)),
        # Born on 29 February: due the day after 28 February of a common year.
        (date(2020, 1, 1), date(2012, 2, 29), date(2033, 3, 1)),
    ],
    ids=["closure", "majority", "equal", "leap-day"],
)
def test_a_closed_file_is_due_at_the_later_of_the_two(
    closed_on: date, born: date, due_on: date
) -> None:
    assert RetentionRules().due_on(closed_on=closed_on, date_of_birth=born) == due_on


def test_the_periods_are_configurable_and_named_in_the_basis() -> None:
    rules = RetentionRules(years_after_closure=5, years_after_majority=0)
    assert rules.due_on(closed_on=date(2026, 1, 1), date_of_birth=date(2010, 1, 1)) == date(
        2031, 1, 1
    )
    assert rules.due_on(closed_on=date(2026, 1, 1), date_of_birth=date(2015, 6, 1)) == date(
        2033, 6, 1
    )
    assert rules.basis() == "closed + 5 years / 18 + 0 years, whichever is later"
    assert minor_due_on(rules, date(2015, 6, 1)) == date(2033, 6, 1)
    assert minor_due_on(RetentionRules(), date(2012, 2, 29)) == date(2033, 3, 1)


def test_the_settings_reach_the_application(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_RETENTION_YEARS_AFTER_CLOSURE": "7",
            "CASETRAIL_RETENTION_YEARS_AFTER_MAJORITY": "4",
            "CASETRAIL_DATA_KEY_CACHE_SECONDS": "0.25",
        }
    )
    env = settings.application_env(encrypted=False)
    assert env[ENV_DATA_KEY_CACHE_SECONDS] == "0.25"
    app = CaseTrail(env=env)
    try:
        assert app.retention_rules == RetentionRules(years_after_closure=7, years_after_majority=4)
    finally:
        app.close()
    defaults = Settings.from_env({"CASETRAIL_HOME": str(home)})
    assert (defaults.retention_years_after_closure, defaults.retention_years_after_majority) == (
        3,
        3,
    )
    assert (defaults.retention_run, defaults.retention_run_hour) == ("daily", 3)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CASETRAIL_RETENTION_YEARS_AFTER_CLOSURE", "0"),
        ("CASETRAIL_RETENTION_YEARS_AFTER_MAJORITY", "-1"),
        ("CASETRAIL_RETENTION_RUN", "weekly"),
        ("CASETRAIL_RETENTION_RUN_HOUR", "24"),
        ("CASETRAIL_DATA_KEY_CACHE_SECONDS", "forever"),
    ],
)
def test_an_unusable_value_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(SettingsProblem) as raised:
        Settings.from_env({"CASETRAIL_HOME": str(tmp_path), variable: value})
    assert str(raised.value).startswith(f"{variable} must be")
    assert "weekly" not in str(raised.value) and "forever" not in str(raised.value)
