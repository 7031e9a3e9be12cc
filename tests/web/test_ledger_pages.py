"""The ledger pages (gateway/web/routes/ledger.py): `GET /ledger`, `POST /ledger/search`,
`POST /ledger/export`.

- HTML level, both stores: rows with names and ID numbers masked, each linking to its case;
  filters as query parameters (codes and dates); rows showing identity fields recorded as
  `CaseAccessed` with channel `web`; a name or ID number in the URL refused (422) unread; the
  lookup POSTed, its value never in the answer; the export a file (formulas neutralised),
  recorded with channel `export`; roles without ledgers refused.
- In a browser (a coordinator at 360 px and on a wide screen): the filter form, masked names,
  the print button, the export downloaded and recorded.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from domain.access import Actor, CaseAccessed
from domain.application import CaseTrail
from domain.clock import local_today
from domain.identity import mask_id_number, mask_name
from domain.taxonomy import Role
from gateway.http.dependencies import Services
from gateway.web.routes import ledger as pages
from tests.conftest import TokenFactory
from tests.domain.builders import VILLAGE, report_body, report_clue, years_before
from tests.web.conftest import Site, inspect

FORM = "application/x-www-form-urlencoded"
COORDINATOR_UNIT = "governance-office"


def _services(client: TestClient) -> Services:
    found: Services = client.app.state.services  # type: ignore[attr-defined]
    return found


def _head(application: CaseTrail) -> int:
    return int(application.recorder.max_notification_id() or 0)


def _accesses_since(application: CaseTrail, head: int) -> list[CaseAccessed]:
    events = [
        application.mapper.to_domain_event(n)
        for n in application.recorder.select_notifications(start=head + 1, limit=500)
    ]
    return [e for e in events if isinstance(e, CaseAccessed)]


def _two_clues(client: TestClient, auth: TokenFactory) -> list[tuple[str, dict[str, Any]]]:
    """Two files of the reporter's village: one low risk (anxiety), one high (self-harm)."""
    found = []
    for issues, risk, age in (
        ([{"category": "mental_health", "subtype": "anxiety"}], "low", 10),
        ([{"category": "mental_health", "subtype": "self_harm"}], "high", 12),
    ):
        # Of different ages: different ID numbers.
        body = report_body(issues=issues, risk=risk, born=years_before(local_today(), age))
        answer = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, VILLAGE))
        assert answer.status_code == 201, answer.text
        found.append((answer.json()["id"], body))
    readmodels = _services(client).readmodels
    assert readmodels is not None
    readmodels.catch_up()
    return found


def _post(client: TestClient, path: str, headers: dict[str, str], fields: dict[str, str]) -> Any:
    return client.post(
        path,
        content=urlencode(fields),
        headers={**headers, "Content-Type": FORM},
        follow_redirects=False,
    )


def test_ledger_rows_masked_filtered_and_recorded(client: TestClient, auth: TokenFactory) -> None:
    (low_id, low), (high_id, high) = _two_clues(client, auth)
    application = _services(client).application
    headers = auth(Role.COORDINATOR, COORDINATOR_UNIT)
    head = _head(application)

    page = client.get("/ledger", headers=headers)

    assert page.status_code == 200, page.text
    html = page.text
    for case_id, body in ((low_id, low), (high_id, high)):
        assert f'href="/cases/{case_id}"' in html
        assert body["minor"]["name"] not in html and body["minor"]["id_number"] not in html
        assert mask_name(body["minor"]["name"]) in html
        assert mask_id_number(body["minor"]["id_number"]) in html
    assert "共 2 条" in html and "data-print" in html
    recorded = _accesses_since(application, head)
    assert {str(e.case_id) for e in recorded} == {low_id, high_id}
    assert {e.channel for e in recorded} == {"web"}
    assert {e.purpose for e in recorded} == {"consultation"}  # the coordinator's usual one

    only_high = client.get("/ledger?risk=high&purpose=intervention", headers=headers).text
    assert f"/cases/{high_id}" in only_high and f"/cases/{low_id}" not in only_high
    assert "共 1 条" in only_high
    assert 'value="high" selected' in only_high and 'value="intervention" selected' in only_high

    bad = client.get("/ledger?risk=extreme&found_from=2020-13-01", headers=headers)
    assert bad.status_code == 422
    assert "风险等级" in bad.text and "发现日期（起）" in bad.text and "extreme" not in bad.text
    swapped = client.get("/ledger?found_from=2026-02-01&found_to=2026-01-01", headers=headers)
    assert swapped.status_code == 422 and "发现日期（起）" in swapped.text


def test_personal_values_never_in_a_url_and_the_lookup_is_posted(
    client: TestClient, auth: TokenFactory
) -> None:
    (low_id, low), (high_id, _) = _two_clues(client, auth)
    application = _services(client).application
    headers = auth(Role.REPORTER, VILLAGE)
    name, id_number = low["minor"]["name"], low["minor"]["id_number"]
    head = _head(application)

    in_url = client.get("/ledger?" + urlencode({"name": name}), headers=headers)
    assert in_url.status_code == 422
    assert name not in in_url.text and "不能放在网址中" in in_url.text
    assert _accesses_since(application, head) == []  # nothing read

    found = _post(client, "/ledger/search", headers, {"id_number": id_number})
    assert found.status_code == 200, found.text
    assert f"/cases/{low_id}" in found.text and f"/cases/{high_id}" not in found.text
    assert id_number not in found.text and name not in found.text
    recorded = _accesses_since(application, head)
    assert [str(e.case_id) for e in recorded] == [low_id]
    assert recorded[0].channel == "web" and recorded[0].rule.startswith("lookup:")

    by_name = _post(client, "/ledger/search", headers, {"name": name})
    assert f"/cases/{low_id}" in by_name.text and name not in by_name.text

    wrong = _post(client, "/ledger/search", headers, {"id_number": id_number[:-1] + "Q"})
    assert wrong.status_code == 422
    assert 'data-field="id_number"' in wrong.text and id_number[:-1] not in wrong.text
    empty = _post(client, "/ledger/search", headers, {})
    assert empty.status_code == 422 and "请填写身份证号或姓名" in empty.text


def test_export_is_a_file_recorded_with_channel_export(
    client: TestClient, auth: TokenFactory
) -> None:
    (low_id, low), (high_id, _) = _two_clues(client, auth)
    application = _services(client).application
    headers = auth(Role.COORDINATOR, COORDINATOR_UNIT)
    head = _head(application)

    answer = _post(
        client, "/ledger/export", headers, {"format": "csv", "risk": "low", "purpose": "follow_up"}
    )

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    text = answer.content.decode("utf-8-sig")
    assert mask_name(low["minor"]["name"]) in text and low["minor"]["name"] not in text
    recorded = _accesses_since(application, head)
    assert [str(e.case_id) for e in recorded] == [low_id]
    assert recorded[0].channel == "export" and recorded[0].purpose == "follow_up"
    assert high_id not in text

    bad = _post(client, "/ledger/export", headers, {"format": "exe"})
    assert bad.status_code == 422 and "文件格式" in bad.text


def test_roles_without_ledgers_are_refused(client: TestClient, auth: TokenFactory) -> None:
    for role, unit in ((Role.ADMIN, "county-it"), (Role.INVESTIGATOR, "county-inspection")):
        answer = client.get("/ledger", headers=auth(role, unit))
        assert answer.status_code == 403, answer.text
        assert "<html" in answer.text


# --- in a browser ---------------------------------------------------------------------------


def _rows(site: Site, page: Any, count: int) -> None:
    """The ledger follows the store in the server's background: reload until it has them."""
    deadline = time.monotonic() + 30
    while page.locator("table.ledger-table tbody tr").count() < count:
        assert time.monotonic() < deadline, "the ledger did not catch up"
        time.sleep(0.3)
        page.reload()


@pytest.mark.browser
def test_a_coordinator_filters_prints_and_exports_the_ledger(site: Site) -> None:
    reporter = site.person(Role.REPORTER, VILLAGE)
    actor = Actor(reporter.user_id, Role.REPORTER, VILLAGE, reporter.street)
    low = report_clue(risk="low")
    high = report_clue(
        issues=[{"category": "mental_health", "subtype": "self_harm"}],
        risk="high",
        born=years_before(local_today(), 12),
    )
    low_id = site.application.report_clue(low, actor)
    high_id = site.application.report_clue(high, actor)

    coordinator = site.person(Role.COORDINATOR, COORDINATOR_UNIT)
    page = site.page(coordinator, width=360, height=740)
    page.goto("/ledger")
    _rows(site, page, 2)
    table = page.locator("table.ledger-table").inner_text()
    assert mask_name(low.minor.name) in table and low.minor.name not in table
    assert high.minor.name not in page.content()
    assert page.locator("button[data-print]").is_visible()
    inspect(page, "ledger-360")

    page.select_option("#f-risk", "high")
    with page.expect_navigation():
        page.click("form[action='/ledger'] button[type=submit]")
    assert re.search(r"[?&]risk=high", page.url)
    assert high.minor.name not in page.url and high.minor.id_number not in page.url
    assert page.locator("table.ledger-table tbody tr").count() == 1
    assert page.locator(f'a[href="/cases/{high_id}"]').count() == 1
    assert page.locator(f'a[href="/cases/{low_id}"]').count() == 0

    head = _head(site.application)
    page.select_option("#x-format", "csv")
    with page.expect_download() as download:
        page.click("form[action='/ledger/export'] button[type=submit]")
    assert download.value.suggested_filename.endswith(".csv")
    recorded = _accesses_since(site.application, head)
    assert [e.case_id for e in recorded] == [high_id]
    assert recorded[0].channel == "export"

    wide = site.page(coordinator, width=1280, height=900)
    wide.goto("/ledger")
    _rows(site, wide, 2)
    inspect(wide, "ledger-wide")
    wide.emulate_media(media="print")
    inspect(wide, "ledger-print")


def test_paging_keeps_the_filters_and_xlsx_exports(
    client: TestClient, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "PER_PAGE", 1)
    (first_id, _), (second_id, _) = _two_clues(client, auth)
    headers = auth(Role.REPORTER, VILLAGE)

    one = client.get("/ledger?category=mental_health", headers=headers).text
    assert "第 1/2 页" in one
    assert 'href="/ledger?purpose=follow_up&amp;category=mental_health&amp;page=2"' in one
    two = client.get("/ledger?category=mental_health&page=2", headers=headers).text
    assert "第 2/2 页" in two and 'rel="prev"' in two and 'rel="next"' not in two
    shown = {case_id for case_id in (first_id, second_id) if f"/cases/{case_id}" in one + two}
    assert shown == {first_id, second_id}

    answer = _post(client, "/ledger/export", headers, {"format": "xlsx"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert answer.content[:2] == b"PK"  # a zip: the workbook
