"""The compliance pages (gateway/web/routes/compliance.py).

In a real browser (360 px): a finding raised by the rules' evaluator over real refused reads;
a compliance auditor lists it, opens it, reviews it as a violation, opens and completes its
follow-up, each stored as the finding's events (checked through the application); the list's
read recorded with channel `web` before the page; the disclosures, annual and break-glass pages
pass `inspect`.

Over HTTP without a browser (SQLite and PostgreSQL): anyone but an auditor is refused, the
refusal recorded; a bad filter or ID number is a 422 that repeats nothing; the accounting of
disclosures for a minor is POSTed, shown as a table without the ID number, recorded with channel
`compliance` as a read of the file's access log, and downloadable as .xlsx; the annual report's
page and its signed file are recorded as the API records them; a review form with errors stores
nothing.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain.access import NO_CASE, AccessDenied, Actor, CaseAccessed, Channel
from domain.application import AccessRefused, CaseTrail
from domain.clock import local_today
from domain.compliance.findings import FindingStatus
from domain.taxonomy import Purpose, Role
from gateway.cli.main import DEFAULT_STREET
from gateway.compliance.evaluator import ComplianceEvaluator
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case
from tests.web.conftest import Site, inspect

OUTSIDER = "u-outsider-1"


def raise_finding(application: CaseTrail) -> UUID:
    """Five refused reads by one person within the hour (`repeated_refusals`, the default
    threshold), then the evaluator: one finding, stored as the rules store it."""
    outsider = Actor(user=OUTSIDER, role=Role.UNIT_MEMBER, unit="pcs-9", street=DEFAULT_STREET)
    for n in range(5):
        with pytest.raises(AccessRefused):
            application.read_case(uuid4(), outsider, Purpose.INTERVENTION, f"req-{n}")
    stored = ComplianceEvaluator(application).step(datetime.now(UTC) + timedelta(days=3))
    (finding,) = [f for f in stored if f.rule == "repeated_refusals"]
    return finding.id


def _web_reads(application: CaseTrail, since: int) -> list[CaseAccessed]:
    return [
        e
        for e in application.access_events(NO_CASE)[since:]
        if isinstance(e, CaseAccessed) and e.channel == Channel.WEB
    ]


@pytest.mark.browser
def test_a_compliance_auditor_reviews_a_finding(site: Site) -> None:
    finding_id = raise_finding(site.application)
    auditor = site.person(Role.COMPLIANCE_AUDITOR, "audit")
    page = site.page(auditor, width=360)

    before = len(site.application.access_events(NO_CASE))
    page.goto("/compliance")
    assert "同一人在时间窗内多次被拒绝" in page.locator("table.findings").inner_text()
    assert OUTSIDER in page.locator("table.findings").inner_text()
    (read,) = _web_reads(site.application, before)
    assert read.fields == ["compliance_findings"] and read.actor["user"] == auditor.user_id
    inspect(page, "compliance-findings-360")

    page.goto("/compliance?status=violation")
    assert "没有符合条件的发现" in page.content()
    page.goto("/compliance?status=open")
    page.click(f"a[href='/compliance/findings/{finding_id}']")
    page.wait_for_url(f"**/compliance/findings/{finding_id}")
    assert "待复核" in page.locator("main").inner_text()
    inspect(page, "compliance-finding-360")

    page.on("dialog", lambda dialog: dialog.accept())  # the review is final: it asks first
    page.check("#outcome-violation")
    page.fill("#reason", "短时间内多次查阅不属于本单位的档案，无工作需要。")
    with page.expect_navigation():
        page.click("button:has-text('提交复核')")
    finding = site.application.finding(finding_id)
    assert finding.status is FindingStatus.VIOLATION
    assert finding.review is not None and finding.review["reviewer"]["user"] == auditor.user_id
    assert "无工作需要" in finding.review["reason"]
    assert "违规" in page.locator("main").inner_text()
    assert page.locator("#reason").count() == 0  # reviewed once: no second review form

    due = (local_today() + timedelta(days=14)).isoformat()
    page.fill("#owner", "pcs-9")
    page.fill("#due_on", due)
    with page.expect_navigation():
        page.click("button:has-text('登记整改事项')")
    assert site.application.finding(finding_id).follow_up["owner"] == "pcs-9"  # type: ignore[index]
    page.fill("#completed_on", local_today().isoformat())
    page.fill("#note", "已约谈当事人并组织培训。")
    with page.expect_navigation():
        page.click("button:has-text('登记完成')")
    done = site.application.finding(finding_id).follow_up
    assert done is not None and done["completed"]["note"] == "已约谈当事人并组织培训。"
    stored = [type(e).__name__ for e in site.application.events.get(finding_id)]
    assert stored == ["FindingRaised", "FindingReviewed", "FollowUpOpened", "FollowUpCompleted"]
    inspect(page, "compliance-finding-done-360")


@pytest.mark.browser
def test_the_other_compliance_pages_in_a_browser(site: Site) -> None:
    auditor = site.person(Role.COMPLIANCE_AUDITOR, "audit")
    planted = planted_case()
    reporter = Actor("u-reporter-1", Role.REPORTER, "dongshan-village", DEFAULT_STREET)
    case_id = site.application.report_clue(cmd.ReportClue.model_validate(planted.body), reporter)
    coordinator = Actor("u-coordinator-1", Role.COORDINATOR, "office", DEFAULT_STREET)
    site.application.read_case(case_id, coordinator, Purpose.FOLLOW_UP, "req-read")
    page = site.page(auditor, width=360)
    page.goto("/compliance/disclosures")
    inspect(page, "compliance-disclosures-360")
    # The server's ledger follows the store: the file is found once it has followed.
    deadline = time.monotonic() + 20
    while True:
        page.fill("#id_number", planted.id_number)
        with page.expect_navigation():
            page.click("button:has-text('查询')")
        if str(case_id) in page.content() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    table = page.locator("table.disclosures").inner_text()
    assert "u-coordinator-1" in table and "跟踪回访" in table
    assert planted.id_number not in page.content() and planted.name not in page.content()
    inspect(page, "compliance-disclosures-table-360")
    page.fill("#id_number", "110101201001011234")  # checksum wrong: refused, not repeated
    page.click("button:has-text('查询')")
    page.wait_for_selector(".alert")
    assert "110101201001011234" not in page.content()
    inspect(page, "compliance-disclosures-error-360")
    page.goto("/compliance/annual")
    page.select_option("#year", str(datetime.now(UTC).year))
    with page.expect_navigation():
        page.click("button:has-text('查看报告')")
    assert "年度概况" in page.content()
    inspect(page, "compliance-annual-360")
    page.goto("/compliance/accesses?run=1")
    assert "u-coordinator-1" in page.locator("table.accesses").inner_text()
    inspect(page, "compliance-accesses-360")
    page.goto("/compliance/break-glass")
    assert "没有待复核" in page.content()
    inspect(page, "compliance-break-glass-360")
    outsider = Actor("u-outsider-2", Role.REPORTER, "xishan-village", DEFAULT_STREET)
    site.application.read_case(
        case_id,
        outsider,
        Purpose.EMERGENCY,
        "req-glass",
        break_glass_reason="孩子夜间离家未归，需立即联系监护人。",
    )
    page.goto("/compliance/break-glass")
    assert "u-outsider-2" in page.locator("main").inner_text()
    assert planted.name not in page.content()
    inspect(page, "compliance-break-glass-pending-360")
    page.check("input[value=justified]")
    page.fill("textarea[name=note]", "情况紧急，属实。")
    with page.expect_navigation():
        page.click("button:has-text('提交复核')")
    assert "没有待复核" in page.content()
    assert site.application.pending_break_glass_reviews() == []


# --- over HTTP, both stores ----------------------------------------------------------------------


def _application(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def test_anyone_else_is_refused_and_the_refusal_recorded(
    client: TestClient, auth: TokenFactory
) -> None:
    coordinator = auth(Role.COORDINATOR, "office")
    for path in ("/compliance", "/compliance/disclosures", "/compliance/annual"):
        answer = client.get(path, headers=coordinator)
        assert answer.status_code == 403, (path, answer.status_code)
        assert "无权" in answer.text and answer.headers["content-type"].startswith("text/html")
    refused = [
        e for e in _application(client).access_events(NO_CASE) if isinstance(e, AccessDenied)
    ]
    assert [e.rule.partition(":")[0] for e in refused] == [
        "compliance_findings_not_for_role",
        "purpose_not_allowed_for_role",
        "purpose_not_allowed_for_role",
    ]
    assert refused[0].channel == Channel.WEB


def test_bad_filters_and_a_bad_review_repeat_nothing_and_store_nothing(
    client: TestClient, auth: TokenFactory
) -> None:
    auditor = auth(Role.COMPLIANCE_AUDITOR, "audit")
    answer = client.get("/compliance", params={"unit": "沈某某", "since": "nope"}, headers=auditor)
    assert answer.status_code == 422
    assert "沈某某" not in answer.text and "nope" not in answer.text
    assert "单位代码" in answer.text and "起始日期" in answer.text

    finding_id = raise_finding(_application(client))
    path = f"/compliance/findings/{finding_id}/review"
    form = {"outcome": "maybe", "reason": "张三丰的理由"}
    refused = client.post(path, data=form, headers=auditor)
    assert refused.status_code == 422
    assert "张三丰" not in refused.text and "maybe" not in refused.text
    assert "复核结论" in refused.text
    assert _application(client).finding(finding_id).review is None

    done = client.post(
        path,
        data={"outcome": "justified", "reason": "核实有工作需要。"},
        headers=auditor,
        follow_redirects=False,
    )
    assert (
        done.status_code == 303 and done.headers["location"] == f"/compliance/findings/{finding_id}"
    )
    # Anyone else: the application refuses, the refusal stored with the page's channel.
    coordinator = auth(Role.COORDINATOR, "office")
    other = client.post(
        path, data={"outcome": "violation", "reason": "越权。"}, headers=coordinator
    )
    assert other.status_code == 403 and "无权" in other.text
    (refused,) = _application(client).command_refusals()
    assert (refused.command, refused.channel) == ("review_finding", Channel.WEB)
    again = client.post(
        path, data={"outcome": "violation", "reason": "再次复核。"}, headers=auditor
    )
    assert again.status_code == 409 and "已复核" in again.text
    assert _application(client).finding(finding_id).status is FindingStatus.JUSTIFIED


def test_the_accounting_of_disclosures_is_posted_shown_and_recorded(
    client: TestClient, auth: TokenFactory
) -> None:
    planted = planted_case()
    reporter = auth(Role.REPORTER, "dongshan-village")
    created = client.post("/v1/cases", json=planted.body, headers=reporter)
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    coordinator = auth(Role.COORDINATOR, "office", purpose="follow_up")
    assert client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code == 200

    readmodels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()  # the files are found through the ledger, which follows the store
    auditor = auth(Role.COMPLIANCE_AUDITOR, "audit")
    assert client.get("/compliance/disclosures", headers=auditor).status_code == 200
    bad = client.post("/compliance/disclosures", data={"id_number": "1234567"}, headers=auditor)
    assert bad.status_code == 422 and "1234567" not in bad.text

    application = _application(client)
    before = len(application.access_events(UUID(case_id)))
    answer = client.post(
        "/compliance/disclosures", data={"id_number": planted.id_number}, headers=auditor
    )
    assert answer.status_code == 200, answer.text
    assert planted.id_number not in answer.text and planted.name not in answer.text
    assert case_id in answer.text and "table" in answer.text
    assert re.search(r'<span class="n">1</span> 份档案', answer.text)
    recorded = application.access_events(UUID(case_id))[before:]
    assert [(e.channel, e.fields) for e in recorded] == [  # type: ignore[union-attr]
        (Channel.COMPLIANCE, ["access_log"])
    ]

    sheet = client.post(
        "/compliance/disclosures",
        data={"id_number": planted.id_number, "format": "xlsx"},
        headers=auditor,
    )
    assert sheet.status_code == 200
    assert sheet.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml"
    )
    assert sheet.content[:2] == b"PK"
    assert application.access_events(UUID(case_id))[-1].channel == Channel.COMPLIANCE


def test_the_annual_report_page_and_its_signed_file(client: TestClient, auth: TokenFactory) -> None:
    auditor = auth(Role.COMPLIANCE_AUDITOR, "audit")
    application = _application(client)
    year = datetime.now(UTC).year
    assert "年度概况" not in client.get("/compliance/annual", headers=auditor).text
    before = len(application.access_events(NO_CASE))
    answer = client.get("/compliance/annual", params={"year": str(year)}, headers=auditor)
    assert answer.status_code == 200 and "年度概况" in answer.text
    recorded = application.access_events(NO_CASE)[before:]
    assert [(e.channel, e.rule) for e in recorded] == [
        (Channel.COMPLIANCE, "annual_report:compliance_review")
    ]
    late = client.get("/compliance/annual", params={"year": str(year + 1)}, headers=auditor)
    assert late.status_code == 422 and "不能晚于今年" in late.text

    signed = client.get(
        "/compliance/annual/download", params={"year": str(year), "format": "json"}, headers=auditor
    )
    assert signed.status_code == 200
    assert json.loads(signed.content)["report"]["year"] == year
    assert "attachment" in signed.headers["content-disposition"]
    odd = client.get(
        "/compliance/annual/download", params={"year": "x", "format": "doc"}, headers=auditor
    )
    assert odd.status_code == 422 and "年度" in odd.text and "文件格式" in odd.text
    # Anyone else: refused and recorded whatever year was asked for.
    coordinator = auth(Role.COORDINATOR, "office")
    refused = client.get("/compliance/annual/download", params={"year": "x"}, headers=coordinator)
    assert refused.status_code == 403
    last = application.access_events(NO_CASE)[-1]
    assert isinstance(last, AccessDenied) and last.channel == Channel.COMPLIANCE


def test_a_break_glass_access_is_reviewed_on_its_page(
    client: TestClient, auth: TokenFactory
) -> None:
    planted = planted_case()
    reporter = auth(Role.REPORTER, "dongshan-village")
    created = client.post("/v1/cases", json=planted.body, headers=reporter)
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    outsider = auth(Role.REPORTER, "xishan-village")
    opened = client.post(
        f"/v1/cases/{case_id}/break-glass",
        json={"reason": "孩子夜间离家未归，需立即联系监护人。"},
        headers=outsider,
    )
    assert opened.status_code == 200, opened.text
    application = _application(client)
    (pending,) = application.pending_break_glass_reviews()

    auditor = auth(Role.COMPLIANCE_AUDITOR, "audit")
    page = client.get("/compliance/break-glass", headers=auditor)
    assert page.status_code == 200 and case_id in page.text
    assert planted.name not in page.text and planted.id_number not in page.text
    path = f"/compliance/break-glass/{pending.originator_id}/review"
    bad = client.post(path, data={"outcome": "maybe", "note": "王某某的意见"}, headers=auditor)
    assert bad.status_code == 422 and "王某某" not in bad.text and "maybe" not in bad.text
    assert len(application.pending_break_glass_reviews()) == 1
    done = client.post(
        path,
        data={"outcome": "justified", "note": "情况紧急，属实。"},
        headers=auditor,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/compliance/break-glass"
    assert application.pending_break_glass_reviews() == []
    again = client.post(path, data={"outcome": "justified", "note": "再次。"}, headers=auditor)
    assert again.status_code == 409 and "已复核" in again.text
    coordinator = auth(Role.COORDINATOR, "office")
    assert client.get("/compliance/break-glass", headers=coordinator).status_code == 403


def test_the_access_report_page_and_its_downloads(client: TestClient, auth: TokenFactory) -> None:
    application = _application(client)
    finding_id = raise_finding(application)  # five refused reads by the outsider
    refused_on = [UUID(c) for c in application.finding(finding_id).case_ids]
    auditor = auth(Role.COMPLIANCE_AUDITOR, "audit")
    form = client.get("/compliance/accesses", headers=auditor)
    assert form.status_code == 200 and "生成报表" in form.text and "<table" not in form.text

    bad = client.get(
        "/compliance/accesses", params={"case_id": "李某某", "kind": "x"}, headers=auditor
    )
    assert bad.status_code == 422 and "李某某" not in bad.text
    assert "档案编号" in bad.text and "类型" in bad.text

    page = client.get(
        "/compliance/accesses", params={"run": "1", "kind": "refused_read"}, headers=auditor
    )
    assert page.status_code == 200
    assert page.text.count(f'<td data-label="人员">{OUTSIDER}</td>') == 5
    # Each file whose access records were shown: a read of its access log, recorded first.
    for case_id in refused_on:
        last = application.access_events(case_id)[-1]
        assert isinstance(last, CaseAccessed) and last.fields == ["access_log"]
        assert (last.channel, last.rule) == (
            Channel.COMPLIANCE,
            "access_report:compliance_review",
        )
    sheet = client.get(
        "/compliance/accesses",
        params={"kind": "refused_read", "download": "xlsx"},
        headers=auditor,
    )
    assert sheet.status_code == 200 and sheet.content[:2] == b"PK"
    fhir = client.get(
        "/compliance/accesses",
        params={"kind": "refused_read", "download": "fhir"},
        headers=auditor,
    )
    assert fhir.status_code == 200 and "attachment" in fhir.headers["content-disposition"]
    bundle = json.loads(fhir.content)
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 5
    coordinator = auth(Role.COORDINATOR, "office")
    assert client.get("/compliance/accesses", headers=coordinator).status_code == 403
