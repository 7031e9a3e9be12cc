"""A unit's inbox in a real browser at phone width (360 px): a unit member signs for the task
and reports the result (办结反馈), and declines another with a reason. The stored events are
checked: `AssignmentAcknowledged` naming the person who signed, `AssignmentResultReported` with
the measures chosen, `AssignmentDeclined` with the reason; a result form with errors is a 422
in Chinese that repeats nothing typed and stores nothing; the inbox shows no case content and
stores no access event; every page passes `inspect` (no overflow, axe, CSP)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from domain import commands as cmd
from domain.access import Actor, CaseAccessed
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import ProtectionFunction, Role
from projections.ledger.quarters import today as local_today
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import Planted, planted_case
from tests.web.conftest import Site, inspect

browser = pytest.mark.browser

STREET = "chengguan-street"
VILLAGE = "dongshan-village"
POLICE = "chengguan-police-station"
REPORTER = Actor("user-reporter-web", Role.REPORTER, VILLAGE, STREET)
COORDINATOR = Actor("user-coordinator-web", Role.COORDINATOR, "chengguan-office", STREET)
TASK = "到校了解欺凌情况并约谈相关学生家长。"
OUTCOME = "已约谈家长并入户走访，学生情况稳定。标记结果"
REASON = "该事项属学校保护职责，建议交学区办处理。标记退回"


def _case(application: CaseTrail) -> tuple[UUID, Planted]:
    planted = planted_case(VILLAGE)
    case_id = application.report_clue(cmd.ReportClue.model_validate(planted.body), REPORTER)
    return case_id, planted


def _assign(application: CaseTrail, case_id: UUID, function: str, days: int) -> str:
    values: dict[str, Any] = {
        "unit": POLICE,
        "function": ProtectionFunction(function),
        "task": TASK,
    }
    due = local_today() + timedelta(days=days)
    # A due day already past (an overdue task) only as stored before: the command refuses it.
    command = (
        cmd.AssignUnit(**values, due_on=due)
        if days >= 0
        else cmd.AssignUnit.model_construct(**values, due_on=due)
    )
    found = application.change_case(
        case_id,
        COORDINATOR,
        "assign_unit",
        lambda c: application.assignable(POLICE, c).assign_unit(
            command, by=COORDINATOR.as_record()
        ),
    )
    return str(found)


def _stored(application: CaseTrail, case_id: UUID) -> list[Any]:
    return [
        e
        for e in (application.mapper.to_domain_event(n) for n in application.notifications(start=1))
        if e.originator_id == case_id
    ]


def _assignment(application: CaseTrail, case_id: UUID, aid: str) -> dict[str, Any]:
    case: object = application.repository.get(case_id)
    assert isinstance(case, Case)
    found: dict[str, Any] = case.assignments[aid]
    return found


def _until_shown(page: Page, selector: str, seconds: float = 20) -> None:
    """The inbox follows the ledger read model, which follows the store by polling: reload
    until the task's state shows (the page says so while it lags)."""
    deadline = time.monotonic() + seconds
    while True:
        page.goto("/inbox")
        if page.locator(selector).count():
            return
        assert time.monotonic() < deadline, f"{selector} never shown in the inbox"
        time.sleep(0.3)


@browser
def test_a_unit_member_signs_for_the_task_and_reports_the_result(site: Site) -> None:
    application = site.application
    register_units(application, POLICE)
    police = site.person(Role.UNIT_MEMBER, POLICE, street=STREET)
    case_id, planted = _case(application)
    aid = _assign(application, case_id, "judicial", 3)
    declined = _assign(application, case_id, "family", 0)
    accesses = len(application.access_events(case_id))

    page = site.page(police, width=360)
    _until_shown(page, f"#task-{declined} form[action$='/sign']")
    task = page.locator(f"#task-{aid}")
    expect(task).to_contain_text("司法保护")
    expect(task.locator("a[href='/cases/" + str(case_id) + "']")).to_be_visible()
    text = page.content()
    for value in (planted.name, planted.id_number, planted.description, TASK):
        assert value not in text, "case content in the inbox"
    assert len(application.access_events(case_id)) == accesses  # the list discloses nothing
    inspect(page, "inbox-to-sign")

    # 签收: the person who signed is in the stored event.
    with page.expect_navigation(url=re.compile(r".*/inbox$")):
        task.locator("form[action$='/sign'] button[type=submit]").click()
    signed = [
        e for e in _stored(application, case_id) if type(e).__name__ == "AssignmentAcknowledged"
    ]
    assert len(signed) == 1
    assert signed[0].assignment_id == aid
    assert signed[0].by["user"] == police.user_id and signed[0].unit == POLICE
    assert signed[0].receipt is False

    # The result form, once signed for: a form with errors stores nothing, echoes nothing.
    _until_shown(page, f"#task-{aid} form[action$='/result']")
    form = page.locator(f"#task-{aid} form[action$='/result']")
    csrf = form.locator("input[name=csrf_token]").get_attribute("value")
    assert csrf
    before = application.recorder.max_notification_id()
    bad = page.request.post(
        f"{site.base}/inbox/{case_id}/{aid}/result",
        form={"csrf_token": csrf, "measures": "秘密措施", "outcome": OUTCOME},
    )
    assert bad.status == 422
    assert "采取的措施" in bad.text() and "处理建议" in bad.text()
    assert OUTCOME not in bad.text() and "秘密措施" not in bad.text()
    assert application.recorder.max_notification_id() == before
    inspect(page, "inbox-result-form")

    form.locator(f"#m-{aid}-home_visit").check()
    form.locator(f"#m-{aid}-guidance_education").check()
    form.locator(f"#outcome-{aid}").fill(OUTCOME)
    form.locator(f"#r-{aid}-close").check()
    with page.expect_navigation(url=re.compile(r".*/inbox$")):
        form.locator("button[type=submit]").click()
    reported = [
        e for e in _stored(application, case_id) if type(e).__name__ == "AssignmentResultReported"
    ]
    assert len(reported) == 1
    assert reported[0].by["user"] == police.user_id
    record = _assignment(application, case_id, aid)
    assert record["result"]["measures"] == ["guidance_education", "home_visit"]  # page order
    assert record["result"]["recommendation"] == "close"
    assert record["ended"]["outcome"] == "result_reported"

    # 退回 with a reason (asked to confirm first), and the ended tasks listed.
    page.on("dialog", lambda dialog: dialog.accept())
    _until_shown(page, f"#task-{declined}")
    other = page.locator(f"#task-{declined}")
    other.locator("summary").click()
    other.locator(f"#reason-{declined}").fill(REASON)
    with page.expect_navigation(url=re.compile(r".*/inbox$")):
        other.locator("form[action$='/decline'] button[type=submit]").click()
    record = _assignment(application, case_id, declined)
    assert record["declined"]["reason"] == REASON
    assert record["declined"]["user"] == police.user_id
    _until_shown(page, "td:has-text('已退回')")
    expect(page.locator("table")).to_contain_text("建议结案")
    assert REASON not in page.content() and OUTCOME not in page.content()
    inspect(page, "inbox-ended")
    # No case content read through the inbox at any step.
    assert not [
        e for e in application.access_events(case_id)[accesses:] if isinstance(e, CaseAccessed)
    ]


@browser
def test_a_step_on_a_stale_page_is_refused_in_chinese_and_other_roles_have_no_inbox(
    site: Site,
) -> None:
    application = site.application
    register_units(application, POLICE)
    police = site.person(Role.UNIT_MEMBER, POLICE, street=STREET)
    case_id, _ = _case(application)
    aid = _assign(application, case_id, "school", 2)
    page = site.page(police, width=360)
    _until_shown(page, f"#task-{aid} form[action$='/sign']")
    # Signed for elsewhere meanwhile (another tab): this page's button is now stale.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    first = page.request.post(f"{site.base}/inbox/{case_id}/{aid}/sign", form={"csrf_token": csrf})
    assert first.ok
    page.locator(f"#task-{aid} form[action$='/sign'] button[type=submit]").click()
    expect(page.locator("[role=alert]")).to_contain_text("此任务已签收")
    assert page.url.endswith("/inbox")  # the answer replaced the page in place
    inspect(page, "inbox-refused")

    # A decline without a reason: 422 in Chinese, nothing stored.
    before = application.recorder.max_notification_id()
    other = _assign(application, case_id, "online", 2)
    after_assign = application.recorder.max_notification_id()
    assert after_assign != before
    bad = page.request.post(
        f"{site.base}/inbox/{case_id}/{other}/decline", form={"csrf_token": csrf, "reason": " "}
    )
    assert bad.status == 422 and "退回理由" in bad.text() and "必填" in bad.text()
    assert application.recorder.max_notification_id() == after_assign

    # Another role: the inbox is refused (recorded), shown as a page in Chinese.
    coordinator = site.person(Role.COORDINATOR, "chengguan-office", street=STREET)
    theirs = site.page(coordinator, width=360)
    answer = theirs.goto("/inbox")
    assert answer is not None and answer.status == 403
    expect(theirs.locator("h1")).to_contain_text("无权")


def test_the_inbox_marks_overdue_tasks_and_a_bearer_signs_for_without_a_browser(
    client: TestClient, auth: TokenFactory
) -> None:
    """HTML-level, on both stores: the overdue task marked 逾期, no case content, and the
    sign-for form's POST storing the person (a bearer token is exempt from the CSRF field)."""
    application: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    register_units(application, POLICE)
    case_id, planted = _case(application)
    late = _assign(application, case_id, "society", -2)
    due = _assign(application, case_id, "government", 5)
    client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]
    headers = auth(Role.UNIT_MEMBER, POLICE)
    answer = client.get("/inbox", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    text = answer.text
    assert f'<li class="card task is-overdue" id="task-{late}">' in text
    assert f'<li class="card task" id="task-{due}">' in text
    late_card = text.split(f'id="task-{late}"')[1].split("</li>")[0]
    due_card = text.split(f'id="task-{due}"')[1].split("</li>")[0]
    assert "逾期" in late_card and "逾期" not in due_card
    for value in (planted.name, planted.id_number, planted.description, TASK):
        assert value not in text, "case content in the inbox"

    signed = client.post(f"/inbox/{case_id}/{due}/sign", headers=headers, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/inbox"
    record = _assignment(application, case_id, due)
    assert record["signed_for"]["user"] == f"user-{Role.UNIT_MEMBER}-{POLICE}"
