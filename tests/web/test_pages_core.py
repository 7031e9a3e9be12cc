"""The pages' frame, in a real browser: sign-in at 360 px, the notice of who is signed in and
that reads are recorded, no-store and the strict CSP on every page, a wrong password refused
in Chinese with nothing submitted repeated, sign-out ending the session, and a page without a
session sent to sign-in."""

from __future__ import annotations

import pytest

from domain.taxonomy import Role
from tests.web.conftest import Site, inspect

pytestmark = pytest.mark.browser


def test_sign_in_frame_and_sign_out(site: Site) -> None:
    person = site.person(Role.REPORTER, "village-1")
    page = site.page()
    answer = page.goto("/")
    assert answer is not None and page.url.endswith("/signin")
    inspect(page, "signin")

    page.fill("#user_id", person.user_id)
    page.fill("#password", "Wrong-" + person.password)
    page.click("button[type=submit]")
    alert = page.locator("#signin-error")
    assert "不正确" in alert.inner_text()
    assert person.password not in page.content()

    page.fill("#user_id", person.user_id)
    page.fill("#password", person.password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == site.base + "/"
    who = page.locator(".who").inner_text()
    assert person.user_id in who and "记录" in who
    home = page.request.get(site.base + "/")
    assert home.headers["cache-control"] == "no-store"
    csp = home.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    inspect(page, "home")

    page.click("text=退出登录")
    page.wait_for_url("**/signin")
    assert page.goto("/") is not None and page.url.endswith("/signin")
