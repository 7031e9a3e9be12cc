"""The pages under test: a real casetrail server (uvicorn on a loopback port, a fresh store),
people registered with passwords who sign in through the sign-in page, and Debian's headless
Chromium driven by Playwright with the system binary (never a downloaded browser).

`Site.page(person, width=360)` gives a signed-in page; `inspect(page, name)` is what every
page must pass: no horizontal overflow at its width, no serious or critical axe-core violation
(axe-core vendored in tests/web/vendor, run through the DevTools protocol, so the page's own
Content-Security-Policy stays enforced), no CSP violation in the console, and a screenshot kept
under `var/test-artifacts/web/` (`CASETRAIL_TEST_ARTIFACTS` moves it) for people to look at.
Browser tests fail, not skip, when CI=true and Chromium is missing (tests/reports/conftest.py).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import uvicorn
from faker import Faker
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from domain.application import CaseTrail
from domain.taxonomy import Role
from domain.users import Post, RegisterUser
from gateway import bootstrap, keyring
from gateway.cli.main import DEFAULT_STREET
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.reports.conftest import chromium_path

AXE: Final = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
ARTIFACTS: Final = Path(os.environ.get("CASETRAIL_TEST_ARTIFACTS", "var/test-artifacts")) / "web"
BY: Final = {"user": "test-fixture", "role": "operator", "unit": "", "street": ""}
# Each role's post (domain.users.Post) for the people the tests register.
_POSTS: Final = {
    Role.REPORTER: Post.CHILD_DIRECTOR,
    Role.COORDINATOR: Post.GOVERNANCE_OFFICER,
    Role.SUPERVISOR: Post.STREET_LEADER,
    Role.UNIT_MEMBER: Post.POLICE_OFFICER,
    Role.INVESTIGATOR: Post.INVESTIGATOR,
    Role.COMPLIANCE_AUDITOR: Post.COMPLIANCE_REVIEWER,
    Role.ADMIN: Post.SYSTEM_ADMINISTRATOR,
    Role.COUNTY_LEAD: Post.COUNTY_OFFICER,
}

OVERFLOW: Final = """() => {
  const doc = document.documentElement;
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.right > doc.clientWidth + 1;
    })
    .filter(e => !e.closest('.table-wrap'))
    .slice(0, 5).map(e => e.tagName + '.' + e.className);
  return {scroll: doc.scrollWidth, client: doc.clientWidth, wide: wide};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Person:
    user_id: str
    password: str
    role: Role
    unit: str
    street: str


@dataclass
class Site:
    """A running casetrail server and the people who may sign in to it."""

    base: str
    settings: Settings
    application: CaseTrail
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)

    def person(
        self, role: Role, unit: str, *, street: str = DEFAULT_STREET, user_id: str = ""
    ) -> Person:
        """A user registered with that role, unit and street, and a password."""
        user = user_id or f"u-{role.value.replace('_', '-')}-{secrets.token_hex(3)}"
        self.application.register_user(
            RegisterUser(
                user_id=user,
                display_name=str(Faker("zh_CN").name()),
                unit=unit,
                street=street,
                role=role,
                post=_POSTS[role],
                reason="test: a person who uses the pages",
            ),
            BY,
        )
        password = f"Web-{secrets.token_hex(8)}-密码"
        self.application.set_password(user, password, BY, "test: first password")
        return Person(user, password, role, unit, street)

    def page(self, person: Person | None = None, *, width: int = 360, height: int = 740) -> Page:
        """A new browser page at that viewport, signed in as `person` through the form."""
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, locale="zh-CN", base_url=self.base
        )
        self.contexts.append(context)
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda m: _csp_violation(m, violations))
        page.csp_violations = violations  # type: ignore[attr-defined]
        if person is not None:
            page.goto("/signin")
            page.fill("#user_id", person.user_id)
            page.fill("#password", person.password)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/$"))
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def _csp_violation(message: ConsoleMessage, found: list[str]) -> None:
    if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
        found.append(message.text[:200])


def inspect(page: Page, name: str, *, overflow: bool = True) -> dict[str, Any]:
    """Check the page as every page must be (see the module's docstring); its screenshot
    kept. Returns axe's result for the test to look at further."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if overflow:
        found = page.evaluate(OVERFLOW)
        assert found["scroll"] <= found["client"], f"{name}: overflows horizontally: {found}"
    page.evaluate(AXE)
    result: dict[str, Any] = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    serious = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    assert not serious, f"{name}: accessibility violations: {serious}"
    violations = getattr(page, "csp_violations", [])
    assert not violations, f"{name}: Content-Security-Policy violations: {violations}"
    return result


class Served:
    """casetrail's app under uvicorn in a thread, on a loopback port."""

    def __init__(self, settings: Settings, port: int) -> None:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            assert self.thread.is_alive(), "the server stopped at start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


# One browser per test module, not per session: Playwright's sync API keeps an asyncio loop
# running in this thread while it is open, so any later test in the same process that calls
# asyncio.run() fails. Under `make test`'s workers (pytest-xdist, longest files first) other
# files run after these in the same process.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = chromium_path()
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            yield found
        finally:
            found.close()


def site_settings(home: Path, **extra: str) -> Settings:
    """A fresh SQLite store; messaging off (the pages need none); the relay's work is not
    needed for the pages' reads."""
    keyring.init_keys(home / "keys")
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": f"sqlite:///{home / 'casetrail.sqlite'}",
            **extra,
        }
    )


@pytest.fixture
def site(tmp_path: Path, browser: Browser) -> Iterator[Site]:
    settings = site_settings(tmp_path / "home")
    with Served(settings, free_port()) as served:
        application = bootstrap.open_application(settings)
        found = Site(
            f"http://127.0.0.1:{served.server.config.port}", settings, application, browser
        )
        try:
            yield found
        finally:
            found.close()
            application.close()
