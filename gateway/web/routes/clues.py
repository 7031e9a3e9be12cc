"""Reporting a clue on a phone (报告线索, 一线索一档案): `GET /clues/new`, `POST /clues`, and the
confirmation `GET /clues/{case_id}/reported`.

The form posts what `POST /v1/cases` takes, field for field: its body model
(`domain.commands.ReportClue`, the same validation) and the same application call
(`CaseTrail.report_clue`, which checks the role: reporters and coordinators), the command
recorded with origin channel `web`. Every input's `name` is its field's path in the model
(`minor.id_number`, `guardians.0.phone`, `issues`...), so an error names the very input the
page's script marks, and its label in Chinese (`LABELS`). A form with errors is answered 422
(`form_errors`): nothing stored, no submitted value in the answer; with the page's script the
draft stays in the inputs as typed, and nowhere else. On success the browser goes to the
confirmation page, which shows the file's number (its opaque id) and what happens next: no
personal data, nothing read from the file.

Proven by tests/web/test_clue_pages.py (a grid worker on a 360x740 viewport; the stored
`ClueReported` event checked).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final
from uuid import UUID

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from domain import commands as cmd
from domain import errors as domain_errors
from domain.access import Actor
from domain.taxonomy import (
    CATEGORY_LABELS,
    DISCOVERY_METHOD_LABELS,
    FINDER_ROLE_LABELS,
    GENDER_LABELS,
    RISK_LABELS,
    SUBTYPES,
    GuardianRelation,
    Role,
)
from gateway.http.dependencies import Services
from gateway.logs import get_logger
from gateway.web.dependencies import PageActorDep, ServicesDep
from gateway.web.forms import FieldError, Form, first, form_errors, read_form, see_other, validate
from gateway.web.templating import render

log = get_logger("casetrail.web")
router = APIRouter()

# Who may report (the application checks it again, and records a refusal).
REPORTING_ROLES: Final = frozenset({Role.REPORTER, Role.COORDINATOR})
# Guardian rows the form has (the model takes at most 6): the first two shown, the others
# behind "添加监护人" (a <details>, so it works without script).
GUARDIAN_ROWS: Final = 6
SHOWN_GUARDIAN_ROWS: Final = 2
_GUARDIAN_FIELDS: Final = ("name", "relation", "phone", "works_away")

RELATION_LABELS: Final = {
    GuardianRelation.FATHER: "父亲",
    GuardianRelation.MOTHER: "母亲",
    GuardianRelation.GRANDPARENT: "祖父母/外祖父母",
    GuardianRelation.SIBLING: "兄弟姐妹",
    GuardianRelation.OTHER_RELATIVE: "其他亲属",
    GuardianRelation.APPOINTED: "指定监护人",
}


def _labels() -> dict[str, str]:
    labels = {
        "form": "表单",
        "minor": "未成年人信息",
        "minor.name": "未成年人姓名",
        "minor.gender": "性别",
        "minor.date_of_birth": "出生日期",
        "minor.id_number": "身份证号",
        "minor.school": "就读学校",
        "minor.grade_class": "年级班级",
        "minor.village": "居住村(社区)代码",
        "guardians": "监护人",
        "issues": "苗头性问题（类别与具体情形）",
        "description": "情况描述",
        "found_by": "发现人",
        "found_by.role": "发现人身份",
        "found_by.unit": "发现人所在单位代码",
        "method": "发现方式",
        "found_on": "发现日期",
        "risk": "风险等级",
    }
    names = {"name": "姓名", "relation": "关系", "phone": "联系电话", "works_away": "是否外出务工"}
    for row in range(GUARDIAN_ROWS):
        labels[f"guardians.{row}"] = f"监护人{row + 1}"
        for key, label in names.items():
            labels[f"guardians.{row}.{key}"] = f"监护人{row + 1}{label}"
    for index in range(20):
        labels[f"issues.{index}"] = labels["issues"]
    return labels


LABELS: Final = _labels()

# The discovery method's input is not named `method`: a form control of that name (or id)
# shadows the form's own `method` property, which the page's script reads
# (`static/casetrail.js`). Its errors are said under this name, so the script marks it.
METHOD_INPUT: Final = "discovery_method"

# What a rule's refusal (a validator's `value_error`) means for the field, in Chinese: the
# model's messages are English and generic here ("内容不符合要求"); never a submitted value.
_HINTS: Final = {
    "minor.id_number": "身份证号不正确：应为 18 位，校验位正确，出生日期、性别与所填一致",
    "minor.date_of_birth": "出生日期不正确：不能晚于今天，且报告时须未满 18 周岁",
    "minor.name": "姓名不能含不可见字符",
    "minor.school": "学校名称不能含不可见字符",
    "minor.village": "请填写村(社区)代码（小写字母、数字、连字符）",
    "found_by.unit": "请填写单位代码（小写字母、数字、连字符）",
    "found_on": "发现日期不能晚于今天，也不能早于出生日期",
    "issues": "同一具体情形只能选一次",
    "description": "情况描述不能含控制字符",
}
_PHONE_HINT: Final = "请填写 11 位手机号，或带区号的固定电话（如 0571-88001234）"
_DOMAIN_HINTS: Final = {
    "risk_below_floor": (
        "所选问题（自伤自残、疑似性侵、怀孕、被下药、长期无人监护）风险等级不能低于“高”"
    ),
}
_GENERIC: Final = frozenset(
    {"内容不符合要求", "格式不正确，请按提示填写", "内容不符合要求，请检查"}
)


def _on_inputs(errors: list[FieldError], rows: list[int]) -> list[FieldError]:
    """The errors said on the inputs the person filled: the body's guardian i is the form's
    row `rows[i]`; the discovery method is `METHOD_INPUT`."""
    found = []
    for error in errors:
        field = error.field
        if field == "method":
            field = METHOD_INPUT
        parts = field.split(".")
        if parts[0] == "guardians" and len(parts) > 1 and parts[1].isdigit():
            index = int(parts[1])
            if index < len(rows):
                parts[1] = str(rows[index])
                field = ".".join(parts)
        label = LABELS.get(field, error.label)
        found.append(FieldError(field, label, error.message))
    return found


def _hinted(errors: list[FieldError]) -> list[FieldError]:
    found = []
    for error in errors:
        hint = _HINTS.get(error.field)
        if error.field.startswith("issues."):
            hint = "请从列表中选择"
        if error.field.startswith("guardians.") and error.field.endswith(".phone"):
            hint = _PHONE_HINT
        if hint and error.message in _GENERIC:
            found.append(FieldError(error.field, error.label, hint))
        else:
            found.append(error)
    return found


def _issues(values: list[str]) -> list[dict[str, str]]:
    """Checked issues (`category:subtype`) as the model takes them."""
    found = []
    for value in values:
        category, _, subtype = value.partition(":")
        found.append({"category": category, "subtype": subtype})
    return found


def guardian_rows(form: Form) -> list[int]:
    """The form's rows filled in, in order (a row left wholly blank is no guardian): the
    body's guardian i is the form's row `guardian_rows(form)[i]`."""
    return [
        row
        for row in range(GUARDIAN_ROWS)
        if any(first(form, f"guardians.{row}.{key}") for key in ("name", "relation", "phone"))
    ]


def _guardians(form: Form) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for row in guardian_rows(form):
        values: dict[str, object] = {}
        for key in ("name", "relation", "phone"):
            value = first(form, f"guardians.{row}.{key}")
            if value is not None:
                values[key] = value
        values["works_away"] = first(form, f"guardians.{row}.works_away") is not None
        found.append(values)
    return found


def body_of(form: Form) -> dict[str, Any]:
    """The form as `POST /v1/cases`'s JSON body: blank inputs left out (so a required one is
    `missing`), the optional class kept blank."""

    def put(target: dict[str, Any], key: str, name: str) -> None:
        value = first(form, name)
        if value is not None:
            target[key] = value

    minor: dict[str, Any] = {}
    for key in ("name", "gender", "date_of_birth", "id_number", "school", "village"):
        put(minor, key, f"minor.{key}")
    minor["grade_class"] = first(form, "minor.grade_class") or ""
    found_by: dict[str, Any] = {}
    put(found_by, "role", "found_by.role")
    put(found_by, "unit", "found_by.unit")
    body: dict[str, Any] = {
        "minor": minor,
        "guardians": _guardians(form),
        "issues": _issues([v for v in form.get("issues", []) if v.strip()]),
        "found_by": found_by,
    }
    for key in ("description", "found_on", "risk"):
        put(body, key, key)
    put(body, "method", METHOD_INPUT)
    return body


def _form_context(actor: Actor) -> dict[str, Any]:
    """What the form offers; defaults are the signed-in person's own (their unit), never a
    submitted value."""
    own_unit = actor.unit if actor.role is Role.REPORTER else ""
    return {
        "categories": [
            (category, CATEGORY_LABELS[category], list(subtypes.items()))
            for category, subtypes in SUBTYPES.items()
        ],
        "genders": GENDER_LABELS,
        "relations": RELATION_LABELS,
        "finder_roles": FINDER_ROLE_LABELS,
        "methods": DISCOVERY_METHOD_LABELS,
        "risks": RISK_LABELS,
        "guardian_rows": range(SHOWN_GUARDIAN_ROWS),
        "more_guardian_rows": range(SHOWN_GUARDIAN_ROWS, GUARDIAN_ROWS),
        "own_unit": own_unit,
        "finder_unit": actor.unit,
        "today": date.today().isoformat(),
        "errors": [],
    }


def _not_for_role(request: Request) -> Response:
    return render(
        request,
        "error.html",
        {
            "status": 403,
            "heading": "无权报告线索",
            "detail": "报告线索由村(社区)儿童主任、网格员等线索报告人和街道协调办进行。",
            "fields": [],
        },
        status=403,
        title="无权报告线索",
    )


@router.get("/clues/new")
async def new_clue(request: Request, actor: PageActorDep) -> Response:
    if actor.role not in REPORTING_ROLES:
        return _not_for_role(request)
    return render(request, "clue_new.html", _form_context(actor), title="报告线索")


def _report(svc: Services, command: cmd.ReportClue, actor: Actor) -> UUID:
    case_id = svc.application.report_clue(command, actor)
    log.info("clue_reported", case_id=str(case_id), channel="web")
    return case_id


@router.post("/clues")
async def report_clue(request: Request, actor: PageActorDep, svc: ServicesDep) -> Response:
    """The clue, reported as `POST /v1/cases` reports it (see the module's docstring)."""
    form = await read_form(request)
    checked = validate(cmd.ReportClue, body_of(form), LABELS)
    context = _form_context(actor)
    if isinstance(checked, list):
        return form_errors(
            request,
            "clue_new.html",
            context,
            _hinted(_on_inputs(checked, guardian_rows(form))),
            title="报告线索",
        )
    try:
        case_id = await run_in_threadpool(_report, svc, checked, actor)
    except domain_errors.DomainError as exc:
        if exc.status == 403:
            raise  # not this role's to do: the app's error page (the refusal is recorded)
        field = exc.field or "form"
        message = _DOMAIN_HINTS.get(exc.code, "内容与规则不符，请检查后重新提交")
        error = FieldError(field, LABELS.get(field, "表单"), message)
        return form_errors(request, "clue_new.html", context, [error], title="报告线索")
    return see_other(request, f"/clues/{case_id}/reported")


@router.get("/clues/{case_id}/reported")
async def reported(request: Request, case_id: UUID, actor: PageActorDep) -> Response:
    """The confirmation: the file's number and what comes next. Nothing is read from the file
    (the page shows only the id in its own URL), so it discloses nothing."""
    return render(
        request,
        "clue_reported.html",
        {"case_id": str(case_id), "may_report": actor.role in REPORTING_ROLES},
        title="线索已报告",
    )
