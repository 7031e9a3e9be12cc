"""`make demo`'s people can sign in to the pages: `casetrail demo` (a real process, a temp home)
prints the pages' address and a user id and password for one person per role; each of them
signs in through the sign-in page's form (POST /signin, a session cookie, then their home page
naming them); a second run sets new passwords (random per run), so the first run's are refused;
and no password printed is in the demo's log output or in the store's bytes. In headless
Chromium, a printed person signs in at 360 px on the demo's store served by uvicorn.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser

from domain.credentials import check_password_strength
from domain.taxonomy import Role
from gateway.cli.demo import PAGES_URL
from gateway.http.app import create_app
from gateway.http.sessions import COOKIE
from gateway.settings import Settings
from tests.integration.test_cli import run
from tests.web.conftest import Served, free_port, inspect

# "  user demo-coordinator   password demo-...  (coordinator)"
_SIGN_IN_LINE = re.compile(r"^\s+user (\S+)\s+password (\S+)\s+\((\w+)\)$")


def printed_people(stdout: str) -> dict[str, tuple[str, Role]]:
    """user id -> (password, role), as `casetrail demo` printed them."""
    found: dict[str, tuple[str, Role]] = {}
    for line in stdout.splitlines():
        match = _SIGN_IN_LINE.match(line)
        if match:
            found[match[1]] = (match[2], Role(match[3]))
    return found


def demo_settings(home: Path) -> Settings:
    """The settings `casetrail demo` used for `home` (its embedded SQLite store)."""
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": f"sqlite:///{home}/casetrail.sqlite",
        }
    )


def demo_app(home: Path) -> TestClient:
    return TestClient(create_app(demo_settings(home)), raise_server_exceptions=False)


def sign_in_through_the_page(client: TestClient, user_id: str, password: str) -> int:
    """The sign-in form posted as a browser does; the status of its answer."""
    client.cookies.clear()
    answer = client.post(
        "/signin",
        data={"user_id": user_id, "password": password},
        follow_redirects=False,
    )
    status: int = answer.status_code
    return status


def test_every_printed_person_signs_in_through_the_page(tmp_path: Path) -> None:
    first = run(tmp_path, "demo", "--cases", "2")
    assert first.returncode == 0, first.stderr
    assert f"pages: {PAGES_URL}" in first.stdout
    people = printed_people(first.stdout)
    # One person per role the demo makes tokens for: the same people, the same roles.
    token_roles = {
        line.split()[0]
        for line in first.stdout.splitlines()
        if line.startswith("  ") and line.split()[0] in {r.value for r in Role}
    }
    assert len(token_roles) == 7
    assert {role.value for _, role in people.values()} == token_roles
    assert len(people) == len(token_roles)
    passwords = [password for password, _ in people.values()]
    assert len(set(passwords)) == len(passwords)  # random: no two alike
    for password in passwords:
        check_password_strength(password)
        assert password not in first.stderr  # the terminal's stdout only, never a log line

    with demo_app(tmp_path) as client:
        for user_id, (password, role) in people.items():
            assert sign_in_through_the_page(client, user_id, password) == 303, user_id
            assert client.cookies.get(COOKIE), user_id
            home = client.get("/", follow_redirects=False)
            assert home.status_code == 200, (user_id, role, home.text[:300])
            assert user_id in home.text
        # A wrong password is refused on the page, as for anyone.
        some_user = next(iter(people))
        assert sign_in_through_the_page(client, some_user, "demo-not-the-password") == 401

    # A second run sets new passwords: the first run's no longer sign in.
    second = run(tmp_path, "demo", "--cases", "1")
    assert second.returncode == 0, second.stderr
    again = printed_people(second.stdout)
    assert set(again) == set(people)
    with demo_app(tmp_path) as client:
        for user_id, (password, _) in again.items():
            assert password != people[user_id][0]
            assert sign_in_through_the_page(client, user_id, people[user_id][0]) == 401
            assert sign_in_through_the_page(client, user_id, password) == 303

    stored = (tmp_path / "casetrail.sqlite").read_bytes()
    for password in [*passwords, *(p for p, _ in again.values())]:
        assert password.encode() not in stored


@pytest.mark.browser
def test_a_printed_person_signs_in_in_a_browser(tmp_path: Path, browser: Browser) -> None:
    demo = run(tmp_path, "demo", "--cases", "1")
    assert demo.returncode == 0, demo.stderr
    people = printed_people(demo.stdout)
    user_id, (password, _) = next((u, p) for u, p in people.items() if p[1] == Role.COORDINATOR)
    with Served(demo_settings(tmp_path), free_port()) as served:
        context = browser.new_context(
            viewport={"width": 360, "height": 740},
            locale="zh-CN",
            base_url=f"http://127.0.0.1:{served.server.config.port}",
        )
        try:
            page = context.new_page()
            page.goto("/")
            assert page.url.endswith("/signin")
            page.fill("#user_id", user_id)
            page.fill("#password", password)
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert page.url.endswith("/") and not page.url.endswith("/signin")
            assert user_id in page.locator(".who").inner_text()
            assert password not in page.content()
            inspect(page, "demo-signed-in")
        finally:
            context.close()
