"""Date arithmetic of the read models is total: at year 1 and year 9999 it clamps instead of
overflowing, so a stored date at the edge cannot stop a follower or fail a report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from projections.ledger.quarters import (
    FIRST_DAY,
    LAST_DAY,
    Quarter,
    end_of_day_stamp,
    parse_stamp,
    quarterly_update_due,
    stamp,
    start_of_day,
)


@pytest.mark.parametrize("year", [1, 2000, 2024, 2099, 9998, 9999])
@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_every_quarter_has_a_start_and_an_end(year: int, number: int) -> None:
    quarter = Quarter(year, number)
    assert quarter.start <= quarter.end
    assert Quarter.of(quarter.start) == quarter == Quarter.of(quarter.end)
    if not quarter.is_last:
        assert quarter.next().start == quarter.end + timedelta(days=1)


@pytest.mark.parametrize(
    ("last", "due"),
    [
        (date(9999, 12, 31), date.max),
        (date(9999, 10, 1), date.max),
        (date(9999, 8, 15), date(9999, 12, 31)),
        (date(1, 1, 1), date(1, 6, 30)),
        (date(2024, 11, 3), date(2025, 3, 31)),
    ],
)
def test_quarterly_update_due_at_the_edges(last: date, due: date) -> None:
    assert quarterly_update_due(last) == due


@pytest.mark.parametrize("day", [date.min, date(1, 1, 2), FIRST_DAY, LAST_DAY, date.max])
def test_stamps_of_a_day_are_text_for_every_day(day: date) -> None:
    start = stamp(start_of_day(day))
    end = end_of_day_stamp(day)
    assert start < end
    assert parse_stamp(start) <= parse_stamp(end)


def test_a_stamp_within_a_day_of_the_limits_clamps() -> None:
    assert stamp(datetime(9999, 12, 31, 23, tzinfo=UTC)) == "9999-12-31T23:00:00.000000Z"
    assert end_of_day_stamp(date.max) == "9999-12-31T23:59:59.999999Z"
    assert stamp(start_of_day(date.min)) == "0001-01-01T00:00:00.000000Z"
