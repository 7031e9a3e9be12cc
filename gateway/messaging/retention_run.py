"""The scheduled retention run (issue 19): once a day, at a fixed hour of the street office's
day (Beijing), what `casetrail retention apply` does: erase the files due that day and not held,
and complete erasures a stopped run left half done (`CaseTrail.apply_retention`).

Who runs it: the relay, at its deadline scans (`RelayOptions.reminder_interval`, every minute;
`Relay._maybe_scan`), when `CASETRAIL_RETENTION_RUN=daily` (the default) at
`CASETRAIL_RETENTION_RUN_HOUR` (3 by default): the relay runs once under `casetrail serve`,
so the run does too. A day's run happens at the first scan at or after the hour; a relay
started later that day runs it then. Which day was run is kept in memory: a relay restarted the
same day runs it again, which erases nothing twice (an erasure is one fact per stream, and a
file erased is no longer due). The erasures are recorded as by `scheduled:retention`.
While a run works the relay's loop waits for it, as for a deadline scan: notices go out
late by the run's length (a status over every closed file: one decryption of each).

Proven by tests/retention/test_apply.py (`test_the_scheduled_run_...`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final

from domain.application import CaseTrail
from domain.quarters import LOCAL_TZ
from gateway.logs import get_logger

log = get_logger("casetrail.retention")

RUN_BY: Final = {"user": "scheduled:retention", "role": "operator", "unit": "", "street": ""}


class RetentionRun:
    """The daily run of `apply_retention` at `hour` (Beijing); None: never."""

    def __init__(self, application: CaseTrail, hour: int | None) -> None:
        self.application = application
        self.hour = hour
        self.last_day: date | None = None

    def due(self, now: datetime) -> date | None:
        """The day to run for at `now`, or None (off, before the hour, or run already)."""
        if self.hour is None:
            return None
        local = now.astimezone(LOCAL_TZ)
        day = local.date()
        if local.hour < self.hour or self.last_day == day:
            return None
        return day

    def run(self, day: date) -> list[dict[str, Any]]:
        """Apply retention for `day`; the day counts as run only once it completed."""
        outcomes = self.application.apply_retention(day, RUN_BY)
        self.last_day = day
        tally: dict[str, int] = {}
        for found in outcomes:
            tally[found["outcome"]] = tally.get(found["outcome"], 0) + 1
        log.info("retention_applied", day=day.isoformat(), **tally)
        return outcomes
