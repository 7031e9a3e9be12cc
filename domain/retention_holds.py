"""Legal holds (issue 19): what keeps a minor's files from erasure, and the explicit hold.

A file is held when ANY file of the same minor is named by one of these (`HoldReason`):

- an **investigation** (一案一倒查, `domain.investigations`): it names the minor by ID number and
  links files; the domain has no closing of an investigation, so an investigation holds for as
  long as it exists (a closed state would end its hold: one line in `HoldIndex._holds_of`);
- an **investigation order in force** (`domain.orders`: a street's `InvestigationOrder` or a
  county's `CountyOrder`, not revoked and not expired) on a file;
- an **unreviewed compliance finding** (`domain.compliance.findings`, status `open`) on a file;
- an **explicit hold** (`LegalHold`, below): placed on one file with a reason by a compliance
  auditor or the street's coordinator, released by either with a reason; both are events.

"Same minor" is the resident ID number the files themselves hold (`Case.minor["id_number"]`,
as corrected, decrypted from the file: the same rule `CaseTrail._files_of_minor` applies to the
blind index's answers), so a hold on one file of a minor holds every file of that minor, in any
street, and the minor's roster entries (`RosterEntry.minor["id_number"]`). The blind index is
the gateway's (its key never reaches the domain); the store's events are the domain's.

`HoldIndex` keeps, per application, the streams that can hold (investigations, orders,
findings, explicit holds) and follows the store from the position it last read, so each check
reads only what was stored since the previous one, then reloads the sources that changed: a hold
placed a moment before an erasure is seen by it (`CaseTrail.erase` asks `holds_on` right before
it stores the fact). A hold names no content: reason, source id, the file it names, since when,
and for an explicit hold who placed it and why.

Proven by `tests/retention/test_holds.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Notification
from pydantic import BaseModel, ConfigDict, Field

from domain import errors
from domain.case import Case
from domain.commands import Note
from domain.compliance.findings import Finding, FindingStatus
from domain.investigations import Investigation
from domain.orders import CountyOrder, InvestigationOrder
from domain.retention import AGE_OF_MAJORITY, HoldReason, RetentionRules
from domain.topics import topics_of

Record = dict[str, Any]


class HoldNotFound(errors.DomainError):
    status = 404
    code = "hold_not_found"


class HoldAlreadyReleased(errors.DomainError):
    code = "hold_already_released"


class PlaceHold(BaseModel):
    """An explicit hold on a case file (and so on every file of its minor)."""

    model_config = ConfigDict(extra="forbid")

    case_id: UUID
    reason: Note = Field(description="why (recorded with the hold)")


class ReleaseHold(BaseModel):
    """The release of an explicit hold: the files are due again if nothing else holds them."""

    model_config = ConfigDict(extra="forbid")

    reason: Note = Field(description="why (recorded with the release)")


class LegalHold(Aggregate):
    """One explicit hold: placed on a case file with a reason, released once with a reason."""

    @event("HoldPlaced")
    def __init__(self, *, case_id: str, reason: str, by: Record) -> None:
        self.case_id = case_id
        self.reason = reason
        self.placed_by = by
        self.released: Record | None = None

    @property
    def active(self) -> bool:
        return self.released is None

    def release(self, *, reason: str, by: Record) -> None:
        if self.released is not None:
            raise HoldAlreadyReleased("this hold was released already; nothing to release")
        self._released(reason=reason, by=by)

    @event("HoldReleased")
    def _released(self, reason: str, by: Record, timestamp: datetime | None = None) -> None:
        self.released = {
            "reason": reason,
            "by": by,
            "at": timestamp.isoformat() if timestamp else None,
        }


# The events that may change a hold: what the index follows. A correction of a file's ID
# number (`DetailsCorrected`) changes which minor a source holds.
HOLD_TOPICS: Final = topics_of(
    Investigation.InvestigationOpened,  # type: ignore[attr-defined]
    Investigation.CasesLinked,  # type: ignore[attr-defined]
    InvestigationOrder.InvestigationOrderIssued,  # type: ignore[attr-defined]
    InvestigationOrder.InvestigationOrderRenewed,  # type: ignore[attr-defined]
    InvestigationOrder.InvestigationOrderRevoked,  # type: ignore[attr-defined]
    CountyOrder.CountyOrderIssued,  # type: ignore[attr-defined]
    CountyOrder.CountyOrderRenewed,  # type: ignore[attr-defined]
    CountyOrder.CountyOrderRevoked,  # type: ignore[attr-defined]
    Finding.FindingRaised,  # type: ignore[attr-defined]
    Finding.FindingReviewed,  # type: ignore[attr-defined]
    Finding.FindingSuperseded,  # type: ignore[attr-defined]
    LegalHold.HoldPlaced,  # type: ignore[attr-defined]
    LegalHold.HoldReleased,  # type: ignore[attr-defined]
)
CORRECTION_TOPICS: Final = topics_of(Case.DetailsCorrected)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Hold:
    """One thing that holds: its reason, its source stream, the file it names (None for an
    investigation's own naming of the minor), since when, and (explicit holds) who and why."""

    reason: HoldReason
    source: UUID
    case_id: str | None
    since: str
    until: str | None = None
    by: str | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "reason": str(self.reason),
            "source": str(self.source),
            "case_id": self.case_id,
            "since": self.since,
        }
        for key in ("until", "by", "note"):
            if getattr(self, key) is not None:
                found[key] = getattr(self, key)
        return found


class HoldIndex:
    """The hold sources of one store, followed incrementally (see the module's docstring).

    `load(stream_id)` gives an aggregate (or None); `minor_of(case_id)` the ID number a file
    holds now (None: no such file, or erased); `notifications(start, topics)` the store's log."""

    def __init__(
        self,
        *,
        load: Callable[[UUID], object | None],
        minor_of: Callable[[UUID], str | None],
        notifications: Callable[[int, tuple[str, ...]], Iterator[Notification]],
    ) -> None:
        self._load = load
        self._minor_of = minor_of
        self._notifications = notifications
        self._lock = threading.Lock()
        self._position = 0
        self._sources: dict[UUID, object] = {}
        self._minors: dict[UUID, str | None] = {}

    def refresh(self) -> None:
        """Read what was stored since the last look; reload the sources it changed."""
        changed: set[UUID] = set()
        corrected: set[UUID] = set()
        last = self._position
        for notification in self._notifications(
            self._position + 1, HOLD_TOPICS + CORRECTION_TOPICS
        ):
            last = max(last, notification.id)
            stream = UUID(str(notification.originator_id))
            if notification.topic in CORRECTION_TOPICS:
                corrected.add(stream)
            else:
                changed.add(stream)
        for stream in changed:
            self._sources[stream] = self._load(stream)
        for case_id in corrected:
            self._minors.pop(case_id, None)
        self._position = last

    def holds_of_minor(self, id_number: str, now: datetime) -> list[Hold]:
        """Every hold on the minor with this ID number, now (the store followed first)."""
        with self._lock:
            self.refresh()
            return [
                hold
                for source in self._sources.values()
                for hold, id_numbers in self._holds_of(source, now)
                if id_number in id_numbers
            ]

    def _minor(self, case_id: str) -> str | None:
        try:
            key = UUID(case_id)
        except ValueError:
            return None
        if key not in self._minors:
            self._minors[key] = self._minor_of(key)
        return self._minors[key]

    def _minors_of(self, case_ids: Iterable[str]) -> set[str]:
        return {m for m in (self._minor(c) for c in case_ids) if m is not None}

    def _holds_of(self, source: object, now: datetime) -> Iterator[tuple[Hold, set[str]]]:
        """Each hold the source makes now, with the ID numbers of the minors it holds."""
        if isinstance(source, Investigation):
            since = _at(source.created_on)
            yield (
                Hold(HoldReason.INVESTIGATION, source.id, None, since),
                {str(source.minor["id_number"]), *self._minors_of(source.case_ids)},
            )
        elif isinstance(source, InvestigationOrder | CountyOrder):
            until = source.active_until(now)
            if until is not None:
                yield (
                    Hold(
                        HoldReason.INVESTIGATION_ORDER,
                        source.id,
                        str(source.case_id),
                        _at(source.modified_on),
                        until=until.isoformat(),
                    ),
                    self._minors_of([str(source.case_id)]),
                )
        elif isinstance(source, Finding):
            if source.status is FindingStatus.OPEN:
                since = _at(source.created_on)
                for case_id in source.case_ids:
                    yield (
                        Hold(HoldReason.COMPLIANCE_FINDING, source.id, case_id, since),
                        self._minors_of([case_id]),
                    )
        elif isinstance(source, LegalHold) and source.active:
            yield (
                Hold(
                    HoldReason.EXPLICIT,
                    source.id,
                    source.case_id,
                    _at(source.created_on),
                    by=str(source.placed_by.get("user", "")),
                    note=source.reason,
                ),
                self._minors_of([source.case_id]),
            )


def _at(moment: datetime) -> str:
    return moment.isoformat()


def minor_due_on(rules: RetentionRules, date_of_birth: date) -> date:
    """When a minor's roster entry falls due: the day the minor has been of age (18) for
    `years_after_majority` years (and then only if none of the minor's files is kept or held:
    `CaseTrail.retention_status`)."""
    years = AGE_OF_MAJORITY + rules.years_after_majority
    try:
        return date_of_birth.replace(year=date_of_birth.year + years)
    except ValueError:  # born on 29 February: the day after 28 February, as `RetentionRules`
        return date_of_birth.replace(year=date_of_birth.year + years, month=3, day=1)
