"""Investigation orders: the only way an investigator (一案一倒查) gets to see a case.

An order names one case, one investigator, a reason and an expiry. It is issued by a coordinator
of the case's street or by a county-level admin, and is itself a stream of events. There is one
stream per (case, investigator): a later order for the same pair renews it.

County orders (`CountyOrder`) are issued for an investigation (`domain.investigations`) by the
county (a county lead or an admin) and are streams of their own, one per (case, investigator),
apart from the street's: the street under review can neither find nor revoke them (a street
coordinator revoking one is answered as for an order that does not exist), and investigator
reads under one are left out of the access log street roles see. An investigator may read a
case under either kind of order in force. Proven in `tests/domain/test_investigations.py` and
`tests/integration/test_investigations.py`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain import errors

MAX_ORDER_DURATION: Final = timedelta(days=90)
_ORDER_NAMESPACE: Final = UUID("6f0c1c8e-3c1e-4a51-9a43-5d1f0b2e7a10")
_COUNTY_ORDER_NAMESPACE: Final = UUID("0b7d8e52-9a4f-5c1e-8d36-2f4a6c9e1b73")

Record = dict[str, Any]


def order_id(case_id: UUID, investigator: str) -> UUID:
    return uuid5(_ORDER_NAMESPACE, f"{case_id}/{investigator}")


def county_order_id(case_id: UUID, investigator: str) -> UUID:
    return uuid5(_COUNTY_ORDER_NAMESPACE, f"{case_id}/{investigator}")


def check_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at <= now:
        raise errors.OrderExpiryInvalid("expires_at is not in the future", field="expires_at")
    if expires_at - now > MAX_ORDER_DURATION:
        raise errors.OrderExpiryInvalid(
            f"an order may run for at most {MAX_ORDER_DURATION.days} days; renew it when needed",
            field="expires_at",
        )


class InvestigationOrder(Aggregate):
    @staticmethod
    def create_id(case_id: UUID, investigator: str) -> UUID:
        return order_id(case_id, investigator)

    @event("InvestigationOrderIssued")
    def __init__(
        self, *, case_id: UUID, investigator: str, reason: str, expires_at: str, by: Record
    ) -> None:
        self.case_id = case_id
        self.investigator = investigator
        self.reason = reason
        self.expires_at = expires_at
        self.issued_by = by
        self.revoked: Record | None = None

    def active_until(self, now: datetime) -> datetime | None:
        """The expiry, if the order is in force now."""
        expires = datetime.fromisoformat(self.expires_at)
        return expires if self.revoked is None and expires > now else None

    def renew(self, *, reason: str, expires_at: datetime, now: datetime, by: Record) -> None:
        check_expiry(expires_at, now)
        self._renewed(reason=reason, expires_at=expires_at.isoformat(), by=by)

    @event("InvestigationOrderRenewed")
    def _renewed(self, reason: str, expires_at: str, by: Record) -> None:
        self.reason = reason
        self.expires_at = expires_at
        self.revoked = None

    def revoke(self, *, reason: str, now: datetime, by: Record) -> None:
        if self.active_until(now) is None:
            raise errors.OrderNotActive("the order is not in force (expired or revoked)")
        self._revoked(reason=reason, by=by)

    @event("InvestigationOrderRevoked")
    def _revoked(self, reason: str, by: Record) -> None:
        self.revoked = {"reason": reason, "by": by}


class CountyOrder(Aggregate):
    """An order of the county, for an investigation: one case, one investigator. `covers` is
    `minor` (issued for every file of the minor) or `case` (for this file alone)."""

    @staticmethod
    def create_id(case_id: UUID, investigator: str) -> UUID:
        return county_order_id(case_id, investigator)

    @event("CountyOrderIssued")
    def __init__(
        self,
        *,
        investigation_id: UUID,
        case_id: UUID,
        investigator: str,
        covers: str,
        reason: str,
        expires_at: str,
        by: Record,
    ) -> None:
        self.investigation_id = investigation_id
        self.case_id = case_id
        self.investigator = investigator
        self.covers = covers
        self.reason = reason
        self.expires_at = expires_at
        self.issued_by = by
        self.revoked: Record | None = None

    def active_until(self, now: datetime) -> datetime | None:
        """The expiry, if the order is in force now."""
        expires = datetime.fromisoformat(self.expires_at)
        return expires if self.revoked is None and expires > now else None

    def renew(
        self,
        *,
        investigation_id: UUID,
        covers: str,
        reason: str,
        expires_at: datetime,
        now: datetime,
        by: Record,
    ) -> None:
        check_expiry(expires_at, now)
        self._renewed(
            investigation_id=investigation_id,
            covers=covers,
            reason=reason,
            expires_at=expires_at.isoformat(),
            by=by,
        )

    @event("CountyOrderRenewed")
    def _renewed(
        self, investigation_id: UUID, covers: str, reason: str, expires_at: str, by: Record
    ) -> None:
        self.investigation_id = investigation_id
        self.covers = covers
        self.reason = reason
        self.expires_at = expires_at
        self.revoked = None

    def revoke(self, *, reason: str, now: datetime, by: Record) -> None:
        if self.active_until(now) is None:
            raise errors.OrderNotActive("the order is not in force (expired or revoked)")
        self._revoked(reason=reason, by=by)

    @event("CountyOrderRevoked")
    def _revoked(self, reason: str, by: Record) -> None:
        self.revoked = {"reason": reason, "by": by}
