"""The home page's worklists (`GET /`, gateway/web/routes/home.py), at the HTML level on both
stores: each role's own worklists from the JSON worklists' calls, overdue items marked 逾期,
empty lists saying 暂无, no identity of any minor, items linking to their case pages; roles
without worklists get a guide. And every page of this area (home, reporting a clue, its
confirmation, the ledger) without a session is a 303 to /signin, with one `no-store`."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.access import Actor
from domain.clock import local_today
from domain.taxonomy import Role
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.domain.builders import VILLAGE, register_units, report_body, report_clue
from tests.web.conftest import Site, inspect

# A clue waits for its consultation this long (about a second) before it is overdue.
DEADLINE_HOURS = 0.0003


@pytest.fixture
def settings(home: Path, store_url: str) -> Settings:
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": store_url,
            "CASETRAIL_CONSULTATION_DEADLINE_HOURS": str(DEADLINE_HOURS),
        }
    )


def _catch_up(client: TestClient) -> None:
    client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]


def _report(client: TestClient, auth: TokenFactory) -> tuple[str, dict[str, Any]]:
    body = report_body()
    answer = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, VILLAGE))
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], body


# The same ids in every collection: `make test`'s workers must collect the same tests.
PAGES = (
    "/",
    "/clues/new",
    "/ledger",
    f"/clues/{uuid.uuid5(uuid.NAMESPACE_URL, 'casetrail-test-no-such-case')}/reported",
)


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_session_and_are_never_cached(
    client: TestClient, auth: TokenFactory, path: str
) -> None:
    anonymous = client.get(path, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/signin"

    signed_in = client.get(path, headers=auth(Role.REPORTER, VILLAGE), follow_redirects=False)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.headers["cache-control"] == "no-store"
    assert "text/html" in signed_in.headers["content-type"]


def test_coordinator_sees_the_street_worklists_overdue_marked_no_identity(
    client: TestClient, auth: TokenFactory
) -> None:
    case_id, body = _report(client, auth)
    time.sleep(DEADLINE_HOURS * 3600 + 0.5)
    _catch_up(client)

    page = client.get("/", headers=auth(Role.COORDINATOR, "governance-office"))
    assert page.status_code == 200, page.text
    html = page.text
    assert "待会商线索" in html and "交办任务" in html and "本季度待更新档案" in html
    assert f'href="/cases/{case_id}"' in html
    assert '<span class="badge overdue">逾期</span>' in html
    assert "暂无" in html  # no assignments yet
    # Operational fields only: nothing of who the minor or the guardians are.
    minor = body["minor"]
    for value in (minor["name"], minor["id_number"], minor["school"], body["guardians"][0]["name"]):
        assert value not in html
    assert minor["name"][0] + "*" not in html  # not even masked


def test_reporter_sees_its_own_files_and_others_do_not(
    client: TestClient, auth: TokenFactory
) -> None:
    case_id, _ = _report(client, auth)
    _catch_up(client)
    own = client.get("/", headers=auth(Role.REPORTER, VILLAGE)).text
    assert f"/cases/{case_id}" in own and "/clues/new" in own
    other = client.get("/", headers=auth(Role.REPORTER, "xihe-village")).text
    assert f"/cases/{case_id}" not in other
    assert "暂无" in other


def test_unit_member_inbox_and_roles_without_worklists(
    client: TestClient, auth: TokenFactory
) -> None:
    member = client.get("/", headers=auth(Role.UNIT_MEMBER, "police-station")).text
    assert "本单位待办任务" in member and "暂无" in member and 'href="/inbox"' in member

    admin = client.get("/", headers=auth(Role.ADMIN, "county-it"))
    assert admin.status_code == 200
    assert "用户管理" in admin.text and "暂无" not in admin.text
    investigator = client.get("/", headers=auth(Role.INVESTIGATOR, "county-inspection"))
    assert investigator.status_code == 200 and "倒查工作台" in investigator.text


# --- in a browser ---------------------------------------------------------------------------


@pytest.mark.browser
def test_home_pages_in_a_browser(site: Site) -> None:
    reporter = site.person(Role.REPORTER, VILLAGE)
    actor = Actor(reporter.user_id, Role.REPORTER, VILLAGE, reporter.street)
    case_id = site.application.report_clue(report_clue(), actor)

    coordinator = site.page(site.person(Role.COORDINATOR, "governance-office"))
    deadline = time.monotonic() + 30
    while coordinator.locator(f'a[href="/cases/{case_id}"]').count() == 0:
        # The worklists follow the store in the server's background.
        assert time.monotonic() < deadline, "the worklist did not catch up"
        time.sleep(0.3)
        coordinator.reload()
    assert "暂无" in coordinator.locator("main").inner_text()
    inspect(coordinator, "home-coordinator")

    page = site.page(reporter)
    assert page.locator('a[href="/clues/new"]').count() >= 1
    inspect(page, "home-reporter")

    member = site.page(site.person(Role.UNIT_MEMBER, "police-station"))
    assert member.locator('main a[href="/inbox"]').count() == 1
    inspect(member, "home-unit-member")

    admin = site.page(site.person(Role.ADMIN, "county-it"))
    assert "用户管理" in admin.locator("main").inner_text()
    inspect(admin, "home-admin")


def test_assignments_to_sign_for_on_both_sides(client: TestClient, auth: TokenFactory) -> None:
    police = "chengguan-police-station"
    register_units(client.app.state.services.application, police)  # type: ignore[attr-defined]
    case_id, _ = _report(client, auth)
    coordinator = auth(Role.COORDINATOR, "governance-office")
    base = f"/v1/cases/{case_id}"
    today = local_today()
    consult = {"held_on": today.isoformat(), "participants": [police], "decision": "派出所介入。"}
    assert client.post(f"{base}/consultations", json=consult, headers=coordinator).is_success
    task = "到校了解情况并约谈家长。"
    assigned = client.post(
        f"{base}/assignments",
        json={
            "unit": police,
            "function": "judicial",
            "task": task,
            "due_on": (today + timedelta(days=7)).isoformat(),
        },
        headers=coordinator,
    )
    assert assigned.status_code == 201, assigned.text
    _catch_up(client)

    street = client.get("/", headers=coordinator).text
    assert f'href="/cases/{case_id}"' in street and police in street
    assert '<span class="badge high">未签收</span>' in street
    assert task not in street

    member = client.get("/", headers=auth(Role.UNIT_MEMBER, police)).text
    assert "本单位待办任务 <span" in member and "（1）" in member
    assert '<span class="badge high">待签收</span>' in member
    assert 'href="/inbox"' in member and task not in member
