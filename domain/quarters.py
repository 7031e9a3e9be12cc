"""The street office's calendar: local time (China Standard Time, UTC+8, no daylight saving) and
calendar quarters, with the quarterly-update rule (每季度更新一次).

Domain rules need it (the missed quarterly update of `domain.deadlines`) as much as the read
models do (the ledger's worklists and reports, `projections.ledger.quarters`, which re-exports
these names): one rule, in the layer both may import. Total over Python's dates at year 9999
(`Quarter.next` of the last quarter is itself); proven by `tests/domain/test_quarters.py`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Final

LOCAL_TZ: Final = timezone(timedelta(hours=8), "CST")


def local_date(moment: datetime) -> date:
    return moment.astimezone(LOCAL_TZ).date()


def start_of_day(day: date) -> datetime:
    """Local midnight at the start of `day`, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=LOCAL_TZ)


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int  # 1..4

    @classmethod
    def of(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        """The last day of the quarter."""
        month = 3 * self.number
        return date(self.year, month, calendar.monthrange(self.year, month)[1])

    @property
    def is_last(self) -> bool:
        """The last quarter Python's dates can hold (9999Q4): it has no next."""
        return self.year == date.max.year and self.number == 4

    def next(self) -> Quarter:
        if self.is_last:
            return self
        if self.number == 4:
            return Quarter(self.year + 1, 1)
        return Quarter(self.year, self.number + 1)

    @property
    def code(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def label(self) -> str:
        return f"{self.year}年第{self.number}季度"


def quarterly_update_due(last_update: date) -> date:
    """Every open file is updated each quarter (每季度更新一次): a file last reported or updated
    in one quarter is due by the end of the next (date.max for the last quarter there is)."""
    return Quarter.of(last_update).next().end
