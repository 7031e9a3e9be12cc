"""The home page (`GET /`, 我的工作): the signed-in person's own worklists, by role.

What it shows, and from where: the very calls the JSON worklists make
(`gateway.http.routes.ledger`: consultations, assignments, quarterly updates;
`gateway.http.routes.submissions`: the villages' ledger submissions; `gateway.http.routes.inbox`:
a unit's inbox), each with the page's reader (`page_reader`, channel `web`) and the role's usual
purpose of use, so a role without worklists is refused and recorded exactly as over the API.
- coordinators and supervisors: clues awaiting a consultation (会商), assignments of the
  street's units (not signed for, overdue), quarterly updates due, villages' ledger submissions;
- reporters: their own unit's clues awaiting a consultation and quarterly updates due;
- unit members: their unit's inbox (to sign for, overdue), linking to `/inbox`;
- every other role: a short guide to its menu.
Overdue items are marked 逾期; an empty list says 暂无.

No identity on this page: a worklist item carries operational fields only (case id, village,
risk, status, dates; `projections.ledger.worklists`), never a name or ID number, masked or not;
each item links to its case page (`/cases/{id}`, which asks the purpose and records the read)
or, for a unit member, to `/inbox`. Proven by tests/web/test_home_pages.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from domain.access import Actor
from domain.case import DUTY_STATE_LABELS, DutyState
from domain.taxonomy import Role
from gateway.http.dependencies import Services
from gateway.http.routes import inbox as inbox_routes
from gateway.http.routes import ledger as ledger_routes
from gateway.http.routes import submissions as submission_routes
from gateway.web.dependencies import PageActorDep, ServicesDep, page_reader
from gateway.web.labels import ROLE_LABELS
from gateway.web.routes.ledger import usual_purpose
from gateway.web.templating import local_time, render
from projections.ledger.worklists import AssignmentState

router = APIRouter()

# Inbox states a unit still has to act on (sign for it, or report its result).
_TO_SIGN: Final = frozenset({DutyState.PUBLISHED, DutyState.RECEIVED})
_OPEN_STATES: Final = _TO_SIGN | {DutyState.SIGNED_FOR, DutyState.RESULT_DUE, DutyState.OVERDUE}

# What the roles without worklists find in their menu.
_GUIDES: Final = {
    Role.INVESTIGATOR: (
        "请从菜单进入“倒查工作台”，查看您被授权倒查的案件的时间线、知情矩阵和期限分析。"
    ),
    Role.COUNTY_LEAD: "请从菜单进入“倒查工作台”，立项倒查并签发调阅令。",
    Role.COMPLIANCE_AUDITOR: (
        "请从菜单进入“合规发现”审查破窗查阅与异常；“查阅记录查询”可查某一未成年人档案被谁查阅；"
        "“年度审计报告”汇总全年情况。"
    ),
    Role.ADMIN: "请从菜单进入“用户管理”，登记、停用用户和授予角色。系统管理员不查阅档案内容。",
}


@dataclass
class Item:
    """One line of a worklist: where it leads, what it says, whether it is overdue."""

    href: str
    title: str
    details: list[str]
    overdue: bool = False
    badge: str = ""


@dataclass
class Section:
    heading: str
    items: list[Item] = field(default_factory=list)
    note: str = ""
    more: tuple[str, str] | None = None  # (label, href)


def _short(case_id: str) -> str:
    """The file's number as the pages show it (档案编号: the id's first block)."""
    return case_id.split("-", maxsplit=1)[0]


def _case_href(case_id: str) -> str:
    return f"/cases/{case_id}"


def _consultations(answer: dict[str, Any]) -> Section:
    hours = answer["deadline_hours"]
    section = Section(
        "待会商线索",
        note=f"报告（或重新打开）后 {hours:g} 小时内应召开问题会商。",
    )
    for item in answer["items"]:
        section.items.append(
            Item(
                _case_href(item["case_id"]),
                f"档案 {_short(item['case_id'])}",
                [
                    f"村(社区)：{item['village']}",
                    f"风险：{item['risk_label']}",
                    f"已等待 {item['hours_waiting']:g} 小时",
                    f"会商期限：{local_time(item['due_at'])}",
                ],
                overdue=bool(item["overdue"]),
            )
        )
    return section


def _assignments(answer: dict[str, Any]) -> Section:
    section = Section("交办任务（各成员单位）", note="未签收、已逾期的任务需要督促。")
    for item in answer["items"]:
        state = DutyState(item["state"])
        section.items.append(
            Item(
                _case_href(item["case_id"]),
                f"档案 {_short(item['case_id'])} · {item['function_label']}",
                [
                    f"承办单位：{item['unit']}",
                    f"办理期限：{item['due_on']}",
                    f"状态：{DUTY_STATE_LABELS[state]}",
                ],
                overdue=bool(item["overdue"]),
                badge="" if item["acknowledged"] else "未签收",
            )
        )
    return section


def _updates(answer: dict[str, Any]) -> Section:
    section = Section("本季度待更新档案", note="每个档案每季度至少更新（跟踪回访）一次。")
    for item in answer["items"]:
        last = item["last_follow_up_on"] or "尚无"
        section.items.append(
            Item(
                _case_href(item["case_id"]),
                f"档案 {_short(item['case_id'])}",
                [
                    f"村(社区)：{item['village']}",
                    f"状态：{item['status_label']}",
                    f"上次回访：{last}",
                    f"应更新日期：{item['due_on']}",
                ],
                overdue=bool(item["overdue"]),
            )
        )
    return section


def _submissions(answer: dict[str, Any]) -> Section:
    section = Section(
        f"台账报送（{answer['period_label']}）", note=f"报送截止日期：{answer['due_on']}。"
    )
    for village in answer["villages"]:
        if village["state"] == "received":
            continue
        section.items.append(
            Item(
                "/ledger?village=" + village["village"],
                f"村(社区)：{village['village']}",
                [f"状态：{village['state_label']}"],
                overdue=bool(village["overdue"]),
            )
        )
    return section


def _inbox(answer: dict[str, Any]) -> Section:
    section = Section("本单位待办任务", more=("进入本单位任务", "/inbox"))
    for item in answer["items"]:
        state = DutyState(item["state"])
        if state not in _OPEN_STATES:
            continue
        section.items.append(
            Item(
                "/inbox",
                f"{item['function_label']}任务（档案 {_short(item['case_id'])}）",
                [f"办理期限：{item['due_on']}", f"状态：{DUTY_STATE_LABELS[state]}"],
                overdue=state is DutyState.OVERDUE,
                badge="待签收" if state in _TO_SIGN else "",
            )
        )
    return section


def _sections(request: Request, svc: Services, actor: Actor) -> list[Section]:
    """The role's worklists, each read as its JSON worklist reads it (see the docstring)."""
    purpose = usual_purpose(actor.role)
    if purpose is None:
        return []
    reader = page_reader(request, svc, actor, purpose)
    if actor.role is Role.UNIT_MEMBER:
        return [_inbox(inbox_routes.unit_inbox(reader, svc, None, inbox_routes.DEFAULT_LIMIT))]
    sections = [_consultations(ledger_routes.consultations(reader, svc))]
    if actor.role in (Role.COORDINATOR, Role.SUPERVISOR):
        sections.append(
            _assignments(
                ledger_routes.unit_assignments(reader, svc, None, AssignmentState.OPEN, None)
            )
        )
    sections.append(_updates(ledger_routes.updates_due(reader, svc, None)))
    if actor.role in (Role.COORDINATOR, Role.SUPERVISOR):
        sections.append(_submissions(submission_routes.submissions_worklist(reader, svc, None)))
    return sections


@router.get("/")
async def home(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    # The reads touch the store (and may record a refusal): off the event loop.
    sections = await run_in_threadpool(_sections, request, svc, actor)
    overdue = sum(1 for s in sections for i in s.items if i.overdue)
    return render(
        request,
        "home.html",
        {
            "sections": sections,
            "overdue": overdue,
            "guide": _GUIDES.get(actor.role, ""),
            "role_label": ROLE_LABELS[actor.role],
            "may_report": actor.role in (Role.REPORTER, Role.COORDINATOR),
        },
        title="我的工作",
    )
