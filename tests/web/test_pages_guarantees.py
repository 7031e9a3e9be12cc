"""The guarantees every page keeps, checked over EVERY page route the app has (issue 18).

The routes are not listed here: they are read from the app (`app.routes` whose path is a page's,
`gateway.http.problems.is_page_path`), with path parameters filled with random ids, so a page
added later is checked without anyone remembering to. Over the real app on SQLite and
PostgreSQL (the `client` fixture), with a session from the sign-in page's own form:

- nobody signed in: every page route (bar the sign-in page) is a 303 to `/signin`, and with a
  cookie naming no live session the refusal is stored first (`AuthenticationRefused`,
  `session_invalid`, the route's template), as for the API;
- signed in, as each role: every answer is `Cache-Control: no-store` with the pages'
  Content-Security-Policy (`WEB_CSP`), `X-Frame-Options: DENY` and `nosniff`; never a 5xx (a
  page that needs query parameters may answer 4xx); no answer holds a `<script>` with a body,
  a `style=` attribute or an `on...=` handler;
- every POST page route without the session's CSRF token is refused 403 with a page in Chinese,
  and stores nothing but the refusal's record;
- the static assets are cacheable; pages never are.

In headless Chromium (`site`): going back to a page fetches it again from the server (no-store
honoured: a new request id), no page is served from the browser's HTTP cache (offline, a page
cannot be opened again), while `/static/` assets may come from that cache.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable, Iterator
from datetime import date
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx import Response
from playwright.sync_api import Error as PlaywrightError
from starlette.routing import BaseRoute

from domain.clock import local_today
from domain.credentials import Session
from domain.refusals import AuthenticationRefused, RefusalThrottle
from domain.taxonomy import Role
from gateway.http.problems import is_page_path
from gateway.http.sessions import COOKIE
from gateway.web.errors import SIGNIN_URL
from gateway.web.routes import PAGE_ROUTERS
from gateway.web.templating import STATIC_URL, WEB_CSP
from tests.integration.test_signin import application_of, planted_password, register
from tests.web.conftest import Site

# Each role's unit for the people these tests register.
_UNITS = {
    Role.REPORTER: "dongshan-village",
    Role.COORDINATOR: "chengguan-governance-office",
    Role.SUPERVISOR: "chengguan-governance-office",
    Role.UNIT_MEMBER: "chengguan-police-station",
    Role.INVESTIGATOR: "county-investigation-team",
    Role.COMPLIANCE_AUDITOR: "county-compliance-office",
    Role.ADMIN: "county-admin",
    Role.COUNTY_LEAD: "county-office",
}
# The pages anyone may open without signing in.
_OPEN_PAGES = {SIGNIN_URL}
# Signing in has no session yet, so no CSRF token: its cross-site guard is the API sign-in's
# own (a cross-site form post is refused, gateway/http/routes/signin.py).
_NO_CSRF_NEEDED = {("POST", SIGNIN_URL)}
# A redirect renders nothing: it carries the pages' CSP or the API's stricter one.
_API_CSP_PREFIX = "default-src 'none'; frame-ancestors 'none'"


# --- the routes ------------------------------------------------------------------------------


def _value_for(route: APIRoute, name: str) -> str:
    """A value for a path parameter: an integer or a date where the route says so, else a
    random uuid (case ids and the like: opaque ids, never personal data)."""
    for param in route.dependant.path_params:
        if param.name == name:
            annotation = param.field_info.annotation
            if annotation is int:
                return "1"
            if annotation is date:
                return local_today().isoformat()
    return str(uuid.uuid4())


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every APIRoute, including those of included routers (which this
    FastAPI keeps as routers: `original_router`, with their prefix in `include_context`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(inner.routes, prefix + str(getattr(context, "prefix", "")))


def page_routes(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, template, concrete path) of every page route on the app (HEAD left out)."""
    found: list[tuple[str, str, str]] = []
    templates: set[str] = set()
    for template, route in _walk(client.app.routes):  # type: ignore[attr-defined]
        if not is_page_path(template):
            continue
        templates.add(template)
        path = template
        for name in route.param_convertors:
            value = _value_for(route, name)
            path = re.sub(r"\{" + re.escape(name) + r"(:[^}]*)?\}", value, path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append((method, template, path))
    # The walk finds what the pages' install included (and whatever else is on the app).
    assert {t for router in PAGE_ROUTERS for t, _ in _walk(router.routes)} <= templates
    assert ("GET", "/", "/") in found and ("POST", SIGNIN_URL, SIGNIN_URL) in found
    return found


def call(client: TestClient, method: str, path: str, **extra: Any) -> Response:
    kwargs: dict[str, Any] = {"follow_redirects": False, **extra}
    if method in ("POST", "PUT", "PATCH", "DELETE") and "data" not in kwargs:
        kwargs["data"] = {"note": "测试"}  # a form without the CSRF field
    answer: Response = client.request(method, path, **kwargs)
    return answer


# --- what an answer must be ------------------------------------------------------------------


class _Inline(HTMLParser):
    """Finds what the pages' CSP forbids: inline script, style attributes, event handlers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.found.append(f"<{tag} {name}=...>")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"<script> with a body: {data.strip()[:60]!r}")


def inline_code(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    parser.close()
    # The parser's view, and a plain look too (a malformed tag the parser would skip).
    raw = re.findall(r"<[a-zA-Z][^>]*\s(?:style|on[a-z]+)\s*=", html)
    return parser.found + raw


def assert_page_headers(answer: Response, what: str) -> None:
    headers = answer.headers
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    assert headers.get("cache-control") == "no-store", what
    assert headers.get("x-frame-options") == "DENY", what
    assert headers.get("x-content-type-options") == "nosniff", what
    csp = headers.get("content-security-policy", "")
    html = headers.get("content-type", "").startswith("text/html")
    if answer.status_code >= 400:
        assert html, (what, headers)  # a problem on a page's path is a page (gateway.web.errors)
    if html or "svg" in headers.get("content-type", ""):
        assert not inline_code(answer.text), (what, inline_code(answer.text))
    if html:
        assert csp == WEB_CSP, (what, csp)
    else:
        # A redirect, a 204 for the page's script, a download or a chart: not an HTML page;
        # the pages' CSP or the API's stricter one.
        assert csp == WEB_CSP or csp.startswith(_API_CSP_PREFIX), (what, csp)


# --- people ----------------------------------------------------------------------------------


def sign_in(client: TestClient, role: Role) -> str:
    """A new user of `role` with a password, signed in through the sign-in page's form: the
    session cookie is on the client. Returns the user id."""
    user = f"u-{role.value.replace('_', '-')}-{secrets.token_hex(3)}"
    password = planted_password()
    register(application_of(client), user, role=role, unit=_UNITS[role], password=password)
    client.cookies.clear()
    answer = client.post(
        SIGNIN_URL, data={"user_id": user, "password": password}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text[:300]
    assert client.cookies.get(COOKIE)
    return user


def event_topics(client: TestClient, start: int) -> list[str]:
    return [n.topic for n in application_of(client).notifications(start=start)]


def last_position(client: TestClient) -> int:
    found: int = application_of(client).recorder.max_notification_id() or 0
    return found


@pytest.fixture
def every_refusal_stored(client: TestClient) -> Iterator[None]:
    """This test's refusals all come from one address: store each, not one per minute."""
    services = client.app.state.services  # type: ignore[attr-defined]
    services.refusals = RefusalThrottle(per_source_seconds=0.0, burst=1_000_000)
    yield


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.usefixtures("every_refusal_stored")
def test_nobody_signed_in_is_sent_to_sign_in_and_a_bad_cookie_is_recorded(
    client: TestClient,
) -> None:
    application = application_of(client)
    routes = [r for r in page_routes(client) if r[1] not in _OPEN_PAGES]
    assert routes
    for method, template, path in routes:
        client.cookies.clear()
        answer = call(client, method, path)
        assert answer.status_code == 303, (method, path, answer.status_code, answer.text[:200])
        assert answer.headers["location"] == SIGNIN_URL
        assert answer.headers["cache-control"] == "no-store"
        assert not answer.content

        # A cookie that names no live session: refused, and the refusal stored first.
        client.cookies.set(COOKIE, secrets.token_urlsafe(32))
        answer = call(client, method, path)
        assert answer.status_code == 303, (method, path, answer.status_code)
        assert answer.headers["location"] == SIGNIN_URL
        request_id = answer.headers["X-Request-ID"]
        found = [e for e in application.authentication_refusals() if e.request_id == request_id]
        assert len(found) == 1, (method, path)
        (event,) = found
        assert isinstance(event, AuthenticationRefused)
        assert (event.reason, event.method, event.route) == ("session_invalid", method, template)
    client.cookies.clear()
    # The sign-in page itself is open to anyone.
    assert client.get(SIGNIN_URL).status_code == 200


def test_every_page_answer_carries_the_headers_and_no_inline_code(client: TestClient) -> None:
    routes = page_routes(client)
    gets = [(template, path) for method, template, path in routes if method == "GET"]
    for role in Role:
        user = sign_in(client, role)
        for template, path in gets:
            answer = call(client, "GET", path)
            assert_page_headers(answer, f"{role} GET {template}")
            html = answer.headers.get("content-type", "").startswith("text/html")
            if answer.status_code == 200 and html and template not in _OPEN_PAGES:
                assert user in answer.text, (role, template)  # who is signed in, on every page
        # Query parameters a page does not expect change nothing of the guarantees.
        for template, path in gets:
            answer = call(client, "GET", path, params={"purpose": "intervention", "page": "x"})
            assert_page_headers(answer, f"{role} GET {template}?...")
    # Pages never cacheable; the static assets are (they hold no personal data).
    for asset in ("casetrail.css", "casetrail.js"):
        static = client.get(f"{STATIC_URL}/{asset}")
        assert static.status_code == 200
        assert "no-store" not in static.headers.get("cache-control", ""), asset
        assert static.headers.get("etag") or static.headers.get("last-modified"), asset
        assert static.headers.get("x-content-type-options") == "nosniff"


@pytest.mark.usefixtures("every_refusal_stored")
def test_every_post_page_without_the_csrf_token_is_refused_and_stores_nothing(
    client: TestClient,
) -> None:
    posts = [
        (template, path)
        for method, template, path in page_routes(client)
        if method == "POST" and (method, template) not in _NO_CSRF_NEEDED
    ]
    assert ("/signout", "/signout") in posts
    refused_topic = AuthenticationRefused.__module__ + ":" + AuthenticationRefused.__qualname__
    # Only the refusal itself, and the session's own use (stored when due), may be written.
    allowed = {refused_topic, f"{Session.__module__}:{Session.__qualname__}.SessionTouched"}
    for role in (Role.COORDINATOR, Role.REPORTER, Role.ADMIN):
        sign_in(client, role)
        for template, path in posts:
            before = last_position(client)
            for extra in ({}, {"headers": {"X-CSRF-Token": "not-the-token"}}):
                answer = call(client, "POST", path, **extra)
                what = f"{role} POST {template} {extra}"
                assert answer.status_code == 403, (what, answer.status_code, answer.text[:300])
                assert_page_headers(answer, what)
                assert "页面已过期" in answer.text and "请刷新页面" in answer.text, what
            written = event_topics(client, before + 1)
            assert refused_topic in written, (role, template, written)
            assert set(written) <= allowed, (role, template, written)
            # The session was not ended by a forged sign-out: it still opens the home page.
            assert client.get("/", follow_redirects=False).status_code == 200


# --- in a browser ------------------------------------------------------------------------------


@pytest.mark.browser
def test_the_browser_keeps_no_page_in_its_cache_but_may_keep_the_assets(site: Site) -> None:
    person = site.person(Role.COORDINATOR, _UNITS[Role.COORDINATOR])
    page = site.page(person)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    seen: list[dict[str, Any]] = []
    from_cache: set[str] = set()
    # Playwright wants a Python function here (a bound builtin has no place for its wrapper).
    cdp.on("Network.responseReceived", lambda event: seen.append(event))  # noqa: PLW0108
    cdp.on("Network.requestServedFromCache", lambda event: from_cache.add(event["requestId"]))

    def request_id() -> str:
        return page.locator(".rid").inner_text()

    first = page.goto("/")
    assert first is not None and first.headers["cache-control"] == "no-store"
    home_rid = request_id()
    # Another page (any: a path no route has is the error page, as a page), then back.
    page.goto(f"/no-such-page-{uuid.uuid4()}")
    other_rid = request_id()
    seen.clear()
    from_cache.clear()
    page.go_back()
    page.wait_for_load_state("load")
    assert page.url == site.base + "/"
    assert request_id() not in (home_rid, other_rid), "going back showed a stored copy"
    documents = [e for e in seen if e["type"] == "Document"]
    assert documents, "going back did not ask the server for the page"
    for event in documents:
        response = event["response"]
        assert not response.get("fromDiskCache"), response["url"]
        assert not response.get("fromPrefetchCache"), response["url"]
        assert not response.get("fromServiceWorker"), response["url"]
        assert event["requestId"] not in from_cache, response["url"]
        assert response["headers"].get("cache-control", response["headers"].get("Cache-Control"))
    # The assets: cacheable, and the browser may (and here does) take them from its cache.
    assets = [e for e in seen if e["response"]["url"].startswith(site.base + STATIC_URL)]
    assert assets, "the page's assets were not loaded"
    assert any(
        e["response"].get("fromDiskCache")
        or e["response"].get("fromMemoryCache")
        or e["requestId"] in from_cache
        or e["response"]["status"] == 304
        for e in assets
    ), [(e["response"]["url"], e["response"]["status"]) for e in assets]

    # Offline, a page seen a moment ago cannot be opened: the browser holds no copy of it.
    page.context.set_offline(True)
    try:
        with pytest.raises(PlaywrightError):
            page.goto("/")
    finally:
        page.context.set_offline(False)
