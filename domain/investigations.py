"""Investigations (一案一倒查) as their own aggregate: one stream per incident.

After a minor is harmed or dies, the county opens an investigation of every case file of that
minor: `InvestigationOpened` names the incident (kind, date), the minor (ID number and, when
given, name; encrypted at rest like every event, and shown only to the investigators named on
it, as an audited disclosure) and the linked case files. The investigators, the county orders
issued for them (one per case file and investigator: the access rule reads the order's own
stream, `domain.orders.CountyOrder`; this stream keeps the investigation's account of them),
findings, rectification items (整改) and the reports issued are further events of the same
stream, so the investigation's own history is as append-only and as tamper-evident as a file's.

Each public method checks its rule against the current state and raises a named error from
`domain.errors` before any event is triggered; nothing is written when one is broken. Payloads
are plain JSON values (dates as ISO text). Proven in `tests/domain/test_investigations.py` and,
over HTTP, in `tests/integration/test_investigations.py`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from domain import errors

Record = dict[str, Any]

KINDS: Final = ("suicide", "attempted_suicide", "harm")
DETERMINATIONS: Final = ("fulfilled", "late", "not_fulfilled")
# What a county order covers: every file of the minor (and so the files linked later), or one.
COVERS: Final = ("minor", "case")
REPORT_FORMATS: Final = ("html", "pdf", "json")


def _at(timestamp: datetime | None) -> str:
    """The applied event's own time, as ISO text (see `domain.case._at`)."""
    if timestamp is None:
        raise TypeError("the event's timestamp was not passed to the @event method")
    return timestamp.isoformat()


class Investigation(Aggregate):
    """One reverse investigation of an incident, over every case file of one minor."""

    @classmethod
    def open(
        cls,
        *,
        kind: str,
        incident_on: date,
        id_number: str,
        name: str,
        case_ids: list[UUID],
        by: Record,
    ) -> Investigation:
        if kind not in KINDS:
            raise errors.InvestigationInvalid(
                f"kind must be one of {', '.join(KINDS)}", field="kind"
            )
        return cls(
            kind=kind,
            incident_on=incident_on.isoformat(),
            minor={"id_number": id_number, "name": name},
            case_ids=sorted({str(c) for c in case_ids}),
            by=by,
        )

    @staticmethod
    def create_id() -> UUID:
        return uuid4()

    @event("InvestigationOpened")
    def __init__(
        self,
        *,
        kind: str,
        incident_on: str,
        minor: Record,
        case_ids: list[str],
        by: Record,
    ) -> None:
        self.kind = kind
        self.incident_on = incident_on
        self.minor = dict(minor)
        self.case_ids: list[str] = list(case_ids)
        self.opened_by = by
        self.investigators: list[str] = []
        self.reason = ""
        self.orders: dict[str, Record] = {}
        self.findings: list[Record] = []
        self.rectifications: dict[str, Record] = {}
        self.reports: list[Record] = []

    # --- investigators and the files they look at ---

    def assign_investigators(self, investigators: list[str], *, reason: str, by: Record) -> None:
        new = sorted(set(investigators) - set(self.investigators))
        if new:
            self._investigators_assigned(investigators=new, reason=reason, by=by)

    @event("InvestigatorsAssigned")
    def _investigators_assigned(self, investigators: list[str], reason: str, by: Record) -> None:
        self.investigators = sorted({*self.investigators, *investigators})
        self.reason = reason

    def link_cases(self, case_ids: list[UUID], *, by: Record) -> list[str]:
        """Link files of the minor found after the opening; returns the newly linked ids."""
        new = sorted({str(c) for c in case_ids} - set(self.case_ids))
        if new:
            self._cases_linked(case_ids=new, by=by)
        return new

    @event("CasesLinked")
    def _cases_linked(self, case_ids: list[str], by: Record) -> None:
        self.case_ids = sorted({*self.case_ids, *case_ids})

    def record_order(
        self,
        *,
        order_id: UUID,
        case_id: UUID,
        investigator: str,
        covers: str,
        reason: str,
        expires_at: datetime,
        by: Record,
    ) -> None:
        """The investigation's account of a county order it issued (the order's own stream,
        `domain.orders.CountyOrder`, is what the access rule reads)."""
        if str(case_id) not in self.case_ids:
            raise errors.InvestigationInvalid(
                "the case is not linked to this investigation", field="case_id"
            )
        if investigator not in self.investigators:
            self.assign_investigators([investigator], reason=reason, by=by)
        self._order_issued(
            order_id=str(order_id),
            case_id=str(case_id),
            investigator=investigator,
            covers=covers,
            reason=reason,
            expires_at=expires_at.isoformat(),
            by=by,
        )

    @event("OrderIssued")
    def _order_issued(
        self,
        order_id: str,
        case_id: str,
        investigator: str,
        covers: str,
        reason: str,
        expires_at: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        self.orders[order_id] = {
            "id": order_id,
            "case_id": case_id,
            "investigator": investigator,
            "covers": covers,
            "reason": reason,
            "expires_at": expires_at,
            "issued_at": _at(timestamp),
            "revoked": None,
        }

    def record_order_revoked(self, order_id: UUID, *, reason: str, by: Record) -> None:
        if str(order_id) not in self.orders:
            raise errors.OrderNotActive("no order of this investigation has this id")
        self._order_revoked(order_id=str(order_id), reason=reason, by=by)

    @event("OrderRevoked")
    def _order_revoked(
        self, order_id: str, reason: str, by: Record, timestamp: datetime | None = None
    ) -> None:
        self.orders[order_id]["revoked"] = {"at": _at(timestamp), "reason": reason, "by": by}

    # --- findings, rectifications, reports ---

    def record_finding(
        self,
        *,
        duty: str,
        unit: str,
        person: str,
        determination: str,
        evidence: list[int],
        note: str,
        by: Record,
    ) -> None:
        if determination not in DETERMINATIONS:
            raise errors.InvestigationInvalid(
                f"determination must be one of {', '.join(DETERMINATIONS)}", field="determination"
            )
        self._finding_recorded(
            duty=duty,
            unit=unit,
            person=person,
            determination=determination,
            evidence=sorted(set(evidence)),
            note=note,
            by=by,
        )

    @event("FindingRecorded")
    def _finding_recorded(
        self,
        duty: str,
        unit: str,
        person: str,
        determination: str,
        evidence: list[int],
        note: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        self.findings.append(
            {
                "duty": duty,
                "unit": unit,
                "person": person,
                "determination": determination,
                "evidence": list(evidence),
                "note": note,
                "by": by,
                "at": _at(timestamp),
            }
        )

    def add_rectification(self, *, item: str, owner: str, due_on: date, by: Record) -> UUID:
        item_id = uuid4()
        self._rectification_added(
            item_id=str(item_id), item=item, owner=owner, due_on=due_on.isoformat(), by=by
        )
        return item_id

    @event("RectificationAdded")
    def _rectification_added(
        self,
        item_id: str,
        item: str,
        owner: str,
        due_on: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        self.rectifications[item_id] = {
            "id": item_id,
            "item": item,
            "owner": owner,
            "due_on": due_on,
            "added": {"at": _at(timestamp), "by": by},
            "completed": None,
        }

    def complete_rectification(
        self, item_id: UUID | str, *, on: date, note: str, by: Record
    ) -> None:
        found = self.rectifications.get(str(item_id))
        if found is None:
            raise errors.UnknownRectification("this investigation has no such rectification item")
        if found["completed"] is not None:
            raise errors.RectificationAlreadyCompleted(
                "this rectification item is already recorded as completed"
            )
        if on < date.fromisoformat(found["added"]["at"][:10]):
            raise errors.DateOutOfOrder(
                "completed_on is before the item was added; give the day it was completed",
                field="completed_on",
            )
        self._rectification_completed(item_id=str(item_id), on=on.isoformat(), note=note, by=by)

    @event("RectificationCompleted")
    def _rectification_completed(
        self, item_id: str, on: str, note: str, by: Record, timestamp: datetime | None = None
    ) -> None:
        self.rectifications[item_id]["completed"] = {
            "on": on,
            "note": note,
            "by": by,
            "at": _at(timestamp),
        }

    def issue_report(self, *, format: str, sha256: str, by: Record) -> None:
        if format not in REPORT_FORMATS:
            raise errors.InvestigationInvalid(
                f"format must be one of {', '.join(REPORT_FORMATS)}", field="format"
            )
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise errors.InvestigationInvalid(
                "sha256 must be 64 lowercase hexadecimal digits", field="sha256"
            )
        self._report_issued(format=format, sha256=sha256, by=by)

    @event("ReportIssued")
    def _report_issued(
        self,
        format: str,
        sha256: str,
        by: Record,
        timestamp: datetime | None = None,
    ) -> None:
        self.reports.append({"format": format, "sha256": sha256, "by": by, "at": _at(timestamp)})

    # --- who may do what ---

    def names(self, user: str) -> bool:
        """Whether `user` is one of this investigation's investigators."""
        return user in self.investigators

    def summary(self, *, with_minor: bool) -> Record:
        """The investigation as an answer; the minor's identity only `with_minor`."""
        answer: Record = {
            "id": str(self.id),
            "kind": self.kind,
            "incident_on": self.incident_on,
            "opened": {"at": self.created_on.isoformat(), "by": self.opened_by},
            "version": self.version,
            "investigators": list(self.investigators),
            "reason": self.reason,
            "case_ids": list(self.case_ids),
            "orders": list(self.orders.values()),
            "findings": list(self.findings),
            "rectifications": list(self.rectifications.values()),
            "reports": list(self.reports),
        }
        if with_minor:
            answer["minor"] = {k: v for k, v in self.minor.items() if v}
        return answer
