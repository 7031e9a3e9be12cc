"""Investigations over real HTTP (the real ASGI app, a real SQLite file; the main path also on
PostgreSQL): the minor's files linked through the blind index, county orders the street can
neither see nor revoke, point-in-time reads for order holders only (every one recorded),
findings and rectifications stored, bad input answered 422 naming the field with nothing
stored (`gateway/http/routes/investigations.py`, `domain/investigations.py`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from domain.access import COUNTY_ORDER_RULE, AccessDenied, Actor, CaseAccessed
from domain.application import CaseTrail
from domain.clock import local_today
from domain.investigations import Investigation
from domain.orders import county_order_id
from domain.taxonomy import Role
from gateway import keyring
from gateway.auth import issue_token
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.integration.planted import Planted, planted_case
from tests.people import ensure_registered

STREET, FAR_STREET = "chengguan-street", "xiaoxi-street"
LEAD = Actor("lead-1", Role.COUNTY_LEAD, "county-office", "county")
ADMIN = Actor("admin-1", Role.ADMIN, "county-admin", "county")
INVESTIGATOR = Actor("inv-1", Role.INVESTIGATOR, "county-team", "county")
OTHER_INVESTIGATOR = Actor("inv-2", Role.INVESTIGATOR, "county-team", "county")
COORDINATOR = Actor("coord-1", Role.COORDINATOR, "office", STREET)
FAR_COORDINATOR = Actor("coord-far", Role.COORDINATOR, "far-office", FAR_STREET)
AUDITOR = Actor("auditor-1", Role.COMPLIANCE_AUDITOR, "county-audit", "county")


@dataclass
class World:
    client: TestClient
    key: Any

    @property
    def application(self) -> CaseTrail:
        found: CaseTrail = self.client.app.state.services.application  # type: ignore[attr-defined]
        return found

    def headers(self, actor: Actor, purpose: str | None = None) -> dict[str, str]:
        ensure_registered(self.application, actor.user, actor.role, actor.unit, actor.street)
        token = issue_token(
            self.key, user=actor.user, role=actor.role, unit=actor.unit, street=actor.street
        )
        found = {"Authorization": f"Bearer {token}"}
        if purpose:
            found["X-Purpose-Of-Use"] = purpose
        return found

    def report(self, body: dict[str, Any], street: str) -> str:
        reporter = Actor(f"reporter-{street}", Role.REPORTER, body["minor"]["village"], street)
        response = self.client.post("/v1/cases", json=body, headers=self.headers(reporter))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def synced(self) -> None:
        self.client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]

    def end(self) -> int:
        return self.application.recorder.max_notification_id() or 0

    def open(self, planted: Planted, investigators: list[str], by: Actor = LEAD) -> Any:
        return self.client.post(
            "/v1/investigations",
            json=open_body(planted, investigators),
            headers=self.headers(by),
        )

    def access(self, case_id: str, request_id: str) -> CaseAccessed | AccessDenied:
        (event,) = [
            e for e in self.application.access_events(UUID(case_id)) if e.request_id == request_id
        ]
        return event


def open_body(planted: Planted, investigators: list[str]) -> dict[str, Any]:
    return {
        "kind": "attempted_suicide",
        "incident_on": local_today().isoformat(),
        "minor": {"id_number": planted.id_number},
        "investigators": investigators,
        "reason": "学生自伤事件后的一案一倒查。",
        "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }


def make_world(home: Path, database_url: str | None = None) -> Iterator[World]:
    keyring.init_keys(home / "keys")
    env = {"CASETRAIL_HOME": str(home)}
    if database_url:
        env["CASETRAIL_DATABASE_URL"] = database_url
    with TestClient(create_app(Settings.from_env(env)), raise_server_exceptions=False) as client:
        key = keyring.load_private_key(home / "keys" / keyring.TOKEN_KEY, "token key")
        yield World(client, key)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    """On SQLite and on PostgreSQL (the conftest's `settings`)."""
    yield from make_world(settings.home, settings.database_url)


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory.mktemp("investigations"))


def two_files_of_one_minor(world: World) -> tuple[Planted, str, str, str]:
    """A minor with a file in each of two streets, and another minor's file."""
    planted = planted_case()
    first = world.report(planted.body, STREET)
    far_body = {**planted.body, "minor": {**planted.body["minor"], "village": "v-far"}}
    second = world.report(far_body, FAR_STREET)
    other = world.report(planted_case().body, STREET)
    world.synced()
    return planted, first, second, other


# --- the main path, on SQLite and PostgreSQL ----------------------------------------------------


def test_an_investigation_links_the_minors_files_and_its_investigator_reads_them_as_of(
    world: World,
) -> None:
    planted, first, second, other = two_files_of_one_minor(world)
    before_report = datetime.now(UTC) - timedelta(days=1)
    as_reported = datetime.now(UTC)
    time.sleep(0.01)
    visit = world.client.post(
        f"/v1/cases/{first}/follow-ups",
        json={"visited_on": local_today().isoformat(), "notes": "事件后家访。"},
        headers=world.headers(COORDINATOR),
    )
    assert visit.status_code == 201, visit.text

    opened = world.open(planted, [INVESTIGATOR.user])
    assert opened.status_code == 201, opened.text
    investigation_id = opened.json()["id"]
    assert sorted(opened.json()["case_ids"]) == sorted([first, second])
    assert opened.headers["Location"] == f"/v1/investigations/{investigation_id}"
    assert planted.id_number not in opened.text

    reader = world.headers(INVESTIGATOR, "investigation")
    now = world.client.get(f"/v1/cases/{first}", headers=reader)
    assert now.status_code == 200, now.text
    assert len(now.json()["follow_ups"]) == 1
    assert world.access(first, now.headers["X-Request-ID"]).rule == COUNTY_ORDER_RULE
    assert world.client.get(f"/v1/cases/{other}", headers=reader).status_code == 404

    then = world.client.get(
        f"/v1/cases/{first}", params={"as_of": as_reported.isoformat()}, headers=reader
    )
    assert then.status_code == 200, then.text
    assert then.json()["version"] == 1
    assert then.json()["follow_ups"] == []
    assert then.json()["minor"]["id_number"] == planted.id_number
    granted = world.access(first, then.headers["X-Request-ID"])
    assert isinstance(granted, CaseAccessed)
    assert granted.rule == f"{COUNTY_ORDER_RULE}:as_of:1"
    assert granted.purpose == "investigation"
    # The version disclosed, not the file's current one (2, after the follow-up).
    assert granted.case_version == 1
    assert world.access(first, now.headers["X-Request-ID"]).case_version == 2

    too_early = world.client.get(
        f"/v1/cases/{first}", params={"as_of": before_report.isoformat()}, headers=reader
    )
    assert too_early.status_code == 404
    assert too_early.json()["type"] == "urn:casetrail:problem:case-not-found"
    refused = world.access(first, too_early.headers["X-Request-ID"])
    assert isinstance(refused, AccessDenied) and refused.rule == "no_such_case_as_of"

    # The workbench answers under a county order as under a street's order.
    for view in ("timeline", "knowledge", "deadlines"):
        answered = world.client.get(f"/v1/cases/{first}/{view}", headers=reader)
        assert answered.status_code == 200, (view, answered.text)
        stored = [
            e
            for e in world.application.access_events(UUID(first))
            if e.request_id == answered.headers["X-Request-ID"]
        ]
        assert stored and {e.rule for e in stored} == {COUNTY_ORDER_RULE}

    street = world.client.get(
        f"/v1/cases/{first}",
        params={"as_of": as_reported.isoformat()},
        headers=world.headers(COORDINATOR, "consultation"),
    )
    assert street.status_code == 404
    assert world.access(first, street.headers["X-Request-ID"]).rule == (
        "as_of_not_for_role:coordinator"
    )

    finding = world.client.post(
        f"/v1/investigations/{investigation_id}/findings",
        json={
            "duty": "24小时内问题会商",
            "unit": "office",
            "person": "coord-1",
            "determination": "late",
            "evidence": [1, 2],
            "note": "会商晚于规定时限。",
        },
        headers=world.headers(INVESTIGATOR),
    )
    assert finding.status_code == 201, finding.text
    item = world.client.post(
        f"/v1/investigations/{investigation_id}/rectifications",
        json={
            "item": "完善会商提醒机制。",
            "owner": "街道综治中心",
            "due_on": local_today().isoformat(),
        },
        headers=world.headers(LEAD),
    )
    assert item.status_code == 201, item.text
    done = world.client.post(
        f"/v1/investigations/{investigation_id}/rectifications/{item.json()['item_id']}/completion",
        json={"completed_on": local_today().isoformat(), "note": "已完成。"},
        headers=world.headers(LEAD),
    )
    assert done.status_code == 200, done.text

    shown = world.client.get(
        f"/v1/investigations/{investigation_id}", headers=world.headers(INVESTIGATOR)
    )
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["minor"]["id_number"] == planted.id_number
    assert body["findings"][0]["determination"] == "late"
    assert body["findings"][0]["evidence"] == [1, 2]
    assert body["rectifications"][0]["completed"]["on"] == local_today().isoformat()
    assert {o["case_id"] for o in body["orders"]} == {first, second}
    for case_id in (first, second):
        disclosed = world.access(case_id, shown.headers["X-Request-ID"])
        assert isinstance(disclosed, CaseAccessed)
        assert disclosed.rule == "investigation_member"
        assert set(disclosed.fields) == {"minor.id_number", "minor.name"}

    county = world.client.get(f"/v1/investigations/{investigation_id}", headers=world.headers(LEAD))
    assert county.status_code == 200
    assert "minor" not in county.json()
    assert planted.id_number not in county.text



def test_an_earlier_investigation_cannot_revoke_the_order_a_later_one_holds(
    sqlite_world: World,
) -> None:
    """County orders are one stream per (file, investigator): a second investigation of the
    same minor renews it and holds it; the first may no longer revoke it."""
    world = sqlite_world
    planted, first, _, _ = two_files_of_one_minor(world)
    earlier = world.open(planted, [INVESTIGATOR.user]).json()["id"]
    later = world.open(planted, [INVESTIGATOR.user]).json()["id"]
    order = county_order_id(UUID(first), INVESTIGATOR.user)
    position = world.application.recorder.max_notification_id()

    refused = world.client.post(
        f"/v1/investigations/{earlier}/orders/{order}/revocation",
        json={"reason": "调查结束。"},
        headers=world.headers(LEAD),
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "urn:casetrail:problem:order-not-active"
    assert world.application.recorder.max_notification_id() == position
    reader = world.headers(INVESTIGATOR, "investigation")
    assert world.client.get(f"/v1/cases/{first}", headers=reader).status_code == 200

    revoked = world.client.post(
        f"/v1/investigations/{later}/orders/{order}/revocation",
        json={"reason": "调查结束。"},
        headers=world.headers(LEAD),
    )
    assert revoked.status_code == 200, revoked.text

# --- the street under review ----------------------------------------------------------------------


def test_the_street_can_neither_see_nor_revoke_a_county_order(sqlite_world: World) -> None:
    world = sqlite_world
    planted, first, _, _ = two_files_of_one_minor(world)
    opened = world.open(planted, [INVESTIGATOR.user])
    investigation_id = opened.json()["id"]
    order = county_order_id(UUID(first), INVESTIGATOR.user)
    assert str(order) in opened.json()["orders"]

    street = world.headers(COORDINATOR)
    revoke = {"reason": "街道撤销。"}
    county_order = world.client.post(
        f"/v1/investigation-orders/{order}/revocation", json=revoke, headers=street
    )
    missing = uuid4()
    unknown = world.client.post(
        f"/v1/investigation-orders/{missing}/revocation", json=revoke, headers=street
    )
    assert county_order.status_code == unknown.status_code
    assert county_order.json()["type"] == unknown.json()["type"]
    assert county_order.json()["detail"].replace(str(order), "<id>") == unknown.json()[
        "detail"
    ].replace(str(missing), "<id>")
    for path in (
        f"/v1/investigations/{investigation_id}",
        f"/v1/investigations/{uuid4()}",
    ):
        seen = world.client.get(path, headers=world.headers(COORDINATOR, "consultation"))
        assert seen.status_code == 404
        assert seen.json()["type"] == "urn:casetrail:problem:investigation-not-found"
    revoked_by_street = world.client.post(
        f"/v1/investigations/{investigation_id}/orders/{order}/revocation",
        json=revoke,
        headers=street,
    )
    assert revoked_by_street.status_code == 403

    reader = world.headers(INVESTIGATOR, "investigation")
    read = world.client.get(f"/v1/cases/{first}", headers=reader)
    assert read.status_code == 200
    # The street's view of accesses (if a street role is ever given one) leaves the read out;
    # compliance auditors see it.
    log = world.client.get(
        f"/v1/cases/{first}/accesses", headers=world.headers(AUDITOR, "compliance_review")
    )
    assert log.status_code == 200
    assert COUNTY_ORDER_RULE in {e["rule"] for e in log.json()["access_log"]}

    revoked = world.client.post(
        f"/v1/investigations/{investigation_id}/orders/{order}/revocation",
        json={"reason": "调查结束。"},
        headers=world.headers(LEAD),
    )
    assert revoked.status_code == 200, revoked.text
    assert world.client.get(f"/v1/cases/{first}", headers=reader).status_code == 404


def test_only_the_county_opens_and_only_the_named_read(sqlite_world: World) -> None:
    world = sqlite_world
    planted, first, _, _ = two_files_of_one_minor(world)
    assert world.open(planted, [INVESTIGATOR.user], by=COORDINATOR).status_code == 403
    assert world.open(planted, [INVESTIGATOR.user], by=INVESTIGATOR).status_code == 403
    by_admin = world.open(planted, [OTHER_INVESTIGATOR.user], by=ADMIN)
    assert by_admin.status_code == 201, by_admin.text
    investigation_id = by_admin.json()["id"]

    before = world.end()
    stranger = world.client.get(
        f"/v1/investigations/{investigation_id}", headers=world.headers(INVESTIGATOR)
    )
    assert stranger.status_code == 404
    assert world.end() == before + 1  # the refusal, stored first
    (stored_refusal,) = world.application.recorder.select_notifications(start=before + 1, limit=1)
    refusal = world.application.mapper.to_domain_event(stored_refusal)
    assert isinstance(refusal, AccessDenied)
    assert refusal.rule == "investigation_not_for_reader:investigator"
    assert refusal.request_id == stranger.headers["X-Request-ID"]
    finding = world.client.post(
        f"/v1/investigations/{investigation_id}/findings",
        json={"duty": "签收", "unit": "police", "person": "p", "determination": "fulfilled",
              "evidence": [], "note": "按时签收。"},
        headers=world.headers(INVESTIGATOR),
    )  # fmt: skip
    assert finding.status_code == 404

    # One more file of the minor, reported later: an order covering the minor links it.
    late = world.report(planted.body, STREET)
    world.synced()
    assert (
        world.client.get(
            f"/v1/cases/{late}", headers=world.headers(OTHER_INVESTIGATOR, "investigation")
        ).status_code
        == 404
    )
    expires = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    covering = world.client.post(
        f"/v1/investigations/{investigation_id}/orders",
        json={"investigator": OTHER_INVESTIGATOR.user, "minor": True, "reason": "补充。",
              "expires_at": expires},
        headers=world.headers(LEAD),
    )  # fmt: skip
    assert covering.status_code == 201, covering.text
    assert (
        world.client.get(
            f"/v1/cases/{late}", headers=world.headers(OTHER_INVESTIGATOR, "investigation")
        ).status_code
        == 200
    )
    one = world.client.post(
        f"/v1/investigations/{investigation_id}/orders",
        json={"investigator": INVESTIGATOR.user, "case_id": first, "reason": "单案。",
              "expires_at": expires},
        headers=world.headers(LEAD),
    )  # fmt: skip
    assert one.status_code == 201, one.text
    assert one.json()["orders"] == [str(county_order_id(UUID(first), INVESTIGATOR.user))]
    stored = world.application.investigation(UUID(investigation_id))
    assert isinstance(stored, Investigation)
    assert late in stored.case_ids
    assert INVESTIGATOR.user in stored.investigators


# --- bad input: 422 naming the field, nothing stored ----------------------------------------------


def _bad_opening(planted: Planted) -> list[tuple[dict[str, Any], str]]:
    good = open_body(planted, [INVESTIGATOR.user])
    far = (datetime.now(UTC) + timedelta(days=91)).isoformat()
    return [
        ({**good, "kind": "accident"}, "kind"),
        ({**good, "minor": {"id_number": "110101200001011234"}}, "minor.id_number"),
        ({**good, "investigators": []}, "investigators"),
        ({**good, "incident_on": (local_today() + timedelta(days=2)).isoformat()}, "incident_on"),
        ({**good, "expires_at": far}, "expires_at"),
        ({**good, "expires_at": "2026-05-01T08:00:00"}, "expires_at"),
        ({**good, "extra": 1}, "body"),
    ]


def test_bad_input_is_refused_by_field_and_stores_nothing(sqlite_world: World) -> None:
    world = sqlite_world
    planted, first, _, _ = two_files_of_one_minor(world)
    for body, field in _bad_opening(planted):
        before = world.end()
        response = world.client.post("/v1/investigations", json=body, headers=world.headers(LEAD))
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in {e["field"] for e in response.json()["errors"]}, response.text
        assert planted.id_number not in response.text
        assert world.end() == before

    investigation_id = world.open(planted, [INVESTIGATOR.user]).json()["id"]
    base = f"/v1/investigations/{investigation_id}"
    finding = {"duty": "会商", "unit": "office", "person": "p", "determination": "late",
               "evidence": [1], "note": "n"}  # fmt: skip
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("/findings", {**finding, "determination": "maybe"}, "determination"),
        ("/findings", {**finding, "evidence": [0]}, "evidence.0"),
        ("/findings", {**finding, "evidence": [1, 2**53 + 1]}, "evidence.1"),
        ("/findings", {**finding, "evidence": [world.end() + 1000]}, "evidence.0"),
        ("/findings", {**finding, "unit": "Not A Code"}, "unit"),
        ("/rectifications", {"item": "i", "owner": "o", "due_on": "1999-01-01"}, "due_on"),
        ("/rectifications", {"item": "", "owner": "o", "due_on": "2026-01-01"}, "item"),
        ("/orders", {"investigator": "inv-3", "reason": "r",
                     "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
         "minor"),
        ("/orders", {"investigator": "inv-3", "reason": "r", "case_id": str(uuid4()),
                     "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
         "case_id"),
    ]  # fmt: skip
    for suffix, body, field in bad:
        before = world.end()
        response = world.client.post(base + suffix, json=body, headers=world.headers(LEAD))
        assert response.status_code == 422, (suffix, field, response.text)
        assert field in {e["field"] for e in response.json()["errors"]}, response.text
        assert world.end() == before
    before = world.end()
    unknown = world.client.post(
        f"{base}/rectifications/{uuid4()}/completion",
        json={"completed_on": local_today().isoformat(), "note": "n"},
        headers=world.headers(LEAD),
    )
    assert unknown.status_code == 404
    naive = world.client.get(
        f"/v1/cases/{first}",
        params={"as_of": "2026-05-01T08:00:00"},
        headers=world.headers(INVESTIGATOR, "investigation"),
    )
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "as_of"
    assert world.end() == before


def test_concurrent_writes_to_one_investigation_are_all_stored(sqlite_world: World) -> None:
    world = sqlite_world
    planted, _, _, _ = two_files_of_one_minor(world)
    investigation_id = world.open(planted, [INVESTIGATOR.user]).json()["id"]

    def add(n: int) -> int:
        response = world.client.post(
            f"/v1/investigations/{investigation_id}/rectifications",
            json={"item": f"整改事项{n}。", "owner": "街道", "due_on": local_today().isoformat()},
            headers=world.headers(LEAD),
        )
        return int(response.status_code)

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(add, range(12)))
    assert statuses == [201] * 12
    stored = world.application.investigation(UUID(investigation_id))
    assert sorted(r["item"] for r in stored.rectifications.values()) == sorted(
        f"整改事项{n}。" for n in range(12)
    )
