"""A unit's inbox over the API: `GET /v1/inbox` (issue 14).

For a unit member (role `unit_member`): every assignment of their unit, the pair street + unit
code of their token, open ones first (earliest due first), then ended ones (latest first), each
with its state in the units' duty cycle (`domain.case.DutyState`: published, received,
signed_for, result_due, overdue, declined, result_reported, ended).

What it shows, and why no access event is stored for it: assignment metadata only (the case's
id, the assignment's id, protection function, due date, when it was assigned, received, signed
for, declined, its result's time and recommendation, how it ended), read from the ledger's
`ledger_assignments` (`projections.ledger.worklists.inbox`). No case content at all: not the
minor, the village, the risk, the issues, nor the task's text (free text written about the
case), which the unit reads from its sealed notice or from `GET /v1/cases/{id}`, an audited
read. So the inbox discloses nothing of any file, whatever the member's field set, and stores
no `CaseAccessed`; a role without an inbox is refused through the one reader
(`AuditedReader.inbox_scope`: `AccessDenied`, 403 not-permitted). Proven in
`tests/integration/test_duty_cycle.py`.

The receipt (`received`) comes from the ledger's `received_at` (`worklists.received_at`): the
unit client's `NoticeReceived` fact for the assignment's notice, or, in stores written before
those facts, a version 1 acknowledgement.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query

from gateway.http.dependencies import ReaderDep, ServicesDep, readmodels_of
from gateway.http.routes.ledger import Day
from projections.ledger.quarters import today
from projections.ledger.worklists import MAX_ITEMS, inbox

router = APIRouter()

# The day the states are judged on: `Day`, bounded as every date a query names (test_bounds.py).
Limit = Annotated[int, Query(ge=1, le=MAX_ITEMS)]
DEFAULT_LIMIT: Final = 200


@router.get("/v1/inbox", tags=["worklists"])
def unit_inbox(
    reader: ReaderDep, svc: ServicesDep, on: Day = None, limit: Limit = DEFAULT_LIMIT
) -> dict[str, Any]:
    """Your unit's assignments (unit members): open ones first, with each one's state
    (`published`, `received`, `signed_for`, `result_due`, `overdue`, `declined`,
    `result_reported`, `ended`) on `on` (today by default). Assignment metadata and the case's
    id only: read the case itself (audited) for its content."""
    scope = reader.inbox_scope()
    # The unit is the token's (street + code), never a query parameter.
    unit = scope.assigned_unit
    if unit is None:  # inbox_scope refuses every other scope
        raise AssertionError("an inbox without a unit")
    readmodels = readmodels_of(svc)
    day = on or today()
    with readmodels.ledger.reading() as db:
        items = inbox(db, street=scope.street, unit=unit, today=day, limit=limit)
    status = readmodels.follower("ledger").status()
    counts: dict[str, int] = {}
    for item in items:
        counts[item.values["state"]] = counts.get(item.values["state"], 0) + 1
    return {
        "position": status.position,
        "lag": status.lag,
        "on": day.isoformat(),
        "unit": unit,
        "street": scope.street,
        "counts": counts,
        "items": [item.as_dict() for item in items],
    }
