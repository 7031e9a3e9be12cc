"""Forms posted by the pages: read, validated, and their errors said in Chinese.

`read_form` reads an `application/x-www-form-urlencoded` body (the only kind the pages post;
anything else is a 415 page); `validate` checks it against a pydantic model and returns the
model or the errors, each naming its field by the label the page shows, never repeating what
was submitted. A form with errors is answered with `form_errors` (422): the page's script
(`static/casetrail.js`) puts them beside the fields, so the draft stays as typed, in the page
only; nothing has been stored. Proven by tests/web.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError

from gateway.http.sessions import CSRF_FIELD
from gateway.web.templating import render

M = TypeVar("M", bound=BaseModel)

FORM_TYPE: Final = "application/x-www-form-urlencoded"
MAX_FIELDS: Final = 200

# pydantic's error types, said in Chinese (what is wrong and what to do; no value repeated).
_MESSAGES: Final = {
    "missing": "必填，请填写",
    "string_too_short": "内容过短，请补充",
    "string_too_long": "内容过长，请删减",
    "string_pattern_mismatch": "格式不正确，请按提示填写",
    "enum": "请从列表中选择",
    "literal_error": "请从列表中选择",
    "int_parsing": "请填写整数",
    "int_type": "请填写整数",
    "float_parsing": "请填写数字",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "date_from_datetime_parsing": "请填写日期（年-月-日）",
    "date_parsing": "请填写日期（年-月-日）",
    "datetime_parsing": "请填写日期和时间",
    "datetime_from_date_parsing": "请填写日期和时间",
    "uuid_parsing": "编号格式不正确",
    "bool_parsing": "请选择是或否",
    "too_short": "至少需要一项",
    "too_long": "项数过多",
    "extra_forbidden": "不应提交此项",
    "value_error": "内容不符合要求",
}


@dataclass(frozen=True)
class FieldError:
    """One field's error: its form name, its Chinese label and what to do."""

    field: str
    label: str
    message: str


Form = dict[str, list[str]]


async def read_form(request: Request) -> Form:
    """The posted form, each name with its values in order (a name may repeat: checkboxes,
    guardian rows). The CSRF field is left out (it was checked before the handler ran)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise HTTPException(415, "the pages post application/x-www-form-urlencoded forms")
    body = (await request.body()).decode("utf-8", "replace")
    found: Form = {}
    for count, (name, value) in enumerate(parse_qsl(body, keep_blank_values=True)):
        if count >= MAX_FIELDS:
            raise HTTPException(413, "too many form fields")
        if name != CSRF_FIELD:
            found.setdefault(name, []).append(value)
    return found


def first(form: Form, name: str) -> str | None:
    """The field's first value, stripped; None when absent or blank."""
    values = form.get(name) or [""]
    value = values[0].strip()
    return value or None


def validate(
    model: type[M], data: Mapping[str, object], labels: Mapping[str, str]
) -> M | list[FieldError]:
    """`model` built from `data`, or the errors naming each field by its label."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return errors_of(exc, labels)


def errors_of(exc: ValidationError, labels: Mapping[str, str]) -> list[FieldError]:
    found: list[FieldError] = []
    for error in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in error["loc"])
        name = str(error["loc"][0]) if error["loc"] else "form"
        found.append(
            FieldError(
                field=path or "form",
                label=labels.get(path) or labels.get(name) or path,
                message=_MESSAGES.get(str(error["type"]), "内容不符合要求，请检查"),
            )
        )
    return found


# The header the page's script sends with a form it submits (`static/casetrail.js`).
ENHANCED_HEADER: Final = "x-casetrail-form"
LOCATION_HEADER: Final = "X-Casetrail-Location"


def local_path(url: str) -> str:
    """`url` when it is a path of this site; else `/`. A path starts with one `/`: `//host`
    and `/\\host` are another site to a browser (a scheme-relative URL), and a control
    character could split the header."""
    if (
        not url.startswith("/")
        or url.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url)
    ):
        return "/"
    return url


def see_other(request: Request, url: str) -> Response:
    """Where a form goes once done: a 303 for a plain form; for the script's submission a 204
    naming the page (the script goes there, so the next page is read once, not twice). Only
    ever a path of this site (`local_path`), whatever built `url`."""
    url = local_path(url)
    if request.headers.get(ENHANCED_HEADER) == "1":
        return Response(status_code=204, headers={LOCATION_HEADER: url})
    return RedirectResponse(url, status_code=303)


def form_errors(
    request: Request,
    template: str,
    context: Mapping[str, object],
    errors: list[FieldError],
    *,
    title: str = "",
) -> Response:
    """The form's page again, 422, with `errors` in its summary (`_forms.html`); the page's
    script keeps what was typed. The context must not carry the submitted values back."""
    return render(request, template, {**context, "errors": errors}, status=422, title=title)
