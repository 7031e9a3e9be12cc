"""Dates and quarters as the street office counts them: local time (UTC+8), calendar quarters.

Events carry UTC timestamps; read models store them as fixed-width text (`stamp`) so that they
sort and compare as text in both databases. Dates the users see (reported on, last update,
quarter boundaries) are local dates in China Standard Time, which has no daylight saving.

Every function here is total over Python's dates: at year 1 and year 9999 they clamp to the
first or last instant and day instead of overflowing, so a date that slipped into a stored event
cannot stop a read model (`tests/domain/test_quarters.py`). Requests are bounded well inside
(`FIRST_DAY`..`LAST_DAY`, the dates a query parameter may name; `tests/integration/test_bounds.py`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from domain.clock import local_today
from domain.commands import EARLIEST_DATE, LATEST_DATE

# The calendar rules are the domain's (the missed-deadline facts use them too); re-exported.
from domain.quarters import (
    LOCAL_TZ,
    Quarter,
    local_date,
    quarterly_update_due,
    start_of_day,
)

__all__ = [
    "FIRST_DAY",
    "LAST_DAY",
    "LOCAL_TZ",
    "Quarter",
    "end_of_day_stamp",
    "local_date",
    "parse_stamp",
    "quarterly_update_due",
    "stamp",
    "start_of_day",
    "today",
]

_STAMP: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
# The dates a query may name (a report as of, a worklist on, a ledger from/to): those a command
# may carry. Nothing before the service existed; nothing near date.max.
FIRST_DAY: Final = EARLIEST_DATE
LAST_DAY: Final = LATEST_DATE
_FIRST_STAMP: Final = "0001-01-01T00:00:00.000000Z"
_LAST_STAMP: Final = "9999-12-31T23:59:59.999999Z"


def stamp(moment: datetime) -> str:
    """A UTC instant as sortable text: 2026-11-29T01:02:03.000004Z (always microseconds)."""
    if moment.tzinfo is None:
        raise ValueError("a timestamp without a time zone cannot be placed in time")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        # Within a day of year 1 or 9999 in another zone: the first or last instant there is.
        return _FIRST_STAMP if moment.year == 1 else _LAST_STAMP
    # isoformat, not strftime(_STAMP): the same text, several times faster (rebuilds stamp
    # every event).
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, _STAMP).replace(tzinfo=UTC)


def end_of_day_stamp(day: date) -> str:
    """The first instant after `day` (local), as a stamp: events before it belong to `day`."""
    if day == date.max:
        return _LAST_STAMP
    return stamp(start_of_day(day + timedelta(days=1)))


def today() -> date:
    """The street office's day: the domain's clock (`domain.clock.local_today`), one rule with
    the commands' date checks (and replaceable the same way in tests)."""
    return local_today()
