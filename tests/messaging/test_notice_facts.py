"""Alerts, notice facts and receipts end to end, over a real nats-server (issue 14, issue 13).

One stack for the module: the broker, the API and the relay as processes, and the clients of the
street's coordination office (街道综治办), its supervisor (街道分管领导) and the county's unit.

- a new urgent clue reaches the office's client and the supervisor's, with no personal data; a
  medium one the office's only;
- each notice is stored once as `NoticePublished` and its receipt, confirmed by the unit's own
  client, once as `NoticeReceived`;
- an escalation to the county reaches the county's unit;
- a clue in a street without a coordination office or supervisor is an undeliverable notice,
  stored once per missing recipient, counted in `/healthz` (a number only).

The relay SIGKILLed mid-burst storing each `NoticePublished` once: `test_outage.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from eventsourcing.utils import get_topic

from domain.clock import local_today
from domain.notices import NoticePublished, NoticeReceived, NoticeUndeliverable
from domain.taxonomy import Role
from gateway.cli.main import cli
from gateway.messaging.unit_client import ApiReporter
from tests.integration.planted import Planted, planted_case
from tests.messaging.stack import Listener, Stack, build_stack, wait_for

OFFICE = "chengguan-governance-office"
SUPERVISION = "chengguan-street-supervision"
COUNTY = "county-coordination-office"
VILLAGE = "dongshan-village"
FAR = "far-street"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        tmp_path_factory.mktemp("notice-facts"),
        [
            (OFFICE, "城关街道综治办", "governance_office"),
            (SUPERVISION, "城关街道分管领导", "street_supervision"),
        ],
    )
    # The county's unit: its `street` is the county's own code (it belongs to no street).
    built.register(COUNTY, "县未成年人保护工作协调机制", "county_office", street="county")
    built.write_config()
    built.broker.stop()
    built.broker.start()
    # Its client's token names the county's code as its street, as its registration does.
    (built.root / f"{COUNTY}.token").write_text(
        built.token(Role.UNIT_MEMBER, COUNTY, street="county"), encoding="ascii"
    )
    (built.root / f"{COUNTY}.token").chmod(0o600)
    try:
        built.start_api()
        built.start_relay()
        for unit in (OFFICE, SUPERVISION, COUNTY):
            built.listeners[unit] = built.start_listener(unit)
        built.wait_api()
        yield built
    finally:
        built.close()


def report(stack: Stack, planted: Planted, *, street: str | None = None) -> str:
    headers = (
        stack.headers(Role.REPORTER, VILLAGE)
        if street is None
        else {"Authorization": f"Bearer {stack.token(Role.REPORTER, 'far-village', street)}"}
    )
    answer = httpx.post(f"{stack.api_url}/v1/cases", json=planted.body, headers=headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def clue(risk: str) -> Planted:
    planted = planted_case(VILLAGE)
    planted.body["issues"] = [{"category": "growth_environment", "subtype": "left_behind"}]
    planted.body["risk"] = risk
    return planted


def notices(listener: Listener, case_id: str, kind: str) -> list[dict[str, Any]]:
    return [
        e
        for e in listener.entries()
        if e["kind"] == kind and (e.get("body") or {}).get("case_ref") == case_id
    ]


def has_alert(listener: Listener, case_id: str) -> bool:
    return bool(notices(listener, case_id, "new_clue"))


def facts(stack: Stack, cls: type[Any]) -> list[Any]:
    with stack.application() as application:
        return [
            e
            for n in application.notifications(topics=(get_topic(cls),))
            if isinstance(e := application.mapper.to_domain_event(n), cls)
        ]


def test_an_urgent_clue_alerts_the_office_and_the_supervisor_and_each_receipt_is_stored_once(
    stack: Stack,
) -> None:
    planted = clue("urgent")
    case_id = report(stack, planted)
    office, supervision = stack.listeners[OFFICE], stack.listeners[SUPERVISION]
    for listener in (office, supervision):
        wait_for(partial(has_alert, listener, case_id), 30, listener.unit_id)
    [alert] = notices(office, case_id, "new_clue")
    assert set(alert["body"]) == {"case_ref", "risk", "found_on", "reported_at"}
    assert alert["body"]["risk"] == "urgent"
    assert alert["body"]["found_on"] == planted.body["found_on"]
    for listener in (office, supervision):
        text = listener.inbox.read_text(encoding="utf-8")
        for needle in (planted.name, planted.id_number, planted.description, planted.phone):
            assert needle not in text

    # One NoticePublished per unit, one NoticeReceived per unit, from that unit's client.
    def about_case(cls: type[Any]) -> list[Any]:
        return [f for f in facts(stack, cls) if str(f.case_id) == case_id]

    wait_for(lambda: len(about_case(NoticeReceived)) == 2, 30, "both receipts")
    published = about_case(NoticePublished)
    assert sorted(f.unit for f in published) == [OFFICE, SUPERVISION]
    assert {f.kind for f in published} == {"new_clue"}
    assert {f.assignment_id for f in published} == {None}
    received = about_case(NoticeReceived)
    assert sorted((f.unit, f.client["unit"]) for f in received) == [
        (OFFICE, OFFICE),
        (SUPERVISION, SUPERVISION),
    ]
    assert {f.message_id for f in received} == {f.message_id for f in published}
    assert {f.message_id for f in published} == {
        notices(office, case_id, "new_clue")[0]["message_id"],
        notices(supervision, case_id, "new_clue")[0]["message_id"],
    }


def test_a_medium_clue_alerts_the_office_only(stack: Stack) -> None:
    case_id = report(stack, clue("medium"))
    office = stack.listeners[OFFICE]
    wait_for(lambda: bool(notices(office, case_id, "new_clue")), 30, "the office's alert")
    assert notices(office, case_id, "new_clue")[0]["body"]["risk"] == "medium"
    wait_for(
        lambda: any(str(f.case_id) == case_id for f in facts(stack, NoticePublished)),
        30,
        "its fact",
    )
    assert [f.unit for f in facts(stack, NoticePublished) if str(f.case_id) == case_id] == [OFFICE]
    assert notices(stack.listeners[SUPERVISION], case_id, "new_clue") == []


def test_an_escalation_to_the_county_reaches_the_county_unit(stack: Stack) -> None:
    case_id = report(stack, clue("medium"))
    escalated = httpx.post(
        f"{stack.api_url}/v1/cases/{case_id}/escalations",
        json={"to_level": "county", "reason": "需要县级协调。"},
        headers=stack.headers(Role.COORDINATOR, OFFICE),
    )
    assert escalated.status_code == 201, escalated.text
    county = stack.listeners[COUNTY]
    wait_for(lambda: bool(notices(county, case_id, "case_escalated")), 30, "the county's notice")
    [notice] = notices(county, case_id, "case_escalated")
    assert notice["body"]["to_level"] == "county"
    assert "需要县级协调" not in json.dumps(notice, ensure_ascii=False)
    # The street's office is told too; the county unit gets no new-clue alerts of the street.
    wait_for(
        lambda: bool(notices(stack.listeners[OFFICE], case_id, "case_escalated")), 30, "office"
    )
    assert notices(county, case_id, "new_clue") == []

    def escalation_units() -> set[str]:
        # Stored by the relay just after the stream's acknowledgement: a client may be faster.
        return {
            f.unit
            for f in facts(stack, NoticePublished)
            if str(f.case_id) == case_id and f.kind == "case_escalated"
        }

    wait_for(lambda: escalation_units() == {OFFICE, COUNTY}, 30, "both facts")
    # The county's client confirmed its receipt, as a member of the county's unit.
    wait_for(
        lambda: any(
            f.unit == COUNTY and str(f.case_id) == case_id for f in facts(stack, NoticeReceived)
        ),
        30,
        "the county's receipt",
    )


def test_a_clue_without_recipients_is_an_undeliverable_fact_counted_in_healthz(
    stack: Stack,
) -> None:
    token = {"Authorization": f"Bearer {stack.token(Role.COORDINATOR, OFFICE)}"}

    def count() -> int:
        answer = httpx.get(f"{stack.api_url}/healthz", headers=token)
        assert answer.status_code == 200
        found: int = answer.json()["undeliverable_notices"]
        return found

    before = count()
    planted = clue("high")
    case_id = report(stack, planted, street=FAR)  # no office, no supervisor in that street

    def about_case() -> list[NoticeUndeliverable]:
        return [f for f in facts(stack, NoticeUndeliverable) if str(f.case_id) == case_id]

    wait_for(lambda: len(about_case()) == 2, 30, "two undeliverable facts")
    found = about_case()
    assert sorted(f.reason for f in found) == ["no_governance_office", "no_street_supervision"]
    assert {(f.street, f.kind, f.unit) for f in found} == {(FAR, "new_clue", None)}
    assert count() == before + 2
    answer = httpx.get(f"{stack.api_url}/healthz", headers=token).text
    for needle in (planted.name, planted.id_number, case_id):
        assert needle not in answer
    with stack.application() as application:
        assert {f.originator_id for f in application.undeliverable_notices(FAR)} == {
            f.originator_id for f in found
        }
        assert application.undeliverable_notices("no-such-street") == []


def test_a_declined_assignment_and_a_result_reach_the_coordination_office(stack: Stack) -> None:
    """A unit's answer to its task (退回 with a reason, 办结反馈) is told to the street's office,
    without the reason's or the outcome's text."""
    case_id = report(stack, clue("medium"))
    coordinator = stack.headers(Role.COORDINATOR, OFFICE)
    member = stack.headers(Role.UNIT_MEMBER, SUPERVISION)
    due = (local_today() + timedelta(days=7)).isoformat()

    def assign(function: str) -> str:
        answer = httpx.post(
            f"{stack.api_url}/v1/cases/{case_id}/assignments",
            json={"unit": SUPERVISION, "function": function, "task": "家访。", "due_on": due},
            headers=coordinator,
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["assignment_id"])

    declined, done = assign("family"), assign("society")
    base = f"{stack.api_url}/v1/cases/{case_id}/assignments"
    reason = "该事项不属本单位职责范围。"
    answer = httpx.post(f"{base}/{declined}/decline", json={"reason": reason}, headers=member)
    assert answer.status_code == 200, answer.text
    assert httpx.post(f"{base}/{done}/acknowledgement", headers=member).status_code == 200
    outcome = "已约谈监护人,情况稳定。"
    answer = httpx.post(
        f"{base}/{done}/result",
        json={"measures": ["home_visit"], "outcome": outcome, "recommendation": "close"},
        headers=member,
    )
    assert answer.status_code == 200, answer.text

    office = stack.listeners[OFFICE]
    wait_for(lambda: bool(notices(office, case_id, "assignment_result")), 30, "the result")
    [decline] = notices(office, case_id, "assignment_declined")
    [result] = notices(office, case_id, "assignment_result")
    assert (decline["body"]["assignment_id"], decline["body"]["unit"]) == (declined, SUPERVISION)
    assert (result["body"]["assignment_id"], result["body"]["recommendation"]) == (done, "close")
    text = office.inbox.read_text(encoding="utf-8")
    assert reason not in text and outcome not in text

    # The unit's client shows the states the API's inbox gives (`casetrail unit inbox`).
    token = stack.root / "supervision-member.token"
    token.write_text(stack.token(Role.UNIT_MEMBER, SUPERVISION), encoding="ascii")
    token.chmod(0o600)

    def answered() -> bool:
        # The inbox reads the ledger, which follows the store (eventually consistent).
        page = ApiReporter(stack.api_url, token.read_text(encoding="ascii")).inbox()
        states = {i["assignment_id"]: i["state"] for i in page["items"]}
        return (states.get(declined), states.get(done)) == ("declined", "result_reported")

    wait_for(answered, 30, "the ledger to hold both answers")
    shown = CliRunner().invoke(
        cli, ["unit", "inbox", "--api", stack.api_url, "--token-file", str(token), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    states = {i["assignment_id"]: i["state"] for i in json.loads(shown.output)["items"]}
    assert (states[declined], states[done]) == ("declined", "result_reported")
    listed = CliRunner().invoke(
        cli, ["unit", "inbox", "--api", stack.api_url, "--token-file", str(token)]
    )
    assert listed.exit_code == 0, listed.output
    assert f"declined         due {due}" in listed.output
