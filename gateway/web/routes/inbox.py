"""A unit's inbox (本单位任务), for its members on a phone: `GET /inbox`, and one form per step
of the unit's duty cycle, each POSTed to a path of ids only:

- `POST /inbox/{case_id}/{assignment_id}/sign`: 签收, the person signs for the task;
- `POST /inbox/{case_id}/{assignment_id}/decline`: 退回, with a reason;
- `POST /inbox/{case_id}/{assignment_id}/result`: 办结反馈 (measures, outcome, close or continue),
  offered only once the task is signed for.

The list is `GET /v1/inbox`'s (`gateway.http.routes.inbox.unit_inbox`, through the page's
reader: a role without an inbox is refused and the refusal recorded, channel `web`): assignment
metadata only (case id, protection function, due day, state, 逾期 marked), no case content, so
no access event is stored for it. The case itself is a link to `/cases/{case_id}` (the audited
case page, which asks the purpose first).

Each step calls the JSON API's own route function (`gateway.http.routes.cases.acknowledge`,
`decline_assignment`, `report_assignment_result`: the same `CaseTrail.change_case` call, the
person recorded as signing, origin channel `web`), its body checked first with the API's own
model (`domain.commands.DeclineAssignment`, `ReportAssignmentResult`): a form with errors is a
422 naming the fields in Chinese, nothing stored, nothing typed repeated; a refused step (already
signed for, ended, not signed for yet) is a page saying so in Chinese (its `CommandRefused`
stored, as for the API). Done, the form goes back to `/inbox`.

Proven by tests/web/test_inbox_pages.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from uuid import UUID

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from domain import commands as cmd
from domain import errors
from domain.case import DUTY_STATE_LABELS, DutyState
from domain.taxonomy import Purpose
from gateway.http.dependencies import ServicesDep
from gateway.http.routes.cases import acknowledge, decline_assignment, report_assignment_result
from gateway.http.routes.inbox import DEFAULT_LIMIT, unit_inbox
from gateway.logs import get_logger
from gateway.web.dependencies import PageActorDep, page_reader
from gateway.web.forms import FieldError, first, form_errors, read_form, see_other, validate
from gateway.web.labels import ASSIGNMENT_OUTCOME_LABELS, MEASURE_LABELS, RECOMMENDATION_LABELS
from gateway.web.templating import render

router = APIRouter()
log = get_logger("casetrail.web")

INBOX_URL: Final = "/inbox"
FORM_TEMPLATE: Final = "inbox_form.html"

# The form's fields, by the labels the page shows them with.
DECLINE_LABELS: Final = {"reason": "退回理由"}
RESULT_LABELS: Final = {
    "measures": "采取的措施",
    "outcome": "办理结果",
    "recommendation": "处理建议",
}
# Refusals a member can cause by acting on a stale page, said in Chinese (nothing echoed).
_REFUSALS: Final[Mapping[type[errors.DomainError], str]] = {
    errors.AssignmentAlreadyAcknowledged: "此任务已签收，不能再次签收或退回；请刷新任务列表。",
    errors.AssignmentEnded: "此任务已结束（已退回、已反馈或已撤回），不能再办理。",
    errors.AssignmentNotSignedFor: "请先签收此任务，再进行办结反馈。",
    errors.AssignmentNotHeld: "此任务不属于本单位。",
}
# The states in which a task waits for a person to sign for it (or decline it).
_TO_SIGN: Final = frozenset({DutyState.PUBLISHED, DutyState.RECEIVED})


def _task(item: Mapping[str, Any]) -> dict[str, Any]:
    """One task as the page shows it: the inbox item and what may be done with it now."""
    state = DutyState(item["state"])
    open_ = item.get("ended_at") is None
    signed = item.get("signed_for_at") is not None
    return {
        **item,
        "state_label": DUTY_STATE_LABELS[state],
        "may_sign": open_ and not signed and state in _TO_SIGN | {DutyState.OVERDUE},
        "may_report": open_ and signed,
        "open": open_,
        "recommendation_label": RECOMMENDATION_LABELS.get(str(item.get("recommendation")), ""),
        "outcome_label": ASSIGNMENT_OUTCOME_LABELS.get(str(item.get("outcome")), ""),
    }


def _given(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields filled in (a blank one is missing: "必填", not "format")."""
    return {k: v for k, v in data.items() if v not in (None, [])}


@router.get(INBOX_URL)
async def inbox_page(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """The unit's tasks: open ones first (earliest due first), then ended ones."""
    reader = page_reader(request, svc, actor, Purpose.INTERVENTION)
    answer = await run_in_threadpool(unit_inbox, reader, svc, None, DEFAULT_LIMIT)
    tasks = [_task(item) for item in answer["items"]]
    return render(
        request,
        "inbox.html",
        {
            "tasks": [t for t in tasks if t["open"]],
            "ended": [t for t in tasks if not t["open"]],
            "lag": answer["lag"],
            "unit": answer["unit"],
            "measures": MEASURE_LABELS,
            "recommendations": RECOMMENDATION_LABELS,
            "errors": [],
        },
        title="本单位任务",
    )


async def _step(
    request: Request, action: str, run: Callable[[], Awaitable[Any]], *, title: str
) -> Response:
    """Run one step of the duty cycle through the API's own route (which runs the command in the
    thread pool); a refusal by the model is said on a page, in Chinese."""
    try:
        await run()
    except tuple(_REFUSALS) as refused:
        # Stored as `CommandRefused` by the application, as for the API.
        log.info("inbox_step_refused", action=action, code=refused.code)
        message = next(m for kind, m in _REFUSALS.items() if isinstance(refused, kind))
        return render(
            request,
            FORM_TEMPLATE,
            {"errors": [FieldError("form", title, message)], "heading": title},
            status=refused.status,
            title=title,
        )
    log.info("inbox_step_done", action=action)
    return see_other(request, INBOX_URL)


@router.post(INBOX_URL + "/{case_id}/{assignment_id}/sign")
async def sign_for(
    request: Request, case_id: UUID, assignment_id: UUID, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """签收: the signed-in person signs for the task (the stored event names them)."""
    return await _step(
        request,
        "acknowledge_assignment",
        lambda: acknowledge(case_id, assignment_id, actor, svc),
        title="签收任务",
    )


@router.post(INBOX_URL + "/{case_id}/{assignment_id}/decline")
async def decline(
    request: Request, case_id: UUID, assignment_id: UUID, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """退回: the unit declines the task, saying why."""
    form = await read_form(request)
    title = "退回任务"
    data = _given({"reason": first(form, "reason")})
    command = validate(cmd.DeclineAssignment, data, DECLINE_LABELS)
    if isinstance(command, list):
        return form_errors(request, FORM_TEMPLATE, {"heading": title}, command, title=title)
    return await _step(
        request,
        "decline_assignment",
        lambda: decline_assignment(case_id, assignment_id, command, actor, svc),
        title=title,
    )


@router.post(INBOX_URL + "/{case_id}/{assignment_id}/result")
async def report_result(
    request: Request, case_id: UUID, assignment_id: UUID, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """办结反馈: the measures taken, the outcome, and closing or continuing."""
    form = await read_form(request)
    title = "办结反馈"
    data = _given(
        {
            "measures": [m for m in form.get("measures", []) if m],
            "outcome": first(form, "outcome"),
            "recommendation": first(form, "recommendation"),
        }
    )
    command = validate(cmd.ReportAssignmentResult, data, RESULT_LABELS)
    if isinstance(command, list):
        return form_errors(request, FORM_TEMPLATE, {"heading": title}, command, title=title)
    return await _step(
        request,
        "report_assignment_result",
        lambda: report_assignment_result(case_id, assignment_id, command, actor, svc),
        title=title,
    )
