"""The coordinator holds the consultation and assigns two units (issue 18), in a real browser:
a reported case, the coordinator signed in at a desktop width, the purpose asked first (no case
content before it), the consultation held and two member units assigned through the pages;
the stored events say so (`ConsultationHeld`, two `UnitAssigned` with the units), and the
case read behind each page was recorded with channel `web`. The same pages at 360 px pass
`inspect` (no overflow, axe-core, CSP). The browser never keeps the case page: going back
re-reads it on the server (recorded again), nothing is served from the HTTP cache."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from playwright.sync_api import Page

from domain import commands as cmd
from domain.access import AccessDenied, Actor, CaseAccessed
from domain.clock import local_today
from domain.taxonomy import Role
from tests.domain.builders import STREET, register_units, report_body
from tests.web.conftest import Site, inspect

pytestmark = pytest.mark.browser

GOVERNANCE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
HEALTH = "chengguan-health-centre"
SCHOOL = "chengguan-school"
REPORTER = Actor("web-reporter", Role.REPORTER, "dongshan-village", STREET)


def reported_case(site: Site) -> tuple[UUID, dict[str, Any]]:
    register_units(site.application, POLICE, HEALTH, SCHOOL)
    body = report_body()
    body["minor"]["name"] = body["minor"]["name"] + "晓萱"
    return site.application.report_clue(cmd.ReportClue.model_validate(body), REPORTER), body


def web_reads(site: Site, case_id: UUID, user: str) -> list[CaseAccessed]:
    return [
        e
        for e in site.application.access_events(case_id)
        if isinstance(e, CaseAccessed) and e.actor["user"] == user and e.channel == "web"
    ]


def open_with_purpose(page: Page, case_id: UUID, purpose: str) -> None:
    page.goto(f"/cases/{case_id}")
    page.select_option("#purpose", purpose)
    with page.expect_navigation():
        page.get_by_role("button", name="查看案件").click()
    assert page.url.endswith(f"/cases/{case_id}?purpose={purpose}")


def test_the_coordinator_holds_the_consultation_and_assigns_two_units(site: Site) -> None:
    case_id, body = reported_case(site)
    name = body["minor"]["name"]
    coordinator = site.person(Role.COORDINATOR, GOVERNANCE)
    page = site.page(coordinator, width=1280, height=900)

    # The purpose first: nothing of the case before it, nothing read.
    page.goto(f"/cases/{case_id}")
    assert page.locator("select#purpose").count() == 1
    html = page.content()
    for value in (name, body["minor"]["id_number"], body["description"], "h-minor"):
        assert value not in html
    assert not web_reads(site, case_id, coordinator.user_id)
    inspect(page, "case-purpose-desktop")

    page.select_option("#purpose", "consultation")
    with page.expect_navigation():
        page.get_by_role("button", name="查看案件").click()
    assert page.url == f"{site.base}/cases/{case_id}?purpose=consultation"
    assert name in page.content() and "待会商" in page.content()
    reads = web_reads(site, case_id, coordinator.user_id)
    assert len(reads) == 1 and reads[0].purpose == "consultation"
    inspect(page, "case-coordinator-desktop")

    # The consultation.
    with page.expect_navigation():
        page.get_by_role("link", name="召开会商研判").click()
    assert page.url == f"{site.base}/cases/{case_id}/consultation?purpose=consultation"
    inspect(page, "case-consultation-desktop")
    today = local_today().isoformat()
    page.fill("#f-held_on", today)
    page.check(f"input[name=participants][value={POLICE}]")
    page.check(f"input[name=participants][value={HEALTH}]")
    page.fill("#f-decision", "会商认定需派出所与卫生院共同跟进。")
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert page.url == f"{site.base}/cases/{case_id}?purpose=consultation"
    assert "会商认定需派出所与卫生院共同跟进。" in page.content()
    assert "干预中" in page.content()

    # Two units assigned in one form.
    with page.expect_navigation():
        page.get_by_role("link", name="交办成员单位").click()
    inspect(page, "case-assignments-desktop")
    rows = page.locator("ul.case-units > li")
    assert rows.count() == 3
    page.check(f"input[name=unit][value={POLICE}]")
    page.check(f"input[name=unit][value={HEALTH}]")
    page.select_option(f"select[name='function.{HEALTH}']", "family")
    page.fill("#task", "入户核实家庭情况，一周内反馈。")
    due = (local_today() + timedelta(days=7)).isoformat()
    page.fill("#due_on", due)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert page.url == f"{site.base}/cases/{case_id}?purpose=consultation"
    table = page.locator("#h-assignments + .table-wrap").inner_text()
    assert POLICE in table and HEALTH in table and due in table
    inspect(page, "case-assigned-desktop")

    # The stored events: one consultation, two assignments with the units and functions.
    events = list(site.application.events.get(case_id))
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("ConsultationHeld") == 1
    held = next(e for e in events if type(e).__name__ == "ConsultationHeld")
    assert sorted(held.participants) == sorted([POLICE, HEALTH])  # type: ignore[attr-defined]
    assert held.by["user"] == coordinator.user_id  # type: ignore[attr-defined]
    assigned = [e for e in events if type(e).__name__ == "UnitAssigned"]
    assert {(e.unit, e.function) for e in assigned} == {  # type: ignore[attr-defined]
        (POLICE, "judicial"),
        (HEALTH, "family"),
    }
    assert all(e.due_on == due for e in assigned)  # type: ignore[attr-defined]
    # Every page of the case read it through the reader, channel web (the first, then once
    # after each form).
    reads = web_reads(site, case_id, coordinator.user_id)
    assert len(reads) == 3
    assert all(r.purpose == "consultation" and r.rule == "coordinator_same_street" for r in reads)


def test_the_case_pages_at_360px(site: Site) -> None:
    case_id, body = reported_case(site)
    coordinator = site.person(Role.COORDINATOR, GOVERNANCE)
    page = site.page(coordinator, width=360)
    page.goto(f"/cases/{case_id}")
    assert body["minor"]["name"] not in page.content()
    inspect(page, "case-purpose-360")
    open_with_purpose(page, case_id, "consultation")
    inspect(page, "case-coordinator-360")
    for slug in (
        "consultation",
        "assignments",
        "intervention",
        "follow-up",
        "letter",
        "escalation",
        "closure",
    ):
        page.goto(f"/cases/{case_id}/{slug}?purpose=consultation")
        inspect(page, f"case-form-{slug}-360")
    page.goto(f"/cases/{case_id}/break-glass")
    inspect(page, "case-break-glass-360")


def test_the_browser_keeps_no_case_page(site: Site) -> None:
    """Cache-Control no-store: back and forward read the case on the server again (each time
    recorded), and the DevTools protocol sees nothing served from the browser's cache."""
    case_id, body = reported_case(site)
    coordinator = site.person(Role.COORDINATOR, GOVERNANCE)
    page = site.page(coordinator, width=1024)
    from_cache: list[str] = []
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on("Network.requestServedFromCache", lambda e: from_cache.append(e["requestId"]))
    cdp.on(
        "Network.responseReceived",
        lambda e: (
            from_cache.append(e["response"]["url"])
            if e["response"].get("fromDiskCache") and "/cases/" in e["response"]["url"]
            else None
        ),
    )
    open_with_purpose(page, case_id, "consultation")
    answer = page.request.get(f"/cases/{case_id}?purpose=consultation")
    assert answer.headers["cache-control"] == "no-store"
    assert len(web_reads(site, case_id, coordinator.user_id)) == 2
    page.goto("/")
    page.go_back()
    assert page.url.endswith("?purpose=consultation")
    assert body["minor"]["name"] in page.content()
    assert len(web_reads(site, case_id, coordinator.user_id)) == 3
    page.go_forward()
    page.go_back()
    assert len(web_reads(site, case_id, coordinator.user_id)) == 4
    page.reload()
    assert len(web_reads(site, case_id, coordinator.user_id)) == 5
    case_urls = [u for u in from_cache if "/cases/" in u]
    assert not case_urls, f"served from the browser's cache: {case_urls}"


def test_a_refused_read_is_the_missing_case_page_and_is_recorded(site: Site) -> None:
    case_id, body = reported_case(site)
    outsider = site.person(Role.UNIT_MEMBER, SCHOOL)
    page = site.page(outsider, width=360)
    answer = page.goto(f"/cases/{case_id}?purpose=intervention")
    assert answer is not None and answer.status == 404
    assert "未找到，或您无权查看" in page.content()
    assert body["minor"]["name"] not in page.content()
    inspect(page, "case-refused-360")
    denied = [
        e
        for e in site.application.access_events(case_id)
        if isinstance(e, AccessDenied) and e.actor["user"] == outsider.user_id
    ]
    assert len(denied) == 1 and denied[0].channel == "web"
