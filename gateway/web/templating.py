"""Rendering a page: one jinja2 environment (autoescaping on, undefined names an error), the
page's headers, and what every page shows (who is signed in, that reads are recorded, the
navigation of the reader's role, the CSRF token for its forms).

`WEB_CSP` is the pages' Content-Security-Policy: nothing inline (no `<script>` body, no
`style=` attribute, no `on...=` handler), everything from this origin, forms posted only here,
never framed. `Cache-Control: no-store` is added to every answer by the app's
`SecurityHeaders` (only `/static/` is cacheable). Proven by tests/web/test_pages_guarantees.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from domain.access import Actor
from domain.credentials import csrf_token
from gateway.http.sessions import session_secret
from gateway.web.labels import PURPOSE_LABELS, ROLE_LABELS
from gateway.web.navigation import navigation_for

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_URL: Final = "/static"
WEB_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
# The time zone the pages show instants in (the plan's streets are in China).
LOCAL_ZONE: Final = ZoneInfo("Asia/Shanghai")


def local_time(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An instant as the people of the street read it (Beijing time); '' for none."""
    if value is None or value == "":
        return ""
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    if instant.tzinfo is None:
        return instant.strftime(fmt)
    return instant.astimezone(LOCAL_ZONE).strftime(fmt)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["local_time"] = local_time
    environment.globals["ROLE_LABELS"] = ROLE_LABELS
    environment.globals["PURPOSE_LABELS"] = PURPOSE_LABELS
    environment.globals["STATIC_URL"] = STATIC_URL
    return environment


ENVIRONMENT: Final = _environment()


def page_csrf(request: Request) -> str:
    """The CSRF token every form of the page carries ('' without a session: a bearer token's
    requests are exempt, and the sign-in page has no session yet)."""
    secret = session_secret(request)
    return csrf_token(secret) if secret else ""


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    title: str = "",
) -> HTMLResponse:
    """The page `template` with `context`, and what every page has: `actor` (None when nobody
    is signed in), `nav`, `csrf`, `title`, `request_id`."""
    actor: Actor | None = getattr(request.state, "actor", None)
    values: dict[str, Any] = {
        "actor": actor,
        "nav": navigation_for(actor.role) if actor else (),
        "csrf": page_csrf(request),
        "title": title,
        "request_id": getattr(request.state, "request_id", ""),
        "path": request.url.path,
        **(context or {}),
    }
    body = ENVIRONMENT.get_template(template).render(values)
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": WEB_CSP})
