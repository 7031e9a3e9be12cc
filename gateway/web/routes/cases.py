"""The case page and the forms under it (issue 18).

- `GET /cases/{id}`: the purpose of use is asked first; nothing about the case is read or
  shown (not even whether it exists) until the reader has declared one.
- `GET /cases/{id}?purpose=<purpose>`: the case through the page's one reader
  (`page_reader(...).begin_case(id)`, its commit awaited: decided, and recorded with channel
  `web`, before the page is rendered), showing exactly the fields that read returned, each
  with its Chinese label, and the file's history as those fields tell it. A refused read is
  the API's refusal as a page: a missing case and one not visible to the reader are the same
  404.
- `GET|POST /cases/{id}/break-glass`: an emergency read of a case outside the reader's scope,
  with a written reason (the API's `BreakGlass` body), for roles that may declare `emergency`.
- `GET|POST /cases/{id}/{consultation,assignments,intervention,follow-up,letter,escalation,
  closure}`: the coordinator's (and, where the rules allow, others') commands, each through the
  same `CaseTrail.change_case` call and pydantic command as its JSON route
  (`gateway.http.routes.cases`); a form with errors is a 422 naming the fields in Chinese with
  nothing stored and nothing submitted repeated; done, back to `/cases/{id}?purpose=<purpose>`.
  Assigning several units is one change of the case: all are stored, or none.

The case page offers only the actions the signed-in role may take on this case (the command
rules of `domain.permissions`, judged from what the read returned); the application refuses
the others anyway, as a page.

Proven by tests/web/test_case_pages.py (purpose first, the 404s, break-glass, no-store),
tests/web/test_coordination_pages.py (the consultation and two units assigned in a browser,
the stored events, channel `web`) and tests/web/test_field_sets.py (planted values of fields
outside a role's set never in its pages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from domain import commands as cmd
from domain.access import ROLE_PURPOSES, Actor
from domain.case import DUTY_STATE_LABELS, Case, duty_state
from domain.errors import DomainError
from domain.permissions import COMMAND_RULES
from domain.taxonomy import (
    CASE_STATUS_LABELS,
    CATEGORY_LABELS,
    DISCOVERY_METHOD_LABELS,
    FINDER_ROLE_LABELS,
    GENDER_LABELS,
    PROTECTION_FUNCTION_LABELS,
    RISK_LABELS,
    SUBTYPES,
    UNIT_TYPE_LABELS,
    ClosingReason,
    GuardianRelation,
    LetterReason,
    ProtectionFunction,
    Purpose,
    UnitType,
)
from domain.units import UNIT_KIND_LABELS, Unit
from gateway.http.durability import answer_when_durable
from gateway.http.routes.access import BreakGlass
from gateway.logs import get_logger
from gateway.web.dependencies import PageActorDep, ServicesDep, page_reader
from gateway.web.forms import FieldError, Form, first, form_errors, read_form, see_other, validate
from gateway.web.labels import ASSIGNMENT_OUTCOME_LABELS, MEASURE_LABELS, PURPOSE_LABELS
from gateway.web.templating import LOCAL_ZONE, local_time, render

router = APIRouter()
log = get_logger("casetrail.web")

# --- labels: every field a case read can return, every code it holds ---------------------------

FIELD_LABELS: Final = {
    "id": "案件编号",
    "street": "所属街道",
    "village": "所在村（社区）",
    "reporting_unit": "报告单位",
    "status": "办理状态",
    "risk": "风险等级",
    "found_on": "发现日期",
    "method": "发现方式",
    "found_by": "发现人",
    "reported_at": "报告时间",
    "updated_at": "最近更新",
    "version": "档案版本",
    "categories": "问题类别",
    "issues": "苗头性问题",
    "assignments": "交办任务",
    "escalations": "提级处置",
    "closure": "结案",
    "corrections": "信息更正",
    "transfers": "转移记录",
    "minor.name": "姓名",
    "minor.gender": "性别",
    "minor.date_of_birth": "出生日期",
    "minor.id_number": "身份证号",
    "minor.school": "学校",
    "minor.grade_class": "年级班级",
    "guardians": "监护人",
    "description": "情况描述",
    "consultations": "会商研判",
    "interventions": "干预措施",
    "letters": "监护责任告知书",
    "follow_ups": "跟踪回访",
}
RELATION_LABELS: Final = {
    GuardianRelation.FATHER: "父亲",
    GuardianRelation.MOTHER: "母亲",
    GuardianRelation.GRANDPARENT: "（外）祖父母",
    GuardianRelation.SIBLING: "兄弟姐妹",
    GuardianRelation.OTHER_RELATIVE: "其他亲属",
    GuardianRelation.APPOINTED: "指定监护人",
}
LETTER_REASON_LABELS: Final = {
    LetterReason.PARENTS_WORKING_AWAY: "父母外出务工",
    LetterReason.UNSUPERVISED: "无人看管",
}
CLOSING_REASON_LABELS: Final = {
    ClosingReason.RESOLVED: "问题已解决",
    ClosingReason.NO_LONGER_MINOR: "已满十八周岁",
    ClosingReason.MOVED_AWAY: "已迁出",
    ClosingReason.UNFOUNDED: "经核实不属实",
    ClosingReason.TRANSFERRED: "已移交",
}
LEVEL_LABELS: Final = {"county": "县级", "street": "街道"}
ROLE_NAMES: Final = {
    "reporter": "线索报告人",
    "coordinator": "街道协调办",
    "supervisor": "街道分管领导",
    "unit_member": "成员单位",
    "investigator": "倒查人员",
    "compliance_auditor": "合规审查员",
    "admin": "系统管理员",
    "county_lead": "县级倒查负责人",
}
# The protection function a unit of each type usually holds (the assignment form's default).
USUAL_FUNCTION: Final[dict[str, ProtectionFunction]] = {
    UnitType.POLICE_STATION: ProtectionFunction.JUDICIAL,
    UnitType.TRIBUNAL: ProtectionFunction.JUDICIAL,
    UnitType.SCHOOL: ProtectionFunction.SCHOOL,
    UnitType.SCHOOL_DISTRICT_OFFICE: ProtectionFunction.SCHOOL,
    UnitType.VILLAGE: ProtectionFunction.FAMILY,
    UnitType.HEALTH_CENTRE: ProtectionFunction.SOCIETY,
    UnitType.SOCIAL_AFFAIRS_OFFICE: ProtectionFunction.GOVERNMENT,
    UnitType.GOVERNANCE_OFFICE: ProtectionFunction.GOVERNMENT,
}
# Units that are not member units a task goes to (alerts and escalations only).
_NOT_ASSIGNABLE: Final = frozenset(
    {UnitType.STREET_SUPERVISION.value, UnitType.COUNTY_OFFICE.value, "compliance_audit"}
)


def _label(labels: Mapping[Any, str], code: object) -> str:
    """The Chinese label of a code; the code itself when none is known (never empty)."""
    if code is None:
        return ""
    return labels.get(code, labels.get(str(code), str(code)))


def _subtype(category: str, subtype: str) -> str:
    try:
        return SUBTYPES[category][subtype]  # type: ignore[index]
    except KeyError:
        return subtype


def _day(value: object) -> str:
    return "" if value is None else str(value)[:10]


# --- the case as the page shows it: exactly what the read returned ----------------------------


@dataclass(frozen=True)
class Row:
    """One labelled value of the page (a field, or a line of a list field)."""

    label: str
    value: str


@dataclass(frozen=True)
class Entry:
    """One line of the file's history: when, what, and its detail."""

    when: str
    what: str
    detail: str = ""


@dataclass
class CaseView:
    case_id: str
    overview: list[Row] = field(default_factory=list)
    minor: list[Row] = field(default_factory=list)
    guardians: list[list[Row]] | None = None
    issues: list[Row] | None = None
    description: str | None = None
    assignments: list[dict[str, str]] | None = None
    lists: list[tuple[str, list[list[Row]]]] = field(default_factory=list)
    history: list[Entry] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)


def _unit_name(units: Mapping[str, str], code: object) -> str:
    name = units.get(str(code))
    return f"{name}（{code}）" if name else str(code)


def case_view(read: Mapping[str, Any], units: Mapping[str, str], today: date) -> CaseView:
    """The page's model of one read's answer: each field returned, labelled; nothing else."""
    view = CaseView(case_id=str(read.get("id", "")))
    view.shown = [
        FIELD_LABELS.get(f"minor.{m}", m) if key == "minor" else FIELD_LABELS.get(key, key)
        for key in read
        for m in (read["minor"] if key == "minor" else [""])
    ]
    values: dict[str, str] = {
        "id": str(read.get("id", "")),
        "street": str(read.get("street", "")),
        # A village is a registered unit of the street: its name when known.
        "village": _unit_name(units, read.get("village", "")),
        "reporting_unit": _unit_name(units, read.get("reporting_unit", "")),
        "status": _label(CASE_STATUS_LABELS, read.get("status")),
        "risk": _label(RISK_LABELS, read.get("risk")),
        "found_on": _day(read.get("found_on")),
        "method": _label(DISCOVERY_METHOD_LABELS, read.get("method")),
        "reported_at": _when(read.get("reported_at")),
        "updated_at": _when(read.get("updated_at")),
        "version": str(read.get("version", "")),
        "categories": "、".join(_label(CATEGORY_LABELS, c) for c in read.get("categories", [])),
    }
    if "found_by" in read:
        finder = read["found_by"] or {}
        values["found_by"] = (
            f"{_label(FINDER_ROLE_LABELS, finder.get('role'))}"
            f"（{_unit_name(units, finder.get('unit', ''))}）"
        )
    for key in (
        "id",
        "status",
        "risk",
        "street",
        "village",
        "reporting_unit",
        "found_on",
        "method",
        "found_by",
        "categories",
        "reported_at",
        "updated_at",
        "version",
    ):
        if key in read:
            view.overview.append(Row(FIELD_LABELS[key], values[key]))
    minor = read.get("minor") or {}
    minor_values = {
        "name": str(minor.get("name", "")),
        "gender": _label(GENDER_LABELS, minor.get("gender")),
        "date_of_birth": _day(minor.get("date_of_birth")),
        "id_number": str(minor.get("id_number", "")),
        "school": str(minor.get("school", "")),
        "grade_class": str(minor.get("grade_class", "")),
    }
    for key, value in minor_values.items():
        if key in minor:
            view.minor.append(Row(FIELD_LABELS[f"minor.{key}"], value))
    if "guardians" in read:
        view.guardians = [
            [
                Row("序号", f"第 {n} 位"),
                Row("姓名", str(g.get("name", ""))),
                Row("关系", _label(RELATION_LABELS, g.get("relation"))),
                Row("电话", str(g.get("phone", ""))),
                Row("外出务工", "是" if g.get("works_away") else "否"),
            ]
            for n, g in enumerate(read["guardians"], start=1)
        ]
    if "issues" in read:
        view.issues = [
            Row(_label(CATEGORY_LABELS, i.get("category")), _subtype(i["category"], i["subtype"]))
            for i in read["issues"]
        ]
    if "description" in read:
        view.description = str(read["description"])
    if "assignments" in read:
        view.assignments = [_assignment(a, units, today) for a in read["assignments"]]
    _lists(view, read, units)
    view.history = _history(read, units)
    return view


def _when(value: object) -> str:
    """An instant (ISO text) in Beijing time; a day as it is."""
    if not value:
        return ""
    text = str(value)
    return text if len(text) <= 10 else local_time(text)


def _assignment(a: Mapping[str, Any], units: Mapping[str, str], today: date) -> dict[str, str]:
    ended = a.get("ended") or {}
    state = duty_state(
        ended_at=ended.get("at"),
        outcome=ended.get("outcome"),
        due_on=str(a.get("due_on")),
        signed_for_at=(a.get("signed_for") or {}).get("at"),
        received_at=a.get("received_at"),
        today=today,
    )
    return {
        "unit": _unit_name(units, a.get("unit", "")),
        "function": _label(PROTECTION_FUNCTION_LABELS, a.get("function")),
        "task": str(a.get("task", "")),
        "due_on": _day(a.get("due_on")),
        "assigned_at": _when(a.get("assigned_at")),
        "state": DUTY_STATE_LABELS[state],
        "state_code": state.value,
    }


def _lists(view: CaseView, read: Mapping[str, Any], units: Mapping[str, str]) -> None:
    """The file's list fields, each line labelled, in the read's order."""
    if "consultations" in read:
        view.lists.append(
            (
                FIELD_LABELS["consultations"],
                [
                    [
                        Row("会商日期", _day(c.get("held_on"))),
                        Row(
                            "参会单位",
                            "、".join(_unit_name(units, p) for p in c.get("participants", [])),
                        ),
                        Row("会商意见", str(c.get("decision", ""))),
                    ]
                    for c in read["consultations"]
                ],
            )
        )
    if "interventions" in read:
        view.lists.append(
            (
                FIELD_LABELS["interventions"],
                [
                    [
                        Row("实施日期", _day(i.get("done_on"))),
                        Row("实施单位", _unit_name(units, i.get("unit", ""))),
                        Row("保护职能", _label(PROTECTION_FUNCTION_LABELS, i.get("function"))),
                        Row("措施", _label(MEASURE_LABELS, i.get("measure"))),
                        Row("情况记录", str(i.get("notes", ""))),
                    ]
                    for i in read["interventions"]
                ],
            )
        )
    if "letters" in read:
        view.lists.append(
            (
                FIELD_LABELS["letters"],
                [
                    [
                        Row("签订日期", _day(letter.get("signed_on"))),
                        Row("监护人", f"第 {int(letter.get('guardian_index', 0)) + 1} 位"),
                        Row("事由", _label(LETTER_REASON_LABELS, letter.get("reason"))),
                    ]
                    for letter in read["letters"]
                ],
            )
        )
    if "follow_ups" in read:
        view.lists.append(
            (
                FIELD_LABELS["follow_ups"],
                [
                    [
                        Row("回访日期", _day(f.get("visited_on"))),
                        Row("回访单位", _unit_name(units, f.get("unit", ""))),
                        Row("回访情况", str(f.get("notes", ""))),
                    ]
                    for f in read["follow_ups"]
                ],
            )
        )
    if "escalations" in read:
        view.lists.append(
            (
                FIELD_LABELS["escalations"],
                [
                    [
                        Row("时间", _when(e.get("at"))),
                        Row("提级至", _escalated_to(e)),
                        Row("理由", str(e.get("reason", ""))),
                    ]
                    for e in read["escalations"]
                ],
            )
        )
    closure = read.get("closure")
    if "closure" in read and closure:
        view.lists.append(
            (
                FIELD_LABELS["closure"],
                [
                    [
                        Row("结案时间", _when(closure.get("at"))),
                        Row("结案原因", _label(CLOSING_REASON_LABELS, closure.get("reason"))),
                        Row("说明", str(closure.get("note", ""))),
                    ]
                ],
            )
        )
    if "corrections" in read:
        view.lists.append(
            (
                FIELD_LABELS["corrections"],
                [_correction(c) for c in read["corrections"]],
            )
        )
    if "transfers" in read:
        view.lists.append(
            (
                FIELD_LABELS["transfers"],
                [
                    [
                        Row("时间", _when(t.get("at"))),
                        Row("转出", f"{t.get('from_street', '')} {t.get('from_village', '')}"),
                        Row("转入", f"{t.get('to_street', '')} {t.get('to_village', '')}"),
                        *([Row("理由", str(t["reason"]))] if "reason" in t else []),
                    ]
                    for t in read["transfers"]
                ],
            )
        )


def _escalated_to(e: Mapping[str, Any]) -> str:
    level = _label(LEVEL_LABELS, e.get("to_level"))
    to = e.get("to")
    return f"{level} · {_label(UNIT_TYPE_LABELS, to)}" if to else level


def _correction(c: Mapping[str, Any]) -> list[Row]:
    rows = [
        Row("时间", _when(c.get("at"))),
        Row("更正项目", "、".join(FIELD_LABELS.get(f, f) for f in c.get("fields", []))),
    ]
    for change in c.get("changes", []):
        # Only the changes of fields granted are returned (domain.access.corrections_shown).
        name = FIELD_LABELS.get(change.get("field"), str(change.get("field")))
        rows.append(Row(f"{name}（更正前 → 更正后）", f"{change.get('old')} → {change.get('new')}"))
    if "reason" in c:
        rows.append(Row("更正理由", str(c["reason"])))
    return rows


def _history(read: Mapping[str, Any], units: Mapping[str, str]) -> list[Entry]:
    """The file's history as the returned fields tell it (nothing read around the reader)."""
    found: list[tuple[str, int, Entry]] = []

    def add(at: object, what: str, detail: str = "") -> None:
        if at:
            # Sorted by the local day, then in the order of the file's life (a consultation
            # held "on a day" after the clue reported at an instant of that day).
            day = _when(at)[:10]
            found.append((day, len(found), Entry(_when(at), what, detail)))

    add(read.get("reported_at"), "报告线索，建立档案")
    for c in read.get("consultations", []) if "consultations" in read else []:
        add(c.get("held_on"), "召开会商研判")
    for a in read.get("assignments", []) if "assignments" in read else []:
        unit = _unit_name(units, a.get("unit", ""))
        add(a.get("assigned_at"), "交办成员单位", unit)
        add((a.get("signed_for") or {}).get("at"), "成员单位签收", unit)
        add((a.get("declined") or {}).get("at"), "成员单位退回", unit)
        add((a.get("result") or {}).get("at"), "成员单位办结反馈", unit)
        ended = a.get("ended") or {}
        if ended.get("outcome") not in (None, "declined", "result_reported"):
            add(
                ended.get("at"),
                "交办结束",
                f"{unit} {_label(ASSIGNMENT_OUTCOME_LABELS, ended['outcome'])}",
            )
    if "interventions" in read:
        for i in read["interventions"]:
            add(i.get("done_on"), "实施干预措施", _unit_name(units, i.get("unit", "")))
    for letter in read.get("letters", []) if "letters" in read else []:
        add(letter.get("signed_on"), "签订监护责任告知书")
    for f in read.get("follow_ups", []) if "follow_ups" in read else []:
        add(f.get("visited_on"), "跟踪回访", _unit_name(units, f.get("unit", "")))
    for e in read.get("escalations", []) if "escalations" in read else []:
        add(e.get("at"), "提级处置", _escalated_to(e))
    closure = read.get("closure") if "closure" in read else None
    if closure:
        add(closure.get("at"), "结案", _label(CLOSING_REASON_LABELS, closure.get("reason")))
    for c in read.get("corrections", []) if "corrections" in read else []:
        add(c.get("at"), "信息更正")
    for t in read.get("transfers", []) if "transfers" in read else []:
        add(t.get("at"), "档案转移")
    found.sort(key=lambda item: (item[0], item[1]))
    return [entry for _, _, entry in found]


# --- what the signed-in role may do on this case ----------------------------------------------


@dataclass(frozen=True)
class Action:
    slug: str
    label: str
    command: str  # the name in domain.permissions.COMMAND_RULES


ACTIONS: Final = (
    Action("consultation", "召开会商研判", "hold_consultation"),
    Action("assignments", "交办成员单位", "assign_unit"),
    Action("intervention", "记录干预措施", "record_intervention"),
    Action("follow-up", "记录跟踪回访", "record_follow_up"),
    Action("letter", "签订监护责任告知书", "sign_guardianship_letter"),
    Action("escalation", "提级处置", "escalate"),
    Action("closure", "结案", "close"),
)
ACTION_BY_SLUG: Final = {a.slug: a for a in ACTIONS}


def relations_shown(actor: Actor, read: Mapping[str, Any]) -> set[str]:
    """The actor's relations to the case (`domain.permissions`), judged from the read only."""
    found = {"any"}
    if read.get("street") == actor.street:
        found.add("street")
        if read.get("reporting_unit") == actor.unit:
            found.add("own_unit")
        if any(
            a.get("unit") == actor.unit and not a.get("ended") for a in read.get("assignments", [])
        ):
            found.add("assigned")
    return found


def actions_for(actor: Actor, read: Mapping[str, Any]) -> list[Action]:
    """The actions offered on the case page: the role's rules, on what the read returned (a
    closed file takes none of these)."""
    if read.get("status") == "closed":
        return []
    relations = relations_shown(actor, read)
    return [
        a
        for a in ACTIONS
        if any(r is actor.role and rel in relations for r, rel in COMMAND_RULES[a.command])
    ]


def role_may(actor: Actor, action: Action) -> bool:
    """Whether the role may ever take the action (a form's page is offered only then)."""
    return any(r is actor.role for r, _ in COMMAND_RULES[action.command])


def _purpose_of(actor: Actor, value: str | None) -> Purpose | None:
    """The purpose given, if it is one the role may declare."""
    if value is None:
        return None
    try:
        purpose = Purpose(value)
    except ValueError:
        return None
    return purpose if purpose in ROLE_PURPOSES[actor.role] else None


def _purposes(actor: Actor) -> list[tuple[str, str]]:
    allowed = ROLE_PURPOSES[actor.role]
    # A guardian's copy is its request's answer (POST /v1/guardian-requests/{id}/answer).
    return [
        (str(p), PURPOSE_LABELS[p])
        for p in Purpose
        if p in allowed and p is not Purpose.GUARDIAN_REQUEST
    ]


def case_url(case_id: UUID, purpose: Purpose | None) -> str:
    return f"/cases/{case_id}?purpose={purpose}" if purpose else f"/cases/{case_id}"


def _unit_names(units: Sequence[Unit]) -> dict[str, str]:
    return {u.unit_id: u.name for u in units}


# --- the case page --------------------------------------------------------------------------


@router.get("/cases/{case_id}")
async def case_page(
    request: Request,
    case_id: UUID,
    actor: PageActorDep,
    svc: ServicesDep,
    purpose: str | None = None,
) -> Response:
    """Purpose first; then the case as the reader returned it (see the module's docstring)."""
    if purpose is None or purpose == "":
        return _purpose_prompt(request, case_id, actor)
    try:
        declared = Purpose(purpose)
    except ValueError:
        return _purpose_prompt(
            request,
            case_id,
            actor,
            errors=[FieldError("purpose", "查阅目的", "请从列表中选择")],
        )
    # A purpose the role may not declare is refused by the reader (recorded, 403 page).
    reader = page_reader(request, svc, actor, declared)
    # As the API's case read: decided in a thread, its commit awaited here (no thread held).
    read = await answer_when_durable(await run_in_threadpool(reader.begin_case, case_id))
    units = await run_in_threadpool(svc.application.units)
    return _case_answer(request, case_id, actor, declared, read, units)


def _case_answer(
    request: Request,
    case_id: UUID,
    actor: Actor,
    purpose: Purpose,
    read: Mapping[str, Any],
    units: Sequence[Unit],
    *,
    break_glass: bool = False,
) -> Response:
    view = case_view(read, _unit_names(units), _local_today())
    return render(
        request,
        "case.html",
        {
            "case_id": str(case_id),
            "view": view,
            "purpose": str(purpose),
            "purpose_label": PURPOSE_LABELS[purpose],
            "actions": [] if break_glass else actions_for(actor, read),
            "break_glass": break_glass,
        },
        title="案件详情",
    )


def _local_today() -> date:
    return datetime.now(LOCAL_ZONE).date()


def _purpose_prompt(
    request: Request, case_id: UUID, actor: Actor, *, errors: list[FieldError] | None = None
) -> Response:
    """The purpose asked before anything is read: nothing about the case, not even whether
    it exists."""
    return render(
        request,
        "case_purpose.html",
        {
            "case_id": str(case_id),
            "purposes": _purposes(actor),
            "may_break_glass": Purpose.EMERGENCY in ROLE_PURPOSES[actor.role],
            "errors": errors or [],
        },
        status=422 if errors else 200,
        title="说明查阅目的",
    )


# --- break-glass: an emergency read with a written reason -------------------------------------

_BREAK_GLASS_LABELS: Final = {"reason": "紧急查阅理由"}


def _may_break_glass(actor: Actor) -> None:
    if Purpose.EMERGENCY not in ROLE_PURPOSES[actor.role]:
        raise HTTPException(403, "your role may not open a case in an emergency")


@router.get("/cases/{case_id}/break-glass")
async def break_glass_page(request: Request, case_id: UUID, actor: PageActorDep) -> Response:
    _may_break_glass(actor)
    return render(
        request,
        "case_break_glass.html",
        {"case_id": str(case_id), "errors": [], "minimum": cmd.BREAK_GLASS_REASON_MIN},
        title="紧急查阅",
    )


@router.post("/cases/{case_id}/break-glass")
async def break_glass_submit(
    request: Request, case_id: UUID, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """The case opened in an emergency: recorded as break-glass (channel `web`) and queued
    for a compliance review before it is shown. The answer is the case page itself: a GET
    could not repeat the read without its reason."""
    _may_break_glass(actor)
    form = await read_form(request)
    found = validate(BreakGlass, _scalars(form, "reason"), _BREAK_GLASS_LABELS)
    if isinstance(found, list):
        return form_errors(
            request,
            "case_break_glass.html",
            {"case_id": str(case_id), "minimum": cmd.BREAK_GLASS_REASON_MIN},
            found,
            title="紧急查阅",
        )
    reader = page_reader(request, svc, actor, Purpose.EMERGENCY)
    read = await run_in_threadpool(lambda: reader.case(case_id, break_glass_reason=found.reason))
    log.warning("break_glass_access", case_id=str(case_id), channel="web")
    units = await run_in_threadpool(svc.application.units)
    return _case_answer(request, case_id, actor, Purpose.EMERGENCY, read, units, break_glass=True)


# --- the forms under a case -----------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One field of a form: its name, Chinese label, kind and choices (never a value)."""

    name: str
    label: str
    kind: str  # text | textarea | date | select | checkboxes
    options: tuple[tuple[str, str], ...] = ()
    required: bool = True
    hint: str = ""
    maxlength: int = cmd.MAX_NOTE


def _choices(labels: Mapping[Any, str]) -> tuple[tuple[str, str], ...]:
    return tuple((str(code), label) for code, label in labels.items())


@dataclass(frozen=True)
class CaseForm:
    """A command's form: its page, fields, the command model and how the case changes."""

    action: Action
    title: str
    model: type[cmd.Command]
    inputs: Callable[[Sequence[Unit], Actor], tuple[Input, ...]]
    # The form's values -> the command's data (absent fields left out: "必填").
    data: Callable[[Form], dict[str, Any]]
    change: Callable[[Any, dict[str, str]], Callable[[Case], Any]]
    confirm: str = ""
    intro: str = ""


def _scalars(form: Form, *names: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in names:
        value = first(form, name)
        if value is not None:
            found[name] = value
    return found


def _street_units(units: Sequence[Unit], actor: Actor) -> list[Unit]:
    return [u for u in units if u.street == actor.street and u.type not in _NOT_ASSIGNABLE]


def _consultation_inputs(units: Sequence[Unit], actor: Actor) -> tuple[Input, ...]:
    return (
        Input("held_on", "会商日期", "date", hint="不晚于今天，不早于线索发现日期"),
        Input(
            "participants",
            "参会单位",
            "checkboxes",
            tuple((u.unit_id, u.name) for u in _street_units(units, actor)),
            required=False,
        ),
        Input(
            "other_participants",
            "其他参会单位代码",
            "text",
            required=False,
            hint="未在上面列出的单位，填写单位代码，多个以空格分隔",
            maxlength=600,
        ),
        Input("decision", "会商意见", "textarea", hint="研判结论与分工"),
    )


def _consultation_data(form: Form) -> dict[str, Any]:
    participants = [v.strip() for v in form.get("participants", []) if v.strip()]
    participants += (
        (first(form, "other_participants") or "").replace("，", " ").replace(",", " ").split()
    )
    return {**_scalars(form, "held_on", "decision"), "participants": participants}


def _intervention_inputs(units: Sequence[Unit], actor: Actor) -> tuple[Input, ...]:
    return (
        Input("function", "保护职能", "select", _choices(PROTECTION_FUNCTION_LABELS)),
        Input("measure", "措施类型", "select", _choices(MEASURE_LABELS)),
        Input("done_on", "实施日期", "date", hint="不晚于今天"),
        Input("notes", "情况记录", "textarea"),
    )


def _follow_up_inputs(units: Sequence[Unit], actor: Actor) -> tuple[Input, ...]:
    return (
        Input("visited_on", "回访日期", "date", hint="不晚于今天"),
        Input("notes", "回访情况", "textarea"),
    )


def _letter_inputs(units: Sequence[Unit], actor: Actor) -> tuple[Input, ...]:
    return (
        Input(
            "guardian_index",
            "监护人",
            "select",
            tuple((str(n), f"第 {n + 1} 位监护人（按案件页所列顺序）") for n in range(6)),
        ),
        Input("reason", "告知事由", "select", _choices(LETTER_REASON_LABELS)),
        Input("signed_on", "签订日期", "date", hint="不晚于今天"),
    )


def _escalation_inputs(units: Sequence[Unit], actor: Actor) -> tuple[Input, ...]:
    return (
        Input("to_level", "提级至", "select", _choices(LEVEL_LABELS)),
        Input(
            "to",
            "接收单位类型（可不选）",
            "select",
            (("", "不指定"), *_choices(UNIT_TYPE_LABELS)),
            required=False,
        ),
        Input("reason", "提级理由", "textarea"),
    )


def _closure_inputs(units: Sequence[Unit], actor: Actor) -> tuple[Input, ...]:
    return (
        Input("reason", "结案原因", "select", _choices(CLOSING_REASON_LABELS)),
        Input("note", "结案说明", "textarea"),
    )


FORMS: Final = {
    "consultation": CaseForm(
        ACTION_BY_SLUG["consultation"],
        "召开会商研判",
        cmd.HoldConsultation,
        _consultation_inputs,
        _consultation_data,
        lambda c, by: lambda case: case.hold_consultation(c, by=by),
        intro="记录会商日期、参会单位和会商意见。会商后案件进入干预阶段。",
    ),
    "intervention": CaseForm(
        ACTION_BY_SLUG["intervention"],
        "记录干预措施",
        cmd.RecordIntervention,
        _intervention_inputs,
        lambda form: _scalars(form, "function", "measure", "notes", "done_on"),
        lambda c, by: lambda case: case.record_intervention(c, by=by),
    ),
    "follow-up": CaseForm(
        ACTION_BY_SLUG["follow-up"],
        "记录跟踪回访",
        cmd.RecordFollowUp,
        _follow_up_inputs,
        lambda form: _scalars(form, "visited_on", "notes"),
        lambda c, by: lambda case: case.record_follow_up(c, by=by),
        intro="每季度至少更新一次。",
    ),
    "letter": CaseForm(
        ACTION_BY_SLUG["letter"],
        "签订监护责任告知书",
        cmd.SignGuardianshipLetter,
        _letter_inputs,
        lambda form: _scalars(form, "guardian_index", "reason", "signed_on"),
        lambda c, by: lambda case: case.sign_guardianship_letter(c, by=by),
    ),
    "escalation": CaseForm(
        ACTION_BY_SLUG["escalation"],
        "提级处置",
        cmd.Escalate,
        _escalation_inputs,
        lambda form: _scalars(form, "to_level", "to", "reason"),
        lambda c, by: lambda case: case.escalate(c, by=by),
        confirm="确定将此案件提级处置吗？",
    ),
    "closure": CaseForm(
        ACTION_BY_SLUG["closure"],
        "结案",
        cmd.CloseCase,
        _closure_inputs,
        lambda form: _scalars(form, "reason", "note"),
        lambda c, by: lambda case: case.close(c, by=by),
        confirm="确定结案吗？结案后成员单位的交办任务随之结束。",
    ),
}

# Domain refusals said in Chinese in the form's summary (no value repeated).
DOMAIN_MESSAGES: Final = {
    "case_closed": "案件已结案，不能进行此操作",
    "date_out_of_order": "日期早于线索发现日期，请填写实际发生的日期",
    "duplicate_assignment": "该单位在此保护职能下已有未结束的交办任务",
    "unit_not_registered": "该单位未登记，无法接收任务",
    "unit_of_another_street": "该单位属于其他街道，请选择本街道的成员单位",
    "guardianship_letter_not_applicable": "案件记录不符合签订此告知书的条件，或没有该位监护人",
    "risk_below_floor": "风险等级低于此类问题的最低等级",
}


def _form_labels(inputs: Sequence[Input]) -> dict[str, str]:
    return {i.name: i.label for i in inputs}


def _domain_error(refused: DomainError, labels: Mapping[str, str]) -> FieldError:
    name = refused.field or "form"
    return FieldError(
        name,
        labels.get(name, "提交内容"),
        DOMAIN_MESSAGES.get(refused.code, "与案件当前状态不符，请检查后重试"),
    )


def _may_show(refused: DomainError) -> bool:
    """A refusal the form shows in its summary: not a missing case, not a permission (those
    are their own pages: a form never tells more than the API would)."""
    return refused.status in (409, 422)


def _form_context(
    case_id: UUID, case_form: CaseForm, units: Sequence[Unit], actor: Actor, purpose: str
) -> dict[str, Any]:
    return {
        "case_id": str(case_id),
        "form": case_form,
        "inputs": case_form.inputs(units, actor),
        "purpose": purpose,
        "back": f"/cases/{case_id}?purpose={purpose}" if purpose else f"/cases/{case_id}",
        "today": _local_today().isoformat(),
    }


def _form_of(actor: Actor, slug: str) -> CaseForm:
    case_form = FORMS[slug]
    if not role_may(actor, case_form.action):
        # The page is not offered to this role; the API would refuse the command anyway.
        raise HTTPException(403, "your role may not take this action")
    return case_form


def _purpose_value(actor: Actor, value: str | None) -> str:
    found = _purpose_of(actor, value)
    return str(found) if found else ""


def _register_form(slug: str) -> None:
    path = f"/cases/{{case_id}}/{slug}"

    @router.get(path, name=f"case_form_{slug}")
    async def form_page(
        request: Request,
        case_id: UUID,
        actor: PageActorDep,
        svc: ServicesDep,
        purpose: str | None = None,
    ) -> Response:
        case_form = _form_of(actor, slug)
        units = await run_in_threadpool(svc.application.units)
        context = _form_context(case_id, case_form, units, actor, _purpose_value(actor, purpose))
        return render(request, "case_form.html", {**context, "errors": []}, title=case_form.title)

    @router.post(path, name=f"case_form_{slug}_submit")
    async def form_submit(
        request: Request, case_id: UUID, actor: PageActorDep, svc: ServicesDep
    ) -> Response:
        case_form = _form_of(actor, slug)
        form = await read_form(request)
        purpose = _purpose_value(actor, first(form, "purpose"))
        units = await run_in_threadpool(svc.application.units)
        context = _form_context(case_id, case_form, units, actor, purpose)
        labels = _form_labels(context["inputs"])
        found = validate(case_form.model, case_form.data(form), labels)
        if isinstance(found, list):
            return form_errors(request, "case_form.html", context, found, title=case_form.title)
        change = case_form.change(found, actor.as_record())
        try:
            await run_in_threadpool(
                svc.application.change_case, case_id, actor, case_form.action.command, change
            )
        except DomainError as refused:
            if not _may_show(refused):
                raise
            log.info("command_refused", code=refused.code, channel="web")
            errors = [_domain_error(refused, labels)]
            return form_errors(request, "case_form.html", context, errors, title=case_form.title)
        log.info("case_changed", case_id=str(case_id), action=case_form.action.command)
        return see_other(request, case_url(case_id, _purpose_of(actor, purpose)))


for _slug in FORMS:
    _register_form(_slug)


# --- assigning one or more member units ---------------------------------------------------

_ASSIGN_LABELS: Final = {
    "unit": "交办单位",
    "task": "交办任务",
    "due_on": "办理期限",
    "function": "保护职能",
}


def _assign_context(
    case_id: UUID, units: Sequence[Unit], actor: Actor, purpose: str
) -> dict[str, Any]:
    rows = [
        {
            "unit": u.unit_id,
            "name": u.name,
            "kind": _label(UNIT_KIND_LABELS, u.type),
            "function": str(USUAL_FUNCTION.get(u.type, ProtectionFunction.SOCIETY)),
        }
        for u in _street_units(units, actor)
    ]
    return {
        "case_id": str(case_id),
        "rows": rows,
        "functions": _choices(PROTECTION_FUNCTION_LABELS),
        "purpose": purpose,
        "back": f"/cases/{case_id}?purpose={purpose}" if purpose else f"/cases/{case_id}",
        "today": _local_today().isoformat(),
    }


@router.get("/cases/{case_id}/assignments")
async def assign_page(
    request: Request,
    case_id: UUID,
    actor: PageActorDep,
    svc: ServicesDep,
    purpose: str | None = None,
) -> Response:
    _form_of_assign(actor)
    units = await run_in_threadpool(svc.application.units)
    context = _assign_context(case_id, units, actor, _purpose_value(actor, purpose))
    return render(request, "case_assign.html", {**context, "errors": []}, title="交办成员单位")


def _form_of_assign(actor: Actor) -> None:
    if not role_may(actor, ACTION_BY_SLUG["assignments"]):
        raise HTTPException(403, "your role may not assign units")


@router.post("/cases/{case_id}/assignments")
async def assign_submit(
    request: Request, case_id: UUID, actor: PageActorDep, svc: ServicesDep
) -> Response:
    """One or more units assigned in one change of the case (the JSON route's
    `assignable(...).assign_unit(...)` per unit): all stored, or none."""
    _form_of_assign(actor)
    form = await read_form(request)
    purpose = _purpose_value(actor, first(form, "purpose"))
    units = await run_in_threadpool(svc.application.units)
    context = _assign_context(case_id, units, actor, purpose)
    chosen = list(dict.fromkeys(v.strip() for v in form.get("unit", []) if v.strip()))
    errors: list[FieldError] = []
    if not chosen:
        errors.append(FieldError("unit", "交办单位", "至少选择一个单位"))
    commands: list[cmd.AssignUnit] = []
    names = {u.unit_id: u.name for u in units}
    for unit in chosen:
        data = {
            "unit": unit,
            "function": first(form, f"function.{unit}") or first(form, "function"),
            **_scalars(form, "task", "due_on"),
        }
        data = {k: v for k, v in data.items() if v is not None}
        labels = {**_ASSIGN_LABELS, "function": f"保护职能（{names.get(unit, '所选单位')}）"}
        found = validate(cmd.AssignUnit, data, labels)
        if isinstance(found, list):
            for error in found:
                # A unit's own function field is named only for a unit the form listed: the
                # name of any other would repeat what was submitted.
                named = error.field == "function" and unit in names
                shown = (
                    FieldError(f"function.{unit}", error.label, error.message) if named else error
                )
                if shown not in errors:
                    errors.append(shown)
        else:
            commands.append(found)
    if errors:
        return form_errors(request, "case_assign.html", context, errors, title="交办成员单位")
    by = actor.as_record()
    application = svc.application

    def assign_all(case: Case) -> list[UUID]:
        return [application.assignable(c.unit, case).assign_unit(c, by=by) for c in commands]

    try:
        await run_in_threadpool(application.change_case, case_id, actor, "assign_unit", assign_all)
    except DomainError as refused:
        if not _may_show(refused):
            raise
        log.info("command_refused", code=refused.code, channel="web")
        found_error = _domain_error(refused, _ASSIGN_LABELS)
        return form_errors(
            request, "case_assign.html", context, [found_error], title="交办成员单位"
        )
    log.info("case_changed", case_id=str(case_id), action="assign_unit", units=len(commands))
    return see_other(request, case_url(case_id, _purpose_of(actor, purpose)))
