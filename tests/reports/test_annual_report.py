"""`GET /v1/compliance/annual-report?year=Y` (未成年人网络保护条例 第三十七条) over the real ASGI
app, on SQLite and PostgreSQL: the counts of a scenario, every section, nothing of the cases'
content, signed with the service key, its production recorded; and, in headless Chromium
(marked `browser`), the page renders with every section, nothing overflows its box at a desktop
and a phone width, nothing is fetched, and the printed PDF's text has every section."""

from __future__ import annotations

import io
import json
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from domain.access import NO_CASE, Actor, CaseAccessed
from domain.clock import local_today
from domain.compliance.findings import Finding, Outcome
from domain.taxonomy import Role
from gateway import keyring
from gateway.compliance.annual import SECTIONS, annual_html
from gateway.evidence.maintainer import Evidence
from gateway.reports.html import CHINA
from gateway.reports.pdf import html_to_pdf
from gateway.reports.signing import verify_report
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.compliance_world import OFFICE, SQLITE_ONLY, World, make_world
from tests.reports.conftest import chromium_path
from tests.reports.test_browser import OVERFLOWING


@pytest.fixture
def world(client: TestClient, settings: Settings, auth: TokenFactory) -> World:
    return make_world(client, settings, auth)


HEADINGS = [title for _, title in SECTIONS]
YEAR = datetime.now(CHINA).year  # the year as the report counts it (Beijing time)


def _scenario(world: World) -> None:
    client = world.client
    first, second = world.files
    coordinator = world.headers(Role.COORDINATOR, OFFICE, purpose="consultation")
    for case_id in (first, second, first):
        assert client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code == 200
    outsider = world.headers(Role.UNIT_MEMBER, "far-unit", purpose="intervention")
    assert client.get(f"/v1/cases/{first}", headers=outsider).status_code == 404
    glass = client.post(
        f"/v1/cases/{second}/break-glass",
        json={"reason": "孩子今晚失联，需立即联系监护人核实情况"},
        headers=world.headers(Role.UNIT_MEMBER, "far-unit"),
    )
    assert glass.status_code == 200, glass.text
    export = client.get("/v1/ledger/export?format=json&identity=true", headers=coordinator)
    assert export.status_code == 200
    assert client.get("/v1/cases", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    # Two findings of the year (the rules' evaluator is not part of this test): one reviewed as
    # a violation with a follow-up, one open.
    now = datetime.now(UTC)
    found = [
        Finding(
            rule=rule,
            evidence=evidence,
            person="user-x",
            role="unit_member",
            unit="far-unit",
            street="chengguan-street",
            case_ids=[first],
            window_start=(now - timedelta(minutes=5)).isoformat(),
            window_end=now.isoformat(),
            detail={"count": len(evidence)},
        )
        for rule, evidence in (("repeated_refusals", [1, 2, 3]), ("bulk_browsing", [4, 5]))
    ]
    application = world.application
    application.record_findings(found)
    auditor = Actor("auditor-1", Role.COMPLIANCE_AUDITOR, "county-audit", "chengguan-street")
    application.review_finding(found[0].id, Outcome.VIOLATION, "无正当理由多次尝试", auditor)
    application.open_finding_follow_up(found[0].id, "coord-1", local_today(), auditor)
    evidence: Evidence = client.app.state.evidence  # type: ignore[attr-defined]
    evidence.catch_up()
    evidence.checkpoint_now()


def _annual(world: World, form: str, year: int = YEAR) -> bytes:
    response = world.client.get(
        "/v1/compliance/annual-report",
        params={"year": year, "format": form},
        headers=world.auditor(),
    )
    assert response.status_code == 200, response.text
    public = keyring.load_public_key(world.settings.keys_dir / keyring.SERVICE_PUB, "service key")
    assert verify_report(response.content, public).intact
    data: bytes = response.content
    return data


def _document(world: World, year: int = YEAR) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(_annual(world, "json", year))["report"]
    return report


def test_the_annual_report_counts_the_year(world: World) -> None:
    _scenario(world)
    before = len(world.accesses())
    doc = _document(world)
    assert doc["year"] == YEAR
    assert doc["collection"]["files_new"] == 3 == doc["collection"]["files_held"]
    assert {c["label"] for c in doc["collection"]["data_categories"]} >= {
        "身份信息",
        "敏感个人信息",
    }
    assert sum(c["count"] for c in doc["collection"]["by_category"]) >= 3
    units = {(a["role"], a["unit"]): a for a in doc["accesses"]["by_role_and_unit"]}
    coordinator = units[("coordinator", OFFICE)]
    assert coordinator["reads"] == 3 + 3 and coordinator["files"] == 3  # reads and the export
    assert units[("unit_member", "far-unit")]["refused"] == 1
    assert doc["disclosures"]["identity_exports"] == 3
    channels = {c["code"]: c["count"] for c in doc["disclosures"]["by_channel"]}
    assert channels == {"api": 4, "export": 3}
    assert doc["refusals"]["reads"] == 1
    assert doc["refusals"]["authentications"]["total"] >= 1
    assert doc["break_glass"] == {
        "uses": 1,
        "reviewed": 0,
        "pending": 1,
        "by_outcome": [{"code": "pending", "label": "待复核", "count": 1}],
    }
    findings = doc["findings"]
    assert findings["available"] and findings["total"] == 2
    assert {r["code"] for r in findings["by_rule"]} == {"repeated_refusals", "bulk_browsing"}
    assert {r["code"]: r["count"] for r in findings["by_status"]} == {"violation": 1, "open": 1}
    assert (findings["follow_ups"], findings["follow_ups_completed"]) == (1, 0)
    verification = doc["keys"]["verification"]
    assert verification["intact"] and verification["checkpoints_matched"] >= 1
    assert doc["keys"]["checkpoints_signed"] >= 1
    text = json.dumps(doc, ensure_ascii=False)
    for value in world.planted_values():
        assert value not in text
    for case_id in [*world.files, world.other_file]:
        assert case_id not in text  # counts, not files
    # Producing it is recorded, as a read naming no case, before the answer.
    new = world.accesses()[before:]
    assert len(new) == 1 and isinstance(new[0], CaseAccessed)
    assert (new[0].case_id, new[0].rule) == (NO_CASE, "annual_report:compliance_review")

    # Another year has none of it.
    empty = _document(world, YEAR - 1)
    assert empty["collection"]["files_new"] == 0 and empty["accesses"]["reads"] == 0


@SQLITE_ONLY
def test_the_html_report_is_self_contained_with_every_section(world: World) -> None:
    _scenario(world)
    html = _annual(world, "html").decode()
    for heading in HEADINGS:
        assert f">{heading}</h2>" in html
    assert 'http-equiv="Content-Security-Policy" content="default-src' in html
    assert "http://" not in html.split("<!-- casetrail-report-signature")[0]
    assert "https://" not in html.split("<!-- casetrail-report-signature")[0]
    for value in world.planted_values():
        assert value not in html


# CJK fonts map some glyphs to compatibility or radical forms (⼀ for 一, ⻆ for 角): NFKC
# undoes the first, this table the radicals the headings use.
_RADICALS = str.maketrans({"\u2ec6": "角"})


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_RADICALS)


def _open(browser: Browser, path: Path, width: int) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(path.as_uri())
    return page, requested


@SQLITE_ONLY
@pytest.mark.browser
def test_the_annual_report_renders_in_chromium(world: World, tmp_path: Path) -> None:
    binary = chromium_path()
    _scenario(world)
    html = _annual(world, "html").decode()
    page_file = tmp_path / "annual.html"
    page_file.write_text(html, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            for width in (1024, 480):
                page, requested = _open(browser, page_file, width)
                shot = page.screenshot(full_page=True)
                assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 30_000
                headings = page.eval_on_selector_all(
                    "h2", "els => els.map(e => e.textContent.trim())"
                )
                assert headings == HEADINGS
                assert page.evaluate(OVERFLOWING) == []
                assert requested == [page_file.as_uri()]
                page.close()
        finally:
            browser.close()
    document = _document(world)
    data = html_to_pdf(annual_html(document), binary)
    text = _plain("\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages))
    for heading in HEADINGS:
        assert _plain(heading) in text, heading
    assert "合规审计报告" in text
