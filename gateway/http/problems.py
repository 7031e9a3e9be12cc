"""RFC 9457 problem details: every error the API returns has this shape.

    {"type": "urn:casetrail:problem:<code>", "title": ..., "status": ..., "detail": ...,
     "instance": "/v1/cases/{case_id}", "request_id": ...,
     "errors": [{"field": ..., "message": ...}]}

`instance` is the route's template (null for a path that matches no route), never the path as
requested; `request_id` identifies the occurrence (and its log lines).

`errors` lists the fields at fault (dotted paths into the body, or the header's name), at most
`MAX_ERRORS` of them. The submitted values are never echoed back, so a problem never repeats
personal data:
- a field's path is built from the schema's names only: an unknown key (`extra_forbidden`) is
  reported as "an unknown field" of its parent, never by its name, which is what was submitted;
- a message is built from the error's type and what the schema allows (its pattern, its allowed
  values, its bounds), never from pydantic's `msg` where that may quote the input (`{error}`
  details of dates and UUIDs, a union's tag, a validator's own message that quotes its value);
- as a last guard, any submitted query value or validated input found in a problem's text is
  cut out, and every text is bounded in length.
Proven by `tests/integration/test_no_echo.py` (bodies, queries, headers, paths; answers and logs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_core._pydantic_core import list_all_errors

MEDIA_TYPE = "application/problem+json"
MAX_ERRORS: Final = 20
MAX_TEXT: Final = 400  # characters of a title, detail or message
UNKNOWN_FIELD: Final = "an unknown field; remove it (the schema is at /docs)"
WITHHELD: Final = "the value given"


class FieldError(BaseModel):
    field: str = Field(
        max_length=MAX_TEXT, description="path of the field at fault, or the header's name"
    )
    message: str = Field(
        max_length=MAX_TEXT, description="what is wrong and what is allowed; never the value sent"
    )


class Problem(BaseModel):
    """The body of every error answer (RFC 9457), for the OpenAPI document."""

    type: str = Field(max_length=100, examples=["urn:casetrail:problem:validation-error"])
    title: str = Field(max_length=MAX_TEXT)
    status: int = Field(ge=400, le=599)
    detail: str = Field(max_length=MAX_TEXT)
    instance: str | None = Field(default=None, max_length=200, description="the route's template")
    request_id: str | None = Field(default=None, max_length=64)
    errors: list[FieldError] | None = Field(default=None, max_length=MAX_ERRORS)


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    # A web page's problem is a page (issue 18, `gateway.web.errors`): the same status, the
    # fields named in Chinese, never a submitted value.
    page_problem = getattr(request.app.state, "page_problem", None)
    as_page = not getattr(request.state, "problem_as_json", False)
    if page_problem is not None and as_page and is_page_path(request.url.path):
        found: Response = page_problem(
            request, status=status, code=code, errors=errors, headers=headers
        )
        return found
    submitted = _submitted_values(request)
    body: dict[str, Any] = {
        "type": f"urn:casetrail:problem:{code}",
        "title": _clean(title, submitted),
        "status": status,
        "detail": _clean(detail, submitted),
        # The route's template, not the path: a path may hold what was submitted.
        "instance": getattr(request.scope.get("route"), "path", None),
        "request_id": getattr(request.state, "request_id", None),
    }
    if errors:
        body["errors"] = [
            {"field": _bound(e["field"]), "message": _clean(e["message"], submitted)}
            for e in list(errors)[:MAX_ERRORS]
        ]
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


# Paths that are the API's, not pages: everything else is a web page (gateway.web).
_API_PREFIXES: Final = (
    "/v1/",
    "/docs",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "/static/",
)


def is_page_path(path: str) -> bool:
    """Whether a request's path is a web page's (its problems are answered as pages)."""
    return not path.startswith(_API_PREFIXES)


# --- paths of fields -----------------------------------------------------------------------------

# A part of a location that is a name from the schema (or a header's name); anything else (a
# dict key, a union member's tag) is left out of the path rather than risk repeating input.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def field_path(loc: Sequence[int | str]) -> str:
    """('body', 'minor', 'id_number') -> 'minor.id_number'; ('header', 'x-purpose-of-use') ->
    'X-Purpose-Of-Use'; ('body',) -> 'body'; ('query',) -> 'query'."""
    if not loc:
        return "body"
    where, *rest = loc
    parts = [p for p in rest if isinstance(p, int) or _NAME.match(p)]
    if where == "header" and parts:
        return "-".join(part.capitalize() for part in str(parts[0]).split("-"))
    if where == "body" and (not parts or (isinstance(parts[0], int) and len(parts) == 1)):
        return "body"
    if where in ("body", "query", "path", "header", "cookie"):
        return ".".join(str(part) for part in parts) or str(where)
    return ".".join(str(part) for part in loc if isinstance(part, int) or _NAME.match(part))


# --- messages ------------------------------------------------------------------------------------

# pydantic's message templates; a template with one of these placeholders may repeat the input.
_TEMPLATES: Final[dict[str, str]] = {
    e["type"]: e["message_template_python"] for e in list_all_errors()
}
_ECHOING: Final = ("{error}", "{input", "{tag}", "{encoding_error}", "{attribute}", "{tz_actual}")

# What to say instead, for the error types whose pydantic message may quote the input.
_MESSAGES: Final = {
    "json_invalid": "the body is not valid JSON",
    "uuid_parsing": "must be a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "uuid_type": "must be a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "date_parsing": "must be a date as YYYY-MM-DD",
    "date_from_datetime_parsing": "must be a date as YYYY-MM-DD",
    "datetime_parsing": "must be a date and time as YYYY-MM-DDTHH:MM:SS+08:00",
    "datetime_from_date_parsing": "must be a date and time as YYYY-MM-DDTHH:MM:SS+08:00",
    "datetime_object_invalid": "must be a date and time as YYYY-MM-DDTHH:MM:SS+08:00",
    "time_parsing": "must be a time as HH:MM[:SS]",
    "time_delta_parsing": "must be a duration",
    "url_parsing": "must be a URL",
    "url_syntax_violation": "must be a URL",
    "bytes_invalid_encoding": "is not valid in its encoding",
    "mapping_type": "must be an object",
    "iteration_error": "must be a list",
    "get_attribute_error": "is not valid",
    "union_tag_not_found": "does not name its kind",
    "no_such_attribute": "is not a field of this object",
    "timezone_offset": "has a time zone offset that is not allowed",
}
_FALLBACK: Final = "is not valid; the schema at /docs says what is allowed"


def message_for(error: dict[str, Any]) -> str:
    """The message for one pydantic error, built so that it cannot repeat the input."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return UNKNOWN_FIELD
    if kind == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags', 'the kinds listed at /docs')}"
    if kind in ("value_error", "assertion_error"):
        # A validator's own text: written by us, but some quote their value; cut it out.
        return _without(str(ctx.get("error") or _FALLBACK), _inputs(error.get("input")))
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    template = _TEMPLATES.get(kind)
    if template is None or any(p in template for p in _ECHOING):
        # A custom error type, or a template we have no text for: nothing of its own survives.
        return _FALLBACK
    # The template renders only what the schema says (bounds, pattern, allowed values).
    return _without(str(error.get("msg") or _FALLBACK), _inputs(error.get("input")))


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """Each field at fault with its message (at most `MAX_ERRORS`; `more_errors` tells the rest)."""
    found = []
    for error in exc.errors()[:MAX_ERRORS]:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "extra_forbidden":
            loc = loc[:-1]  # the last part is the unknown key itself: what was submitted
        found.append({"field": field_path(loc), "message": message_for(error)})
    return found


def more_errors(exc: RequestValidationError) -> int:
    return max(0, len(exc.errors()) - MAX_ERRORS)


# --- the last guard ------------------------------------------------------------------------------


def _inputs(value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return []
    text = str(value)
    # As given, and as a validator may have seen it (stripped, upper-cased like an ID number).
    return [text, text.strip(), text.strip().upper(), text.strip().lower()]


def _submitted_values(request: Request) -> list[str]:
    """What the client put in the query string: a problem's text must not contain it."""
    return [value for _, value in request.query_params.multi_items()]


def _without(text: str, values: Iterable[str]) -> str:
    for value in sorted({v for v in values if len(v) >= 2}, key=len, reverse=True):
        if value not in text:
            continue
        text = text.replace(f"'{value}'", WITHHELD).replace(f'"{value}"', WITHHELD)
        # Unquoted: a word of our own text may look the same; only a value that could be
        # personal (digits, non-ASCII, or longer than a short word) is cut, the rest kept.
        if value in text and (
            len(value) > 3 or not value.isascii() or any(c.isdigit() for c in value)
        ):
            text = text.replace(value, "…")
    return text


def _bound(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _clean(text: str, submitted: Iterable[str]) -> str:
    return _bound(_without(text, submitted))
