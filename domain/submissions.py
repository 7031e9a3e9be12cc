"""Ledger submissions with receipts (报送, issue 17): a village signs off its ledger for a period,
the street's office receives it, and a submission missing at the end of its due day is a fact.

The plan: "7月23日前将排查台账上报送至街道社会事务办, 后续每季度更新一次": a first submission by
a date the street sets (`INITIAL_SUBMISSION_DUE`, `CASETRAIL_INITIAL_SUBMISSION_DUE`), then one
per calendar quarter, due by the quarter's last day (local time, `domain.quarters`).

- `LedgerSubmission` (one aggregate per street, village and period, its id derived from them):
  `LedgerSubmitted` (village, street, period, row count, the digest of the rows, the due date
  and whether it came after it; a village may submit again, each submission its own event) and
  `LedgerReceived` (a person of the street's office received the submission of a given digest).
- `LedgerSubmissionMissed`: at the end of the due day no submission of that period was stored;
  its id derives from (street, village, period), so scans store it once (as `domain.deadlines`).
- `ledger_digest`: SHA-256 over a canonical serialisation of the period's rows, specified byte
  for byte in docs/specs/submission.md with a test vector (tests/specs/... see there): it
  changes when any row of the period changes (every change of a file raises its version).

No personal data anywhere: codes, case ids, versions, dates and counts. Proven in
tests/integration/test_submissions.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, DomainEvent, event

from domain import errors
from domain.quarters import Quarter, local_date

INITIAL: Final = "initial"
_QUARTER: Final = re.compile(r"^(\d{4})Q([1-4])$")
SUBMISSIONS_NAMESPACE: Final = UUID("3f1c9b1e-6a0d-5d4e-9a57-1b8f0c2e7d44")
DIGEST_PREFIX: Final = b"casetrail/ledger-submission/v1\n"
# Columns of a row in the digest, in this order (docs/specs/submission.md).
DIGEST_COLUMNS: Final = ("id", "version", "found_on", "status", "risk", "updated_at")
# Scans look back this far for due dates whose missed facts are not stored yet: a quarter and
# more, so a scan stopped for weeks still stores them (older ones: `casetrail deadlines scan
# --now` at an instant after them).
SCAN_WINDOW_DAYS: Final = 100
# The years a period may name: those of every date the service takes (`domain.commands`).
FIRST_YEAR: Final = 2000
LAST_YEAR: Final = 2099


@dataclass(frozen=True)
class Period:
    """`initial` (the first submission) or a calendar quarter `YYYYQn`."""

    code: str

    @classmethod
    def parse(cls, text: str) -> Period:
        found = _QUARTER.match(text)
        if text == INITIAL or (found and FIRST_YEAR <= int(found.group(1)) <= LAST_YEAR):
            return cls(text)
        raise errors.SubmissionInvalid(
            f"period is 'initial' or a quarter written like 2026Q3, of a year from {FIRST_YEAR} "
            f"to {LAST_YEAR}",
            field="period",
        )

    @property
    def quarter(self) -> Quarter | None:
        found = _QUARTER.match(self.code)
        return Quarter(int(found.group(1)), int(found.group(2))) if found else None

    def due_on(self, initial_due: date) -> date:
        """The last day the submission is on time (local)."""
        quarter = self.quarter
        return initial_due if quarter is None else quarter.end

    def first_day(self) -> date | None:
        quarter = self.quarter
        return None if quarter is None else quarter.start

    def last_day(self, initial_due: date) -> date:
        return self.due_on(initial_due)

    @property
    def label(self) -> str:
        quarter = self.quarter
        return "首次报送" if quarter is None else quarter.label


def periods_due_between(initial_due: date, start: date, end: date) -> list[Period]:
    """The periods whose due date lies in [start, end]: the initial one, and every quarter
    from the one holding the initial due date on."""
    found = [Period(INITIAL)] if start <= initial_due <= end else []
    quarter = Quarter.of(max(start, initial_due))
    while quarter.end <= end:
        if quarter.end >= start and quarter.end >= initial_due:
            found.append(Period(quarter.code))
        if quarter.is_last:
            break
        quarter = quarter.next()
    return found


def submission_id(street: str, village: str, period: str) -> UUID:
    return uuid5(SUBMISSIONS_NAMESPACE, f"submission:{street}:{village}:{period}")


def missed_id(street: str, village: str, period: str) -> UUID:
    return uuid5(SUBMISSIONS_NAMESPACE, f"missed:{street}:{village}:{period}")


def _field(value: Any) -> str:
    text = str(value)
    if any(c in text for c in "\t\n\r"):
        raise ValueError("a digest field holds no tab or line break")
    return text


def canonical_rows(
    street: str, village: str, period: str, rows: Iterable[Mapping[str, Any]]
) -> bytes:
    """The bytes the digest is taken over (docs/specs/submission.md): the prefix line, a header
    line `street TAB village TAB period TAB count`, then one line per row, sorted by case id,
    its `DIGEST_COLUMNS` joined by TAB, every line ending in LF; UTF-8."""
    lines = sorted("\t".join(_field(row[c]) for c in DIGEST_COLUMNS) for row in rows)
    header = "\t".join((_field(street), _field(village), _field(period), str(len(lines))))
    body = "".join(f"{line}\n" for line in [header, *lines])
    return DIGEST_PREFIX + body.encode("utf-8")


def ledger_digest(street: str, village: str, period: str, rows: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 (lower-case hex) of `canonical_rows`."""
    return hashlib.sha256(canonical_rows(street, village, period, rows)).hexdigest()


class LedgerSubmission(Aggregate):
    """A village's submissions of its ledger for one period, and their receipts."""

    @staticmethod
    def create_id(street: str, village: str, period: str, **_: Any) -> UUID:
        return submission_id(street, village, period)

    @classmethod
    def open(
        cls, *, street: str, village: str, period: str, by: dict[str, str]
    ) -> LedgerSubmission:
        return cls(street=street, village=village, period=period, by=by)

    @event("LedgerSubmissionOpened")
    def __init__(self, *, street: str, village: str, period: str, by: dict[str, str]) -> None:
        self.street = street
        self.village = village
        self.period = period
        self.submissions: list[dict[str, Any]] = []
        self.receipts: list[dict[str, Any]] = []

    def submit(
        self, *, row_count: int, digest: str, due_on: date, now: datetime, by: dict[str, str]
    ) -> None:
        """The village signs off its ledger (again, if it submitted before): late when the
        local day of `now` is after the due date."""
        self._ledger_submitted(
            village=self.village,
            street=self.street,
            period=self.period,
            row_count=row_count,
            digest=digest,
            due_on=due_on.isoformat(),
            late=local_date(now) > due_on,
            by=by,
        )

    @event("LedgerSubmitted")
    def _ledger_submitted(
        self,
        village: str,
        street: str,
        period: str,
        row_count: int,
        digest: str,
        due_on: str,
        late: bool,
        by: dict[str, str],
        timestamp: datetime | None = None,
    ) -> None:
        self.submissions.append(
            {
                "version": len(self.submissions) + 1,
                "at": timestamp.isoformat() if timestamp else None,
                "row_count": row_count,
                "digest": digest,
                "due_on": due_on,
                "late": late,
                "by": {"unit": by.get("unit"), "role": by.get("role")},
            }
        )

    def receive(self, digest: str, *, by: dict[str, str]) -> None:
        if not self.submissions or self.submissions[-1]["digest"] != digest:
            raise errors.SubmissionInvalid(
                "digest is not the one of this period's latest submission; read the "
                "submission again and receive what it holds",
                field="digest",
            )
        if any(r["digest"] == digest for r in self.receipts):
            raise errors.SubmissionAlreadyReceived("this submission was already received")
        self._ledger_received(digest=digest, by=by)

    @event("LedgerReceived")
    def _ledger_received(
        self, digest: str, by: dict[str, str], timestamp: datetime | None = None
    ) -> None:
        self.receipts.append(
            {
                "at": timestamp.isoformat() if timestamp else None,
                "digest": digest,
                "by": {"unit": by.get("unit"), "role": by.get("role"), "user": by.get("user")},
            }
        )

    def as_dict(self) -> dict[str, Any]:
        latest = self.submissions[-1] if self.submissions else None
        return {
            "id": str(self.id),
            "street": self.street,
            "village": self.village,
            "period": self.period,
            "period_label": Period(self.period).label,
            "latest": latest,
            "submissions": self.submissions,
            "receipts": self.receipts,
            "received": bool(
                latest and any(r["digest"] == latest["digest"] for r in self.receipts)
            ),
        }


class LedgerSubmissionMissed(DomainEvent):
    """No submission of the village's ledger for the period was stored by the end of its due
    day (local): a fact of that instant, stored once (its id: `missed_id`)."""

    street: str
    village: str
    period: str
    due_on: str


def missed_fact(
    street: str, village: str, period: str, due_on: date, at: datetime
) -> LedgerSubmissionMissed:
    values: dict[str, Any] = {
        "originator_id": missed_id(street, village, period),
        "originator_version": 1,
        "timestamp": at,
        "street": street,
        "village": village,
        "period": period,
        "due_on": due_on.isoformat(),
    }
    return LedgerSubmissionMissed(**values)
