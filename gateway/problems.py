"""RFC 9457 problem details: every error the API returns has this shape.

    {"type": "urn:casetrail:problem:<code>", "title": ..., "status": ..., "detail": ...,
     "instance": "/v1/cases/...", "request_id": ..., "errors": [{"field": ..., "message": ...}]}

`errors` lists the fields at fault (dotted paths into the body, or the header's name). The
submitted values are never echoed back, so a problem never repeats personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:casetrail:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
    }
    if errors:
        body["errors"] = list(errors)
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def field_path(loc: Sequence[int | str]) -> str:
    """('body', 'minor', 'id_number') -> 'minor.id_number'; ('header', 'x-purpose-of-use') ->
    'X-Purpose-Of-Use'."""
    if not loc:
        return "body"
    where, *rest = loc
    if where == "header" and rest:
        return "-".join(part.capitalize() for part in str(rest[0]).split("-"))
    if where == "body" and (not rest or (isinstance(rest[0], int) and len(rest) == 1)):
        return "body"
    return (
        ".".join(str(part) for part in rest)
        if where in ("body", "query", "path")
        else ".".join(str(part) for part in loc)
    )


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    found = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field; remove it (see the schema at /docs)"
        elif error.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        found.append({"field": field_path(error.get("loc", ())), "message": message})
    return found
