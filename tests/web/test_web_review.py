"""The review of the web front end (issue 18): each defect found, as a test that failed before
its fix, HTML-level on both stores (the `client` and `auth` fixtures) unless a browser is needed.

- a re-rendered form never repeats a submitted value, not even as a field's name in the error
  summary (the assignment form named a unit's function field after the unit typed);
- login CSRF: a sign-in a browser says comes from another site or a sibling subdomain
  (`Sec-Fetch-Site`, else `Origin`) is refused with no cookie set, on the page and on the API,
  and a `text/plain` body (what a cross-site form may post without a preflight) is not read as
  JSON;
- a person with a second factor and several roles can sign in through the page: the form asked
  the code, then the role, and kept the code's field when it asked the role; no role is
  chosen for the person (the first of every role was preselected: 线索报告人);
- (kept) signing out needs the session's form token: without it a 403 page and the session
  still live; with it the session ended and the cookie cleared;
- the sign-in page reads the API's refusals as problem+json only for that call: a failure of the
  page's request is still an HTML page (the flag no longer outlives the call);
- no open redirect: where a form goes once done (`see_other`: the 303's Location, the 204's
  X-Casetrail-Location) is only ever a path of this site, and the page's script follows a 204
  only to such a path: `//host` and `/\\host` start with `/` too (a browser test: the script
  given such an answer stays on this site);
- an error page names the fields at fault in Chinese (it showed `case_id`, `as_of`...);
- a page's 405 names the methods its path takes in `Allow` (it was empty: the app's routes
  hold each included router as one entry, not walked);
- a request refused by the app's limits (a body too large, too many headers) on a page's path
  is the pages' error page, not problem+json (the limits answered before the pages could);
- a session that ended while a form was being filled (or a stale form token) loses no draft:
  the form says so in its summary, the typed text stays, and once signed in again (another
  window) the same submission goes through, its token renewed for the same person (a browser
  test; the page was replaced by the sign-in page, the draft gone);
- a page not in a role's menu is refused if asked: the workbench for any role but the
  investigator's and the county lead's (it answered an empty workbench);
- every button is at least 44 px tall, the header's sign-out too (a text-like button, 22 px);
- the focus ring has 3:1 contrast with what it is drawn on (amber on white was 2.1:1), on the
  page and in the dark header (a browser test);
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pyotp
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from domain.clock import local_today
from domain.taxonomy import Role
from domain.users import ChangeRole
from gateway.http.limits import MAX_BODY_BYTES, MAX_HEADERS
from gateway.web.forms import LOCATION_HEADER, see_other
from gateway.web.routes import signin as signin_page
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.test_signin import BY, application_of, planted_password, register
from tests.web.conftest import Site, inspect
from tests.web.test_case_pages import (
    FORM,
    GOVERNANCE,
    HEALTH,
    POLICE,
    SCHOOL,
    Store,
    new_case,
    store,
)

__all__ = ["store"]  # the case pages' fixture, used here too

# A value no page holds: found in an answer, it was repeated from what was submitted.
PLANTED = "zqxjplanted-unit"


def test_the_assignment_form_does_not_name_a_field_after_a_unit_typed(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    before = store.events()
    answer = client.post(
        f"/cases/{store.case_id}/assignments",
        headers={**auth(Role.COORDINATOR, GOVERNANCE), **FORM},
        content=f"unit={PLANTED}&function=bogus&task=t&due_on=2030-01-01".encode(),
    )
    assert answer.status_code == 422
    assert PLANTED not in answer.text
    assert 'data-field="function"' in answer.text
    assert store.events() == before


# --- login CSRF ----------------------------------------------------------------------------


def _signer(client: TestClient, role: Role = Role.COORDINATOR) -> tuple[str, str]:
    password = planted_password()
    register(
        application_of(client), "u-review-signin", role=role, unit=GOVERNANCE, password=password
    )
    return "u-review-signin", password


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://[::1"},
    ],
)
def test_a_sign_in_from_another_site_is_refused_on_the_page(
    client: TestClient, headers: dict[str, str]
) -> None:
    user, password = _signer(client)
    form = f"user_id={user}&password={password}".encode()
    answer = client.post(
        "/signin", content=form, headers={**FORM, **headers}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    assert "请从本系统自己的登录页登录" in answer.text and password not in answer.text
    # The same form from this origin signs in.
    same = {"Sec-Fetch-Site": "same-origin"} if "Sec-Fetch-Site" in headers else {}
    same = same or {"Origin": "http://testserver"}
    done = client.post("/signin", content=form, headers={**FORM, **same}, follow_redirects=False)
    assert done.status_code == 303 and "set-cookie" in done.headers


def test_a_text_plain_body_is_not_read_as_json(client: TestClient) -> None:
    user, password = _signer(client)
    body = json.dumps({"user_id": user, "password": password}).encode()
    for path in ("/v1/sessions", "/signin"):
        answer = client.post(
            path, content=body, headers={"content-type": "text/plain"}, follow_redirects=False
        )
        assert answer.status_code == 415, (path, answer.status_code)
        assert "set-cookie" not in answer.headers and password not in answer.text
    # JSON that says it is JSON is the API's sign-in still.
    signed = client.post("/v1/sessions", json={"user_id": user, "password": password})
    assert signed.status_code == 201


def _fields(html: str) -> set[str]:
    return set(re.findall(r'<(?:input|select) id="([a-z_]+)"', html))


def test_a_person_with_a_second_factor_and_two_roles_signs_in_through_the_page(
    client: TestClient,
) -> None:
    user, password = _signer(client)
    application = application_of(client)
    application.grant_role(user, ChangeRole(role=Role.SUPERVISOR, reason="test: acting"), BY)
    secret = pyotp.random_base32()
    application.enrol_totp(user, secret, BY)
    totp, now = pyotp.TOTP(secret), datetime.now(UTC)

    def post(**fields: str) -> Any:
        body = "&".join(
            f"{k}={v}" for k, v in {"user_id": user, "password": password, **fields}.items()
        )
        return client.post("/signin", content=body.encode(), headers=FORM, follow_redirects=False)

    asked_code = post()
    assert asked_code.status_code == 401 and _fields(asked_code.text) >= {"totp"}
    asked_role = post(totp=totp.at(now), role="")
    assert asked_role.status_code == 422 and "请选择本次登录使用的角色" in asked_role.text
    # Both fields: the code (a new one: a code is good once) and the role.
    assert _fields(asked_role.text) >= {"totp", "role"}
    assert totp.at(now) not in asked_role.text
    options = re.findall(r'<option value="([a-z_]*)"', asked_role.text)
    assert options[0] == "" and 'id="role" name="role" required' in asked_role.text
    done = post(totp=totp.at(now + timedelta(seconds=30)), role="supervisor")
    assert done.status_code == 303 and "set-cookie" in done.headers


def test_a_failure_of_the_sign_in_page_is_a_page_not_problem_json(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = _signer(client)

    async def failing(*args: Any) -> Any:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(signin_page, "sign_in", failing)
    answer = client.post(
        "/signin", content=f"user_id={user}&password={password}".encode(), headers=FORM
    )
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store" and password not in answer.text


# --- no open redirect ------------------------------------------------------------------------

ELSEWHERE = ["//evil.example/stolen", "/\\evil.example/stolen", "https://evil.example/", "/\t/x"]


def _request(enhanced: bool) -> Request:
    headers = [(b"x-casetrail-form", b"1")] if enhanced else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.parametrize("enhanced", [False, True])
def test_a_form_goes_only_to_a_path_of_this_site(enhanced: bool) -> None:
    def target(url: str) -> str:
        answer = see_other(_request(enhanced), url)
        return answer.headers[LOCATION_HEADER if enhanced else "location"]

    for url in ELSEWHERE:
        assert target(url) == "/", url
    kept = "/cases/3fa85f64-5717-4562-b3fc-2c963f66afa6?purpose=consultation"
    assert target(kept) == kept


ENHANCED_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>t</title>
<script src="/static/casetrail.js" defer></script></head><body><main>
<form method="post" action="/review-submit" data-enhance><div data-form-errors></div>
<button type="submit">提交</button></form></main></body></html>"""


@pytest.mark.browser
@pytest.mark.parametrize("elsewhere", ELSEWHERE[:2])
def test_the_script_follows_a_204_only_to_a_path_of_this_site(site: Site, elsewhere: str) -> None:
    page = site.page()
    page.route(
        f"{site.base}/review-form",
        lambda r: r.fulfill(body=ENHANCED_PAGE, content_type="text/html"),
    )
    page.route(
        f"{site.base}/review-submit",
        lambda r: r.fulfill(status=204, headers={LOCATION_HEADER: elsewhere}),
    )
    page.route(
        "http://evil.example/**", lambda r: r.fulfill(body="elsewhere", content_type="text/html")
    )
    page.goto("/review-form")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: not url.endswith("/review-form"))
    page.wait_for_load_state()
    assert page.url.startswith(site.base + "/"), page.url


# --- error pages in Chinese ----------------------------------------------------------------


def test_an_error_page_names_the_fields_in_chinese(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = auth(Role.COORDINATOR, GOVERNANCE)
    for path, label in (
        ("/cases/not-a-case", "案件编号"),
        (f"/inbox/{store.case_id}/not-a-task/sign", "任务编号"),
        (f"/investigations/{store.case_id}/report?format=docx", "报告格式"),
    ):
        method = client.post if path.endswith("/sign") else client.get
        answer = method(path, headers={**headers, **FORM})
        assert answer.status_code == 422, path
        assert answer.headers["content-type"].startswith("text/html")
        fields = re.findall(r"<li>([^<]*)</li>", answer.text.split('class="errors"')[1])
        assert fields == [label], (path, fields)
        for code in ("case_id", "assignment_id", "format", "not-a-case", "docx"):
            assert code not in answer.text


# --- the focus ring's contrast ---------------------------------------------------------------

RING = """(selector) => {
  const el = document.querySelector(selector);
  el.focus();
  const style = getComputedStyle(el);
  let back = el.parentElement, colour = 'rgba(0, 0, 0, 0)';
  while (back && (colour === 'rgba(0, 0, 0, 0)' || colour === 'transparent')) {
    colour = getComputedStyle(back).backgroundColor;
    back = back.parentElement;
  }
  return {ring: style.outlineColor, width: style.outlineWidth, style: style.outlineStyle,
          back: colour};
}"""


def _luminance(css: str) -> float:
    red, green, blue = (int(v) / 255 for v in re.findall(r"[0-9.]+", css)[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def _contrast(one: str, other: str) -> float:
    low, high = sorted((_luminance(one), _luminance(other)))
    return (high + 0.05) / (low + 0.05)


@pytest.mark.browser
def test_the_focus_ring_stands_out_from_what_it_is_drawn_on(site: Site) -> None:
    page = site.page()
    page.goto("/signin")
    for selector in ("#user_id", "button[type=submit]", ".brand a"):
        found = page.evaluate(RING, selector)
        assert found["style"] != "none" and found["width"] != "0px", (selector, found)
        assert _contrast(found["ring"], found["back"]) >= 3, (selector, found)


# --- a page's 405 --------------------------------------------------------------------------


def test_a_page_405_names_the_methods_its_path_takes(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = auth(Role.COORDINATOR, GOVERNANCE)
    for method, path, allowed in (
        ("PUT", "/signin", "GET, POST"),
        ("DELETE", "/inbox", "GET"),
        ("PATCH", f"/cases/{store.case_id}/closure", "GET, POST"),
    ):
        answer = client.request(method, path, headers=headers)
        assert answer.status_code == 405, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "此页面不接受该操作" in answer.text
        assert answer.headers["allow"] == allowed, (path, answer.headers["allow"])


# --- the limits' refusals on a page's path ----------------------------------------------------


def test_a_page_refused_by_the_limits_is_a_page(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = auth(Role.COORDINATOR, GOVERNANCE)
    too_large = client.post(
        f"/cases/{store.case_id}/closure",
        content=b"note=" + b"x" * (MAX_BODY_BYTES + 1),
        headers={**headers, **FORM},
    )
    many = client.get("/signin", headers={f"x-h{n}": "v" for n in range(MAX_HEADERS + 1)})
    for answer, status, heading in ((too_large, 413, "提交的内容过大"), (many, 431, "请求头过大")):
        assert answer.status_code == status
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"
        assert heading in answer.text
    # The API's paths keep their problem+json.
    api = client.post("/v1/sessions", content=b"x" * (MAX_BODY_BYTES + 1))
    assert api.status_code == 413 and api.headers["content-type"] == "application/problem+json"


# --- buttons a finger can press --------------------------------------------------------------

BUTTONS = """() => Array.from(document.querySelectorAll('button, a.button'))
  .filter(b => b.getClientRects().length > 0)
  .map(b => [b.textContent.trim(), b.getBoundingClientRect().height])"""


@pytest.mark.browser
def test_every_button_is_44_px_tall_the_sign_out_too(site: Site) -> None:
    page = site.page(site.person(Role.COORDINATOR, GOVERNANCE))
    page.goto("/")
    found = page.evaluate(BUTTONS)
    assert any(label == "退出登录" for label, _ in found), found
    short = [(label, height) for label, height in found if height < 44]
    assert not short, short
    inspect(page, "review-home-buttons")


# --- a session ended while typing ------------------------------------------------------------

SEND = "form[data-enhance] button[type=submit]"


@pytest.mark.browser
def test_a_draft_outlives_an_ended_session_and_is_sent_once_signed_in_again(
    site: Site,
) -> None:
    register_units(site.application, POLICE, HEALTH, SCHOOL)
    case_id, _ = new_case(site.application)
    coordinator = site.person(Role.COORDINATOR, GOVERNANCE)
    page = site.page(coordinator)
    form_url = f"/cases/{case_id}/follow-up?purpose=follow_up"
    page.goto(form_url)
    draft = "入户回访：家长表示已安排接送，学生情绪稳定。"
    page.fill("#f-visited_on", local_today().isoformat())
    page.fill("#f-notes", draft)
    page.context.clear_cookies()  # the session is gone (expired, signed out elsewhere)
    page.click(SEND)
    summary = page.locator("[data-form-errors]")
    summary.get_by_text("登录已过期").wait_for()
    assert page.url.endswith(form_url)
    assert page.input_value("#f-notes") == draft
    assert "FollowUpRecorded" not in _event_names(site, case_id)
    # Signed in again in another window (the same browser), then the same form sent again.
    other = page.context.new_page()
    other.goto("/signin")
    other.fill("#user_id", coordinator.user_id)
    other.fill("#password", coordinator.password)
    other.click("button[type=submit]")
    other.wait_for_url(re.compile(r".*/$"))
    page.click(SEND)
    page.wait_for_url(re.compile(rf".*/cases/{case_id}\?purpose=follow_up$"))
    assert _event_names(site, case_id).count("FollowUpRecorded") == 1
    inspect(page, "review-draft-after-sign-in")


def _event_names(site: Site, case_id: UUID) -> list[str]:
    return [type(e).__name__ for e in site.application.events.get(case_id)]


# --- signing out needs the form token (kept) -------------------------------------------------


def test_signing_out_needs_the_form_token(client: TestClient) -> None:
    user, password = _signer(client)
    signed = client.post(
        "/signin", content=f"user_id={user}&password={password}".encode(), headers=FORM
    )
    assert signed.status_code == 200  # the home page, after the 303
    token = re.search(r'name="csrf_token" value="([^"]+)"', signed.text)
    assert token is not None
    for body in (b"", b"csrf_token=forged"):
        refused = client.post("/signout", content=body, headers=FORM, follow_redirects=False)
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
        assert client.get("/", follow_redirects=False).status_code == 200
    done = client.post(
        "/signout", content=f"csrf_token={token[1]}".encode(), headers=FORM, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/signin"
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin"


# --- a page not in the role's menu -------------------------------------------------------------


def test_the_workbench_is_refused_to_roles_without_it(
    client: TestClient, auth: TokenFactory
) -> None:
    for role, unit in (
        (Role.COORDINATOR, GOVERNANCE),
        (Role.UNIT_MEMBER, POLICE),
        (Role.REPORTER, "dongshan-village"),
        (Role.COMPLIANCE_AUDITOR, "county-compliance"),
    ):
        answer = client.get("/investigations", headers=auth(role, unit))
        assert answer.status_code == 403, role
        assert "无权进行此操作" in answer.text and "倒查工作台" not in answer.text
    for role in (Role.INVESTIGATOR, Role.COUNTY_LEAD):
        assert client.get("/investigations", headers=auth(role, GOVERNANCE)).status_code == 200
