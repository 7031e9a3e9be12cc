"""Reporting a clue through the pages (gateway/web/routes/clues.py): the form posts what
`POST /v1/cases` takes, validated by the same model, stored by the same application call.

- HTML level, both stores: a form with a field missing is a 422 naming it in Chinese, no
  submitted value repeated, nothing stored; a whole form stores one `ClueReported` with the
  fields as posted and goes to the confirmation page (the file's number, no personal data);
  roles that may not report are refused.
- In a browser (the issue's words): a grid worker reports a clue on a 360x740 viewport; the
  first submission misses a required field (422, the field named in Chinese and marked, what
  was typed still in the inputs, no new event in the store), then is fixed and stored.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import pytest
from faker import Faker
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.clock import local_today
from domain.identity import make_id_number
from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.domain.builders import SYNTHETIC_AREA, VILLAGE, years_before
from tests.web.conftest import Site, inspect

FORM = "application/x-www-form-urlencoded"


def _clue() -> dict[str, Any]:
    """A synthetic clue as the form's fields (names are the model's paths)."""
    fake = Faker("zh_CN")
    born = years_before(local_today(), 11)
    surname = fake.last_name()
    return {
        "minor.name": surname + fake.first_name(),
        "minor.gender": "female",
        "minor.date_of_birth": born.isoformat(),
        "minor.id_number": make_id_number(SYNTHETIC_AREA, born, 202),
        "minor.school": "城南实验小学",
        "minor.grade_class": "五年级(3)班",
        "minor.village": VILLAGE,
        "guardians.0.name": surname + fake.first_name(),
        "guardians.0.relation": "mother",
        "guardians.0.phone": "13800000000",
        "guardians.0.works_away": "true",
        "issues": ["growth_environment:left_behind", "mental_health:anxiety"],
        "description": "网格巡查时发现该生放学后常独自在河边逗留，情绪低落。",
        "found_by.role": "grid_worker",
        "found_by.unit": VILLAGE,
        "discovery_method": "grid_patrol",
        "found_on": (local_today() - timedelta(days=1)).isoformat(),
        "risk": "medium",
    }


def _pairs(fields: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for name, value in fields.items():
        for one in value if isinstance(value, list) else [value]:
            found.append((name, one))
    return found


def _application(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def _head(application: CaseTrail) -> int:
    return int(application.recorder.max_notification_id() or 0)


def _events_since(application: CaseTrail, head: int) -> list[Any]:
    return [
        application.mapper.to_domain_event(n)
        for n in application.recorder.select_notifications(start=head + 1, limit=100)
    ]


def _post(client: TestClient, headers: dict[str, str], fields: dict[str, Any]) -> Any:
    return client.post(
        "/clues",
        content=urlencode(_pairs(fields)),
        headers={**headers, "Content-Type": FORM},
        follow_redirects=False,
    )


def _assert_clue_stored(event: Any, fields: dict[str, Any], unit: str) -> None:
    assert type(event).__qualname__.endswith("ClueReported")
    assert event.minor["name"] == fields["minor.name"]
    assert event.minor["id_number"] == fields["minor.id_number"]
    assert event.minor["gender"] == "female"
    assert event.minor["village"] == VILLAGE
    assert event.minor["grade_class"] == fields["minor.grade_class"]
    assert [(g["name"], g["relation"], g["phone"], g["works_away"]) for g in event.guardians] == [
        (fields["guardians.0.name"], "mother", "13800000000", True)
    ]
    assert sorted((i["category"], i["subtype"]) for i in event.issues) == [
        ("growth_environment", "left_behind"),
        ("mental_health", "anxiety"),
    ]
    assert event.description == fields["description"]
    assert event.found_by == {"role": "grid_worker", "unit": VILLAGE}
    assert event.method == "grid_patrol"
    assert event.found_on == fields["found_on"]
    assert event.risk == "medium"
    assert event.reported_by["unit"] == unit


def test_a_form_with_errors_stores_nothing_and_repeats_nothing(
    client: TestClient, auth: TokenFactory
) -> None:
    headers = auth(Role.REPORTER, VILLAGE)
    application = _application(client)
    fields = _clue()
    fields["minor.name"] = ""
    fields["guardians.0.phone"] = "12345"
    head = _head(application)

    answer = _post(client, headers, fields)

    assert answer.status_code == 422
    html = answer.text
    assert 'data-field="minor.name"' in html and "未成年人姓名：必填" in html
    assert 'data-field="guardians.0.phone"' in html and "监护人1联系电话" in html
    for name in ("minor.id_number", "minor.school", "description", "guardians.0.name"):
        assert fields[name] not in html, name
    assert "12345" not in html
    assert _head(application) == head  # nothing stored, not even a refusal


def test_a_whole_form_reports_the_clue_as_the_api_does(
    client: TestClient, auth: TokenFactory
) -> None:
    headers = auth(Role.REPORTER, VILLAGE)
    application = _application(client)
    fields = _clue()
    head = _head(application)

    answer = _post(client, headers, fields)

    assert answer.status_code == 303, answer.text
    match = re.fullmatch(r"/clues/([0-9a-f-]{36})/reported", answer.headers["location"])
    assert match is not None
    case_id = UUID(match.group(1))
    events = _events_since(application, head)
    reported = [e for e in events if type(e).__qualname__.endswith("ClueReported")]
    assert len(reported) == 1 and reported[0].originator_id == case_id
    _assert_clue_stored(reported[0], fields, VILLAGE)

    confirmation = client.get(answer.headers["location"], headers=headers)
    assert confirmation.status_code == 200
    assert str(case_id) in confirmation.text and "问题会商" in confirmation.text
    for name in ("minor.name", "minor.id_number", "minor.school", "guardians.0.name"):
        assert fields[name] not in confirmation.text


def test_a_risk_below_the_floor_is_said_in_the_form(client: TestClient, auth: TokenFactory) -> None:
    fields = _clue()
    fields["issues"] = ["mental_health:self_harm"]
    fields["risk"] = "low"
    application = _application(client)
    head = _head(application)
    answer = _post(client, auth(Role.COORDINATOR, "governance-office"), fields)
    assert answer.status_code == 422
    assert 'data-field="risk"' in answer.text and "不能低于" in answer.text
    assert not [e for e in _events_since(application, head) if "ClueReported" in type(e).__name__]


def test_roles_that_do_not_report_are_refused(client: TestClient, auth: TokenFactory) -> None:
    headers = auth(Role.UNIT_MEMBER, "police-station")
    assert client.get("/clues/new", headers=headers).status_code == 403
    application = _application(client)
    head = _head(application)
    answer = _post(client, headers, _clue())
    assert answer.status_code == 403
    assert not [e for e in _events_since(application, head) if "ClueReported" in type(e).__name__]
    assert client.get("/clues/new", headers=auth(Role.COORDINATOR, "gov")).status_code == 200


# --- in a browser ---------------------------------------------------------------------------


def _fill(page: Any, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name == "issues":
            for one in value:
                page.check(f'input[name="issues"][value="{one}"]')
        elif name == "minor.gender":
            page.check(f'input[name="minor.gender"][value="{value}"]')
        elif name.endswith("works_away"):
            page.check(f'input[name="{name}"]')
        elif name in ("guardians.0.relation", "found_by.role", "discovery_method", "risk"):
            page.select_option(f'select[name="{name}"]', value)
        else:
            page.fill(f'[name="{name}"]', value)


@pytest.mark.browser
def test_a_grid_worker_reports_a_clue_on_a_phone(site: Site) -> None:
    person = site.person(Role.REPORTER, VILLAGE)
    page = site.page(person, width=360, height=740)
    page.goto("/clues/new")
    inspect(page, "clue-new")

    fields = _clue()
    school = fields.pop("minor.school")  # the required field the first submission misses
    _fill(page, fields)
    head = _head(site.application)
    with page.expect_response("**/clues") as posted:
        page.click("form.clue-form button[type=submit]")
    assert posted.value.status == 422
    summary = page.locator("form.clue-form [data-form-errors]")
    summary.wait_for()
    assert "就读学校" in summary.inner_text()
    assert page.get_attribute('[name="minor.school"]', "aria-invalid") == "true"
    # The draft stays in the page, as typed; nothing was stored.
    assert page.input_value('[name="minor.name"]') == fields["minor.name"]
    assert page.input_value('[name="minor.id_number"]') == fields["minor.id_number"]
    assert page.input_value('[name="description"]') == fields["description"]
    assert page.is_checked('input[name="issues"][value="growth_environment:left_behind"]')
    assert _head(site.application) == head
    inspect(page, "clue-errors")

    page.fill('[name="minor.school"]', school)
    with page.expect_navigation(url=re.compile(r".*/clues/[0-9a-f-]{36}/reported$")):
        page.click("form.clue-form button[type=submit]")
    assert "线索已报告" in page.content()
    inspect(page, "clue-reported")
    case_id = UUID(page.url.rsplit("/", 2)[-2])
    reported = [
        e
        for e in _events_since(site.application, head)
        if type(e).__qualname__.endswith("ClueReported")
    ]
    assert len(reported) == 1 and reported[0].originator_id == case_id
    _assert_clue_stored(reported[0], {**fields, "minor.school": school}, VILLAGE)
    assert reported[0].minor["school"] == school


def test_guardian_rows_are_named_as_the_person_filled_them(
    client: TestClient, auth: TokenFactory
) -> None:
    headers = auth(Role.REPORTER, VILLAGE)
    application = _application(client)
    fields = _clue()
    guardian = {k: fields.pop(k) for k in list(fields) if k.startswith("guardians.0.")}
    moved = {k.replace(".0.", ".2."): v for k, v in guardian.items()}  # behind 添加监护人
    page = client.get("/clues/new", headers=headers).text
    assert "添加监护人" in page and 'name="guardians.5.phone"' in page

    wrong = _post(client, headers, {**fields, **moved, "guardians.2.phone": "12345"})
    assert wrong.status_code == 422
    assert 'data-field="guardians.2.phone"' in wrong.text and "监护人3联系电话" in wrong.text
    assert 'data-field="guardians.0.phone"' not in wrong.text

    head = _head(application)
    answer = _post(client, headers, {**fields, **moved})
    assert answer.status_code == 303, answer.text
    reported = [e for e in _events_since(application, head) if "ClueReported" in type(e).__name__]
    assert [g["name"] for g in reported[0].guardians] == [guardian["guardians.0.name"]]
