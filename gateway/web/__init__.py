"""The web front end (issue 18): server-rendered pages in Chinese for the people who do the
work, served by the API's own app at `/` (`install`, called by `gateway.http.app`).

The pages keep the API's promises, by construction:
- identity: a page takes `PageActorDep` (`gateway.web.dependencies`): the session cookie (or a
  bearer token) through the API's own `current_actor`, so a refused or ended session is
  recorded as for the API, then answered by a redirect to `/signin` (no page content);
- reads: a page that shows case content takes its reader from `page_reader`, the API's one
  `AuditedReader` built with `web=True`: every disclosure and refusal is stored first, with
  channel `web` (`domain.access.Channel.WEB`); commands a page issues are recorded with origin
  channel `web`;
- headers: every page is `Cache-Control: no-store` (the app's `SecurityHeaders`; only
  `/static/` may be cached), with a strict Content-Security-Policy (`WEB_CSP`: scripts,
  styles and images from this origin only, no inline script or style, forms post only here,
  never framed);
- forms: every state-changing form carries the session's CSRF token (`csrf_token` field,
  checked by `gateway.http.sessions` before any handler runs); a form with errors is answered
  422 naming the fields in Chinese, never repeating a submitted value, and nothing is stored
  (`gateway.web.forms`); the page's script (`static/casetrail.js`) shows those errors in
  place, so the draft stays in the page and nowhere else;
- URLs: no personal value is ever in a path or query (lookups by name or ID number are
  POSTed); a case is named by its opaque id;
- every page shows who is signed in and that reads are recorded (`templates/base.html`).

Proven by tests/web (a real server, headless Chromium via Playwright, axe-core).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway.web.errors import install_error_pages
from gateway.web.routes import PAGE_ROUTERS
from gateway.web.templating import STATIC_DIR, STATIC_URL


def install(app: FastAPI) -> None:
    """Mount the pages, their static assets and their error pages on the API's app."""
    app.mount(STATIC_URL, StaticFiles(directory=str(STATIC_DIR)), name="web-static")
    install_error_pages(app)
    for router in PAGE_ROUTERS:
        app.include_router(router, include_in_schema=False)
