"""The case page and its forms, answer by answer (issue 18), on both stores (the `client`
fixture; a bearer token works on pages, and is exempt from the session's CSRF check):

- the purpose is asked first: the same page for a case and for no case, no read recorded;
  a purpose the role may not declare is refused and recorded (channel `web`);
- the actions offered are those the role may take on the case (none on a closed file);
- a form with errors is a 422 naming the fields in Chinese, nothing stored, nothing submitted
  repeated; a domain refusal is said in the form; assigning several units stores all or none;
  done, a 303 (or the script's 204) back to `/cases/{id}?purpose=<purpose>`; a refused command
  is recorded with channel `web`;
- break-glass: a written reason, recorded as break-glass with channel `web`, only for roles
  that may declare `emergency`.
The browser's part (the coordinator's consultation and two units, 360 px, no cache) is
tests/web/test_coordination_pages.py; the field sets, tests/web/test_field_sets.py.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page

from domain import commands as cmd
from domain.access import (
    ROLE_PURPOSES,
    AccessDenied,
    Actor,
    BreakGlassAccessed,
    CaseAccessed,
    CommandRefused,
)
from domain.application import CaseTrail
from domain.clock import local_today
from domain.taxonomy import Role
from gateway.bootstrap import open_application
from gateway.settings import Settings
from gateway.web.labels import PURPOSE_LABELS
from tests.conftest import TokenFactory
from tests.domain.builders import STREET, register_units, report_body
from tests.web.conftest import Site, inspect

GOVERNANCE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
HEALTH = "chengguan-health-centre"
SCHOOL = "chengguan-school"
VILLAGE = "dongshan-village"
REPORTER = Actor("cp-reporter", Role.REPORTER, VILLAGE, STREET)
COORDINATOR = Actor("cp-coordinator", Role.COORDINATOR, GOVERNANCE, STREET)
FORM = {"content-type": "application/x-www-form-urlencoded"}


@dataclass
class Store:
    application: CaseTrail
    case_id: UUID
    body: dict[str, Any]

    def events(self) -> list[str]:
        return [type(e).__name__ for e in self.application.events.get(self.case_id)]

    def accesses(self) -> list[Any]:
        return list(self.application.access_events(self.case_id))


def new_case(application: CaseTrail, *, assign_police: bool = False) -> tuple[UUID, dict[str, Any]]:
    body = report_body(works_away=True)
    body["minor"]["name"] += "晓" + "".join(secrets.choice("雨泽宸涵瑾萱") for _ in range(2))
    case_id = application.report_clue(cmd.ReportClue.model_validate(body), REPORTER)
    if assign_police:
        command = cmd.AssignUnit.model_validate(
            {
                "unit": POLICE,
                "function": "judicial",
                "task": "核实情况。",
                "due_on": (local_today() + timedelta(days=5)).isoformat(),
            }
        )
        application.change_case(
            case_id,
            COORDINATOR,
            "assign_unit",
            lambda c: application.assignable(POLICE, c).assign_unit(
                command, by=COORDINATOR.as_record()
            ),
        )
    return case_id, body


@pytest.fixture
def store(settings: Settings, client: TestClient) -> Iterator[Store]:
    application = open_application(settings)
    try:
        register_units(application, POLICE, HEALTH, SCHOOL)
        case_id, body = new_case(application, assign_police=True)
        yield Store(application, case_id, body)
    finally:
        application.close()


def _plain(html: str) -> str:
    """The page without what differs between two answers of the same page (request id, the
    case id asked for)."""
    html = re.sub(r'<span class="rid">[^<]*</span>', "", html)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", html)


# --- purpose first ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.UNIT_MEMBER, Role.INVESTIGATOR])
def test_the_purpose_is_asked_first_and_nothing_is_read(
    client: TestClient, auth: TokenFactory, store: Store, role: Role
) -> None:
    headers = auth(role, POLICE if role is Role.UNIT_MEMBER else GOVERNANCE)
    before = len(store.accesses())
    asked = client.get(f"/cases/{store.case_id}", headers=headers)
    assert asked.status_code == 200
    assert asked.headers["cache-control"] == "no-store"
    html = asked.text
    assert '<select id="purpose" name="purpose"' in html
    assert f'action="/cases/{store.case_id}"' in html and 'method="get"' in html
    offered = re.findall(r'<option value="([a-z_]+)">', html)
    # A guardian's copy is its request's answer (issue 19), never a page's choice.
    assert set(offered) == {str(p) for p in ROLE_PURPOSES[role]} - {"guardian_request"}
    for purpose in offered:
        assert PURPOSE_LABELS[purpose] in html
    minor = store.body["minor"]
    for value in (minor["name"], minor["id_number"], store.body["description"], "待会商"):
        assert value not in html
    # Not even whether the case exists: the same page for no case.
    nothing = client.get(f"/cases/{uuid4()}", headers=headers)
    assert nothing.status_code == 200 and _plain(nothing.text) == _plain(html)
    assert len(store.accesses()) == before


def test_a_purpose_not_a_purpose_is_asked_again_unrecorded(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    before = len(store.accesses())
    answer = client.get(
        f"/cases/{store.case_id}?purpose=curiosity", headers=auth(Role.COORDINATOR, GOVERNANCE)
    )
    assert answer.status_code == 422
    assert "查阅目的：请从列表中选择" in answer.text
    assert "curiosity" not in answer.text
    assert len(store.accesses()) == before


def test_a_purpose_the_role_may_not_declare_is_refused_and_recorded(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    answer = client.get(
        f"/cases/{store.case_id}?purpose=consultation", headers=auth(Role.UNIT_MEMBER, POLICE)
    )
    assert answer.status_code == 403
    assert "不能以此目的查阅" in answer.text
    assert store.body["minor"]["name"] not in answer.text
    denied = [e for e in store.accesses() if isinstance(e, AccessDenied)]
    assert len(denied) == 1 and denied[0].channel == "web"
    assert denied[0].rule.startswith("purpose_not_allowed_for_role")


# --- the actions offered ---------------------------------------------------------------------


def _offered(html: str, case_id: UUID) -> set[str]:
    return set(re.findall(rf'href="/cases/{case_id}/([a-z-]+)\?purpose=', html))


@pytest.mark.parametrize(
    ("role", "unit", "purpose", "offered"),
    [
        (
            Role.COORDINATOR,
            GOVERNANCE,
            "consultation",
            {
                "consultation",
                "assignments",
                "intervention",
                "follow-up",
                "letter",
                "escalation",
                "closure",
            },
        ),
        (
            Role.SUPERVISOR,
            "chengguan-supervision",
            "follow_up",
            {"intervention", "follow-up", "letter", "escalation"},
        ),
        (Role.UNIT_MEMBER, POLICE, "intervention", {"intervention", "follow-up"}),
        (Role.REPORTER, VILLAGE, "follow_up", {"follow-up", "letter"}),
    ],
)
def test_the_page_offers_the_actions_of_the_role(
    client: TestClient,
    auth: TokenFactory,
    store: Store,
    role: Role,
    unit: str,
    purpose: str,
    offered: set[str],
) -> None:
    answer = client.get(f"/cases/{store.case_id}?purpose={purpose}", headers=auth(role, unit))
    assert answer.status_code == 200
    assert store.body["minor"]["name"] in answer.text
    assert _offered(answer.text, store.case_id) == offered


def test_a_closed_file_offers_no_action(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = auth(Role.COORDINATOR, GOVERNANCE)
    closed = client.post(
        f"/cases/{store.case_id}/closure",
        data={"reason": "resolved", "note": "经核实问题已解决。", "purpose": "consultation"},
        headers={**headers, **FORM},
        follow_redirects=False,
    )
    assert closed.status_code == 303
    assert closed.headers["location"] == f"/cases/{store.case_id}?purpose=consultation"
    assert store.events()[-1] == "Closed"
    page = client.get(closed.headers["location"], headers=headers)
    assert "已结案" in page.text and "问题已解决" in page.text
    assert _offered(page.text, store.case_id) == set()


# --- the forms -------------------------------------------------------------------------------


def test_a_form_with_errors_stores_nothing_and_repeats_nothing(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = {**auth(Role.COORDINATOR, GOVERNANCE), **FORM}
    before = store.events()
    decision = f"会商意见标记{secrets.token_hex(4)}"
    other = f"坏代码{secrets.token_hex(3)}"
    tomorrow = (local_today() + timedelta(days=1)).isoformat()
    answer = client.post(
        f"/cases/{store.case_id}/consultation",
        data={
            "held_on": tomorrow,
            "other_participants": other,
            "decision": decision,
            "purpose": "consultation",
        },
        headers=headers,
    )
    assert answer.status_code == 422
    html = answer.text
    assert "提交未成功，没有保存任何内容" in html
    assert 'data-field="held_on"' in html and "会商日期" in html
    assert "参会单位" in html
    for value in (decision, other, tomorrow):
        assert value not in html
    assert store.events() == before
    # Nothing given at all: each field named as required.
    empty = client.post(f"/cases/{store.case_id}/consultation", data={}, headers=headers)
    assert empty.status_code == 422
    assert "会商日期：必填，请填写" in empty.text and "会商意见：必填，请填写" in empty.text
    assert "参会单位：至少需要一项" in empty.text
    assert store.events() == before


def test_a_domain_refusal_is_said_in_the_form(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = {**auth(Role.COORDINATOR, GOVERNANCE), **FORM}
    before = store.events()
    answer = client.post(
        f"/cases/{store.case_id}/follow-up",
        data={"visited_on": "2001-01-01", "notes": "回访。"},
        headers=headers,
    )
    assert answer.status_code == 422
    assert "回访日期：日期早于线索发现日期" in answer.text
    assert store.events() == before


def test_a_form_done_goes_back_to_the_case_with_its_purpose(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = {**auth(Role.COORDINATOR, GOVERNANCE), **FORM}
    today = local_today().isoformat()
    done = client.post(
        f"/cases/{store.case_id}/consultation",
        data={
            "held_on": today,
            "participants": [POLICE, HEALTH],
            "other_participants": "county-office",
            "decision": "会商决定交办。",
            "purpose": "consultation",
        },
        headers=headers,
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/cases/{store.case_id}?purpose=consultation"
    held = list(store.application.events.get(store.case_id))[-1]
    assert type(held).__name__ == "ConsultationHeld"
    assert held.participants == [POLICE, HEALTH, "county-office"]  # type: ignore[attr-defined]
    # The page's script gets a 204 naming where to go; a purpose not the role's is left out.
    scripted = client.post(
        f"/cases/{store.case_id}/escalation",
        data={
            "to_level": "county",
            "reason": "风险升高，提请县级协调。",
            "purpose": "investigation",
        },
        headers={**headers, "X-Casetrail-Form": "1"},
        follow_redirects=False,
    )
    assert scripted.status_code == 204
    assert scripted.headers["x-casetrail-location"] == f"/cases/{store.case_id}"
    assert store.events()[-1] == "Escalated"


def test_the_other_forms_store_their_command(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    """The assigned unit records its intervention and a follow-up; the coordinator signs the
    guardianship letter: each the JSON route's command, stored as by the API."""
    today = local_today().isoformat()
    police = {**auth(Role.UNIT_MEMBER, POLICE), **FORM}
    coordinator = {**auth(Role.COORDINATOR, GOVERNANCE), **FORM}
    posts = [
        (
            police,
            "intervention",
            {
                "function": "judicial",
                "measure": "home_visit",
                "notes": "入户核实。",
                "done_on": today,
            },
            "InterventionRecorded",
        ),
        (police, "follow-up", {"visited_on": today, "notes": "电话回访。"}, "FollowUpRecorded"),
        (
            coordinator,
            "letter",
            {"guardian_index": "0", "reason": "parents_working_away", "signed_on": today},
            "GuardianshipLetterSigned",
        ),
    ]
    for headers, slug, data, event in posts:
        done = client.post(
            f"/cases/{store.case_id}/{slug}",
            data={**data, "purpose": "intervention"},
            headers=headers,
            follow_redirects=False,
        )
        assert done.status_code == 303, (slug, done.text[:300])
        assert done.headers["location"] == f"/cases/{store.case_id}?purpose=intervention"
        assert store.events()[-1] == event
    stored = list(store.application.events.get(store.case_id))
    assert stored[-3].by["unit"] == POLICE  # type: ignore[attr-defined]
    # A guardian the file does not hold: said in the form, nothing stored.
    before = store.events()
    refused = client.post(
        f"/cases/{store.case_id}/letter",
        data={"guardian_index": "5", "reason": "parents_working_away", "signed_on": today},
        headers=coordinator,
    )
    assert refused.status_code == 422 and "监护人：" in refused.text
    assert store.events() == before


def test_assigning_units_stores_all_or_none(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = {**auth(Role.COORDINATOR, GOVERNANCE), **FORM}
    due = (local_today() + timedelta(days=10)).isoformat()
    before = store.events()
    # POLICE already holds a judicial assignment: the school's would be fine, but neither is
    # stored.
    refused = client.post(
        f"/cases/{store.case_id}/assignments",
        data={
            "unit": [SCHOOL, POLICE],
            f"function.{SCHOOL}": "school",
            f"function.{POLICE}": "judicial",
            "task": "联合走访。",
            "due_on": due,
        },
        headers=headers,
    )
    assert refused.status_code == 422
    assert "交办单位：该单位在此保护职能下已有未结束的交办任务" in refused.text
    assert store.events() == before
    missing = client.post(
        f"/cases/{store.case_id}/assignments",
        data={"task": "联合走访。", "due_on": due},
        headers=headers,
    )
    assert missing.status_code == 422 and "交办单位：至少选择一个单位" in missing.text
    past = client.post(
        f"/cases/{store.case_id}/assignments",
        data={
            "unit": [SCHOOL],
            f"function.{SCHOOL}": "school",
            "task": "走访。",
            "due_on": "2001-01-01",
        },
        headers=headers,
    )
    assert past.status_code == 422 and 'data-field="due_on"' in past.text
    assert store.events() == before
    done = client.post(
        f"/cases/{store.case_id}/assignments",
        data={
            "unit": [SCHOOL, HEALTH],
            f"function.{SCHOOL}": "school",
            f"function.{HEALTH}": "family",
            "task": "联合走访。",
            "due_on": due,
        },
        headers=headers,
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert store.events()[len(before) :] == ["UnitAssigned", "UnitAssigned"]


def test_commands_the_role_may_not_issue(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    """A supervisor is not offered the consultation form (403 page); a coordinator of another
    street is answered as for a missing case, the refusal recorded with channel web."""
    supervisor = auth(Role.SUPERVISOR, "chengguan-supervision")
    assert client.get(f"/cases/{store.case_id}/consultation", headers=supervisor).status_code == 403
    before = store.events()
    other = {**auth(Role.COORDINATOR, "xiaoxi-governance-office", street="xiaoxi-street"), **FORM}
    answer = client.post(
        f"/cases/{store.case_id}/follow-up",
        data={"visited_on": local_today().isoformat(), "notes": "回访。"},
        headers=other,
    )
    assert answer.status_code == 404 and "未找到，或您无权查看" in answer.text
    assert store.events() == before
    refusals = store.application.command_refusals(case_id=store.case_id)
    assert [r.channel for r in refusals if isinstance(r, CommandRefused)] == ["web"]


# --- break-glass -----------------------------------------------------------------------------


def test_break_glass_needs_a_written_reason_and_is_recorded(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    headers = {**auth(Role.UNIT_MEMBER, SCHOOL), **FORM}
    assert client.get(f"/cases/{store.case_id}/break-glass", headers=headers).status_code == 200
    short = client.post(
        f"/cases/{store.case_id}/break-glass", data={"reason": "急"}, headers=headers
    )
    assert short.status_code == 422 and "紧急查阅理由" in short.text
    assert store.body["minor"]["name"] not in short.text
    assert not [e for e in store.accesses() if isinstance(e, BreakGlassAccessed)]
    reason = "学生在校突发情况，需立即联系监护人核实安全。"
    opened = client.post(
        f"/cases/{store.case_id}/break-glass", data={"reason": reason}, headers=headers
    )
    assert opened.status_code == 200
    assert store.body["minor"]["name"] in opened.text and "紧急查阅（破窗）" in opened.text
    assert _offered(opened.text, store.case_id) == set()
    glass = [e for e in store.accesses() if isinstance(e, BreakGlassAccessed)]
    assert len(glass) == 1 and glass[0].channel == "web" and glass[0].reason == reason
    # Roles that may not declare an emergency are not offered it.
    investigator = auth(Role.INVESTIGATOR, "county-investigations")
    assert (
        client.get(f"/cases/{store.case_id}/break-glass", headers=investigator).status_code == 403
    )


# --- in a browser: the errors shown in place, break-glass at 360 px -----------------------------


@pytest.mark.browser
def test_break_glass_and_form_errors_in_a_browser(site: Site) -> None:
    register_units(site.application, POLICE, HEALTH, SCHOOL)
    case_id, body = new_case(site.application)
    member = site.person(Role.UNIT_MEMBER, SCHOOL)
    page: Page = site.page(member, width=360)
    page.goto(f"/cases/{case_id}")
    page.get_by_role("link", name="紧急查阅（破窗）").click()
    page.wait_for_url(f"**/cases/{case_id}/break-glass")
    page.fill("#reason", "短")
    page.click("main button[type=submit]")
    page.wait_for_selector("[data-form-errors] li[data-field=reason]")
    assert page.locator("#reason").input_value() == "短"  # the draft stays in the page
    inspect(page, "case-break-glass-error-360")
    page.fill("#reason", "学生在校突发情况，需立即联系监护人核实安全。")
    page.click("main button[type=submit]")
    page.wait_for_selector("text=紧急查阅（破窗）：本次查阅已单独记录")
    assert body["minor"]["name"] in page.content()
    inspect(page, "case-break-glass-opened-360")
    glass = [
        e for e in site.application.access_events(case_id) if isinstance(e, BreakGlassAccessed)
    ]
    assert len(glass) == 1 and glass[0].channel == "web"
    assert not [
        e
        for e in site.application.access_events(case_id)
        if isinstance(e, CaseAccessed) and not isinstance(e, BreakGlassAccessed)
    ]
