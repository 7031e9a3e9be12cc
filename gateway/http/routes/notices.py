"""A unit's client confirms receipt of a notice: `POST /v1/notices/{message_id}/receipt`.

The receipt is a machine's, not a person's: the unit's client (`casetrail unit listen`) posts it
automatically once the notice is in its inbox, with the unit's token. It stores
`NoticeReceived` (`domain.notices`) with the client's identity as the service saw it (the
token's user, role and unit; the peer address; the user agent). A person signing for a task
(签收) is another fact, `Case.AssignmentAcknowledged`.

- The URL carries the message id only (32 hex digits, an HMAC: no unit, case or assignment).
- What the notice was (unit, kind, case, assignment) is read from the relay's `NoticePublished`
  fact, looked up by its deterministic id, never taken from the client.
- Only a member of the unit it was published to may confirm it; to anyone else the answer is
  404, as for an id never published (nothing tells a unit what another unit was sent).
- Idempotent: a second receipt stores nothing and answers 200 with the first one's answer.

Proven by `tests/messaging/test_receipts.py` (in-process API) and
`tests/messaging/test_notice_facts.py` (over a real nats-server, the unit client's receipts).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from gateway.http.dependencies import ActorDep, ServicesDep
from gateway.logs import get_logger

log = get_logger("casetrail.api")

MESSAGE_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
# The user agent kept in the receipt: enough to tell one client build from another.
_USER_AGENT_MAX: Final = 200

router = APIRouter()

MessageId = Annotated[
    str,
    Path(
        pattern=MESSAGE_ID_PATTERN,
        min_length=32,
        max_length=32,
        description="the notice's message id (32 hex digits), as in its sealed content",
    ),
]


@router.post("/v1/notices/{message_id}/receipt", tags=["notices"])
async def confirm_receipt(
    message_id: MessageId, request: Request, actor: ActorDep, svc: ServicesDep
) -> dict[str, Any]:
    """The unit's client holds the notice (automatic; not a person signing for a task)."""
    client = {
        "user": actor.user,
        "role": str(actor.role),
        "unit": actor.unit,
        "address": request.client.host if request.client else "",
        "user_agent": request.headers.get("user-agent", "")[:_USER_AGENT_MAX],
    }
    receipt = await run_in_threadpool(
        svc.application.record_notice_receipt, message_id, actor, client
    )
    log.info("notice_received", message_id=message_id, kind=receipt.kind)
    return {"message_id": receipt.message_id, "received_at": receipt.timestamp.isoformat()}
