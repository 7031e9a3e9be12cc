"""The investigator's workbench in a real browser, on a desktop and at 360 px: an investigator
opens the timeline and downloads the report. The reads are checked in the store: the
investigation's minor shown only after its disclosure was recorded with channel `web`; the
timeline, the knowledge matrix and the deadlines each recorded with channel `web` under the
investigation order; the download recorded with its own channel `report`, its bytes the signed
report the investigation now lists as issued. The chart is inline SVG without a `style`
attribute (the CSP forbids them: `inspect` finds any violation). Someone the investigation
does not name sees nothing of it, and the refusal is recorded."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from domain.access import NO_CASE, AccessDenied, CaseAccessed
from domain.application import ACCESS_TOPICS, CaseTrail
from domain.taxonomy import Role
from gateway import keyring
from gateway.reports.signing import verify_report
from tests.conftest import TokenFactory
from tests.reports.scenario import LEAD, investigated_case, order_for
from tests.web.conftest import Site, inspect

browser = pytest.mark.browser

COUNTY = "county-inspection"


def _accesses(application: CaseTrail, user: str, since: int) -> list[Any]:
    found = []
    for notification in application.notifications(start=since + 1, topics=ACCESS_TOPICS):
        event = application.mapper.to_domain_event(notification)
        if isinstance(event, CaseAccessed | AccessDenied) and event.actor["user"] == user:
            found.append(event)
    return found


def _narrow(page: Page, name: str) -> None:
    """The same page at phone width, checked as every page is."""
    page.set_viewport_size({"width": 360, "height": 740})
    inspect(page, name)
    page.set_viewport_size({"width": 1280, "height": 900})


@browser
def test_an_investigator_opens_the_timeline_and_downloads_the_report(site: Site) -> None:
    application = site.application
    investigator = site.person(Role.INVESTIGATOR, COUNTY)
    scenario = investigated_case(application, investigator.user_id)
    order_for(application, scenario.case_id, investigator.user_id)
    minor = application.investigation(scenario.investigation_id).minor
    before_any_read = datetime.now(UTC)
    page = site.page(investigator, width=1280, height=900)

    # The list: the investigation, no identity of the minor, nothing recorded.
    start = int(application.recorder.max_notification_id() or 0)
    page.goto("/investigations")
    link = page.locator(f"a[href='/investigations/{scenario.investigation_id}']")
    expect(link).to_be_visible()
    assert minor["name"] not in page.content() and minor["id_number"] not in page.content()
    expect(page.locator("main")).to_contain_text(str(scenario.case_id))  # the street's order
    assert _accesses(application, investigator.user_id, start) == []
    inspect(page, "workbench-list")
    _narrow(page, "workbench-list-360")

    # The investigation: the minor's identity shown after its disclosure, channel web.
    with page.expect_navigation():
        link.click()
    expect(page.locator("main")).to_contain_text(minor["name"])
    expect(page.locator("main")).to_contain_text("学校未签收交办任务")  # the finding
    (disclosed,) = _accesses(application, investigator.user_id, start)
    assert isinstance(disclosed, CaseAccessed) and str(disclosed.channel) == "web"
    assert disclosed.case_id == scenario.case_id
    assert set(disclosed.fields) == {"minor.name", "minor.id_number"}
    inspect(page, "workbench-investigation")
    _narrow(page, "workbench-investigation-360")

    # The case: the timeline chart, the knowledge matrix, the deadlines, each read recorded.
    at = int(application.recorder.max_notification_id() or 0)
    with page.expect_navigation():
        page.locator(f"a[href*='/cases/{scenario.case_id}']").first.click()
    assert re.search(r"purpose=investigation$", page.url)
    chart = page.locator("figure.chart svg")
    expect(chart).to_be_visible()
    assert chart.locator("circle").count() >= 1
    assert page.locator("[style]").count() == 0
    expect(page.locator("#h-knowledge")).to_be_visible()
    expect(page.locator("table.deadlines")).to_contain_text("会商")
    expect(page.locator("table.timeline")).to_contain_text("线索上报")
    expect(page.locator("#h-findings")).to_contain_text("调查认定（1）")
    expect(page.locator("main")).to_contain_text("学校未签收交办任务")
    assert minor["name"] not in page.content() and minor["id_number"] not in page.content()
    reads = _accesses(application, investigator.user_id, at)
    assert reads and all(isinstance(e, CaseAccessed) for e in reads)
    assert {(str(e.channel), e.rule, e.purpose, e.case_id) for e in reads} == {
        ("web", "investigation_order", "investigation", scenario.case_id)
    }
    # Timeline and knowledge: content fields and the access log each; deadlines: content.
    assert [tuple(e.fields) == ("access_log",) for e in reads] == [
        False, True, False, True, False,
    ]  # fmt: skip
    inspect(page, "workbench-case")
    _narrow(page, "workbench-case-360")

    # The report, from the timeline's page: its bytes are the signed report, recorded as
    # issued; its reads recorded with their own channel, `report`.
    at = int(application.recorder.max_notification_id() or 0)
    with page.expect_download() as waiting:
        page.locator("a[href$='/report?format=html']").click()
    download = waiting.value
    path = download.path()
    data = path.read_bytes()
    public = keyring.load_public_key(site.settings.keys_dir / keyring.SERVICE_PUB, "service key")
    check = verify_report(data, public)
    assert check.intact, check.problem
    assert str(scenario.case_id).encode() in data and "知情矩阵".encode() in data
    issued = application.investigation(scenario.investigation_id).reports
    assert [(r["format"], r["sha256"]) for r in issued] == [
        ("html", hashlib.sha256(data).hexdigest())
    ]
    reports = _accesses(application, investigator.user_id, at)
    assert len(reports) == 2 and {str(e.channel) for e in reports} == {"report"}
    assert {e.case_id for e in reports} == {scenario.case_id}

    # Looking back from an instant before any of the investigator's reads: they are not on
    # the timeline nor in the matrix; the look-back is itself recorded, channel web.
    case_page = f"/investigations/{scenario.investigation_id}/cases/{scenario.case_id}"
    at = int(application.recorder.max_notification_id() or 0)
    page.goto(f"{case_page}?purpose=investigation&as_of={quote(before_any_read.isoformat())}")
    expect(page.locator("[role=status]").last).to_contain_text("正在回看")
    assert investigator.user_id not in page.locator("table.matrix").inner_text()
    assert investigator.user_id not in page.locator("table.timeline").inner_text()
    looked = _accesses(application, investigator.user_id, at)
    assert len(looked) == 5 and {str(e.channel) for e in looked} == {"web"}
    inspect(page, "workbench-case-as-of")
    # An instant out of bounds: 422, nothing read or recorded, nothing typed repeated.
    at = int(application.recorder.max_notification_id() or 0)
    answer = page.goto(f"{case_page}?as_of=1899-01-01T08:00")
    assert answer is not None and answer.status == 422
    assert "1899" not in page.locator("main").inner_text()
    assert _accesses(application, investigator.user_id, at) == []


@browser
def test_someone_the_investigation_does_not_name_sees_nothing_and_it_is_recorded(
    site: Site,
) -> None:
    application = site.application
    named = site.person(Role.INVESTIGATOR, COUNTY)
    scenario = investigated_case(application, named.user_id)
    order_for(application, scenario.case_id, named.user_id)
    other = site.person(Role.INVESTIGATOR, "other-inspection")
    page = site.page(other, width=1280, height=900)
    page.goto("/investigations")
    assert str(scenario.investigation_id) not in page.content()
    inspect(page, "workbench-list-empty")

    start = int(application.recorder.max_notification_id() or 0)
    for path in (
        f"/investigations/{scenario.investigation_id}",
        f"/investigations/{scenario.investigation_id}/cases/{scenario.case_id}",
        f"/investigations/cases/{scenario.case_id}",
    ):
        answer = page.goto(path)
        assert answer is not None and answer.status == 404, path
        assert "未找到" in page.locator("h1").inner_text()
    refused = _accesses(application, other.user_id, start)
    assert len(refused) == 3 and all(isinstance(e, AccessDenied) for e in refused)
    assert {e.case_id for e in refused} == {NO_CASE, scenario.case_id}
    assert {str(e.channel) for e in refused} == {"web"}
    download = page.request.get(
        f"{site.base}/investigations/{scenario.investigation_id}/report?format=html"
    )
    assert download.status == 404
    assert application.investigation(scenario.investigation_id).reports == []
    assert UUID(str(scenario.case_id))


def test_a_county_lead_sees_what_they_opened_without_the_minor(
    client: TestClient, auth: TokenFactory
) -> None:
    """HTML-level, on both stores: the county lead who opened the investigation lists it and
    reads it without the minor's identity (nothing disclosed, nothing recorded), with no link
    to the investigators' workbench or the report; another county lead lists nothing."""
    application: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    scenario = investigated_case(application, "user-inv-html")
    minor = application.investigation(scenario.investigation_id).minor
    lead = auth(Role.COUNTY_LEAD, LEAD["unit"], user=LEAD["user"])
    start = int(application.recorder.max_notification_id() or 0)
    listed = client.get("/investigations", headers=lead)
    assert listed.status_code == 200, listed.text
    assert f'href="/investigations/{scenario.investigation_id}"' in listed.text
    page = client.get(f"/investigations/{scenario.investigation_id}", headers=lead)
    assert page.status_code == 200, page.text
    assert "学校未签收交办任务" in page.text and "建立交办任务签收督办机制" in page.text
    assert minor["name"] not in page.text and minor["id_number"] not in page.text
    assert "/report?format=" not in page.text and "/cases/" not in page.text
    assert _accesses(application, LEAD["user"], start) == []
    other = auth(Role.COUNTY_LEAD, LEAD["unit"], user="user-lead-2")
    assert str(scenario.investigation_id) not in client.get("/investigations", headers=other).text
