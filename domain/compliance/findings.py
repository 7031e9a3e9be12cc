"""Findings of the compliance rules (issue 15) as events of their own streams.

A rule of `domain.compliance.rules` that sees an access pattern it flags raises a finding: one
`Finding` aggregate, whose id is derived from the rule and the evidence (the store positions of
the access records that make it up, `finding_id`), so that the same finding raised twice (by
the evaluator after a crash, by a re-run, by two evaluators at once) is refused by the store's
uniqueness of (stream, version 1) and never doubled.

The stream's events, each checked against the current state before it is triggered (a broken
rule raises a named `DomainError` and writes nothing):

- `FindingRaised`: rule id, evidence (store positions), person, role, unit, street, case ids, the
  window the evidence spans, `detail` (counts and thresholds only, no case content);
- `FindingReviewed`: `justified` or `violation`, a reason, the reviewer (a compliance auditor:
  checked in `CaseTrail.review_finding`); once;
- `FollowUpOpened` (owner, due date) and `FollowUpCompleted`: for a violation only, once each;
- `FindingSuperseded`: a re-run with other thresholds no longer produces this finding. It is
  kept (append-only: what the office once was shown stays shown), marked superseded with the
  configuration digest of the re-run, and leaves the open list. A reviewed finding stays
  reviewed: it is not superseded (its review is the record that matters).

`FindingSummary.of(finding)` is what lists show (`CaseTrail.findings`): ids, codes, instants,
counts, never case content. Proven by tests/domain/test_compliance_rules.py and
tests/integration/test_findings.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError

Record = dict[str, Any]

_FINDING_NAMESPACE: Final = UUID("3c9a4e71-5b2d-4f08-9e6a-71d2c84b0f35")


class FindingStatus(StrEnum):
    OPEN = "open"  # raised, not reviewed
    JUSTIFIED = "justified"  # reviewed: the access had a reason
    VIOLATION = "violation"  # reviewed: it broke the rules
    SUPERSEDED = "superseded"  # a re-run with other thresholds no longer raises it


class Outcome(StrEnum):
    JUSTIFIED = "justified"
    VIOLATION = "violation"


FINDING_STATUS_LABELS: Final = {
    FindingStatus.OPEN: "待复核",
    FindingStatus.JUSTIFIED: "有正当理由",
    FindingStatus.VIOLATION: "违规",
    FindingStatus.SUPERSEDED: "已被取代",
}


class FindingNotFound(DomainError):
    status = 404
    code = "finding_not_found"


class FindingAlreadyReviewed(DomainError):
    code = "finding_already_reviewed"


class FindingSupersededError(DomainError):
    code = "finding_superseded"


class FollowUpNotAllowed(DomainError):
    code = "follow_up_not_allowed"


class FollowUpAlreadyOpened(DomainError):
    code = "follow_up_already_opened"


class FollowUpNotOpen(DomainError):
    code = "follow_up_not_open"


def finding_id(rule: str, evidence: Iterable[int]) -> UUID:
    """The id of the finding `rule` raises on exactly this evidence (store positions, any
    order): the same finding always has the same id."""
    positions = ",".join(str(p) for p in sorted(set(evidence)))
    return uuid5(_FINDING_NAMESPACE, f"{rule}/{positions}")


class Finding(Aggregate):
    """One finding of one rule on one set of access records."""

    @staticmethod
    def create_id(rule: str, evidence: list[int], **_: Any) -> UUID:
        return finding_id(rule, evidence)

    @event("FindingRaised")
    def __init__(
        self,
        *,
        rule: str,
        evidence: list[int],
        person: str,
        role: str,
        unit: str,
        street: str,
        case_ids: list[str],
        window_start: str,
        window_end: str,
        detail: dict[str, Any],
    ) -> None:
        self.rule = rule
        self.evidence = sorted(set(evidence))
        self.person = person
        self.role = role
        self.unit = unit
        self.street = street
        self.case_ids = case_ids
        self.window_start = window_start
        self.window_end = window_end
        self.detail = detail
        self.review: Record | None = None
        self.follow_up: Record | None = None
        self.superseded: Record | None = None

    @property
    def status(self) -> FindingStatus:
        if self.review is not None:
            return FindingStatus(self.review["outcome"])
        if self.superseded is not None:
            return FindingStatus.SUPERSEDED
        return FindingStatus.OPEN

    def review_as(self, outcome: Outcome, reason: str, reviewer: Record) -> None:
        if self.review is not None:
            raise FindingAlreadyReviewed(
                "this finding is already reviewed; a review is final (open a follow-up instead)"
            )
        if self.superseded is not None:
            raise FindingSupersededError(
                "this finding was superseded by a re-run with other thresholds; review the "
                "findings the re-run raised instead"
            )
        self._reviewed(outcome=str(outcome), reason=reason, reviewer=reviewer)

    @event("FindingReviewed")
    def _reviewed(self, outcome: str, reason: str, reviewer: Record) -> None:
        self.review = {"outcome": outcome, "reason": reason, "reviewer": reviewer}

    def open_follow_up(self, owner: str, due_on: date, by: Record) -> None:
        if self.status is not FindingStatus.VIOLATION:
            raise FollowUpNotAllowed(
                "a follow-up is opened for a finding reviewed as a violation; review it first"
            )
        if self.follow_up is not None:
            raise FollowUpAlreadyOpened("this finding already has its follow-up")
        self._follow_up_opened(owner=owner, due_on=due_on.isoformat(), by=by)

    @event("FollowUpOpened")
    def _follow_up_opened(self, owner: str, due_on: str, by: Record) -> None:
        self.follow_up = {"owner": owner, "due_on": due_on, "opened_by": by, "completed": None}

    def complete_follow_up(self, on: date, note: str, by: Record) -> None:
        if self.follow_up is None or self.follow_up["completed"] is not None:
            raise FollowUpNotOpen("this finding has no open follow-up to complete")
        self._follow_up_completed(on=on.isoformat(), note=note, by=by)

    @event("FollowUpCompleted")
    def _follow_up_completed(self, on: str, note: str, by: Record) -> None:
        opened = self.follow_up or {}  # there is one: checked by complete_follow_up
        self.follow_up = {**opened, "completed": {"on": on, "note": note, "by": by}}

    def supersede(self, config_digest: str, by: Record) -> bool:
        """Mark the finding superseded by a re-run; False (nothing triggered) when it is
        reviewed or superseded already."""
        if self.review is not None or self.superseded is not None:
            return False
        self._superseded(config_digest=config_digest, by=by)
        return True

    @event("FindingSuperseded")
    def _superseded(self, config_digest: str, by: Record) -> None:
        self.superseded = {"config_digest": config_digest, "by": by}


@dataclass(frozen=True)
class FindingSummary:
    """A finding as lists show it: no case content (case ids are opaque ids)."""

    id: UUID
    rule: str
    status: FindingStatus
    person: str
    role: str
    unit: str
    street: str
    case_ids: tuple[str, ...]
    evidence: tuple[int, ...]
    window_start: datetime
    window_end: datetime
    raised_at: datetime
    detail: dict[str, Any]
    review: Record | None
    follow_up: Record | None

    @classmethod
    def of(cls, finding: Finding) -> FindingSummary:
        return cls(
            id=finding.id,
            rule=finding.rule,
            status=finding.status,
            person=finding.person,
            role=finding.role,
            unit=finding.unit,
            street=finding.street,
            case_ids=tuple(finding.case_ids),
            evidence=tuple(finding.evidence),
            window_start=datetime.fromisoformat(finding.window_start),
            window_end=datetime.fromisoformat(finding.window_end),
            raised_at=finding.created_on,
            detail=dict(finding.detail),
            review=finding.review,
            follow_up=finding.follow_up,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "rule": self.rule,
            "status": str(self.status),
            "status_label": FINDING_STATUS_LABELS[self.status],
            "person": self.person,
            "role": self.role,
            "unit": self.unit,
            "street": self.street,
            "case_ids": list(self.case_ids),
            "evidence": list(self.evidence),
            "window": {"start": self.window_start.isoformat(), "end": self.window_end.isoformat()},
            "raised_at": self.raised_at.isoformat(),
            "detail": self.detail,
            "review": self.review,
            "follow_up": self.follow_up,
        }


@dataclass(frozen=True)
class FindingFilter:
    """Filters of a findings list; `since`/`until` bound the end of the evidence's window
    (when the pattern was complete), `since` inclusive, `until` exclusive."""

    rule: str | None = None
    status: FindingStatus | None = None
    unit: str | None = None
    street: str | None = None
    person: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, found: FindingSummary) -> bool:
        return (
            (self.rule is None or found.rule == self.rule)
            and (self.status is None or found.status is self.status)
            and (self.unit is None or found.unit == self.unit)
            and (self.street is None or found.street == self.street)
            and (self.person is None or found.person == self.person)
            and (self.since is None or found.window_end >= self.since)
            and (self.until is None or found.window_end < self.until)
        )
