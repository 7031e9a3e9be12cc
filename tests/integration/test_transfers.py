"""Transfers over HTTP (issue 17), on SQLite and PostgreSQL: a file moved to another street is
seen by the receiving street's coordinator from then on, by the sending street's coordinator,
reporter and units for the grace period, and then no more (a grace of about two seconds here,
waited out); both streets' transfer lists show it (out / in), the ledgers and the quarterly
reports count it in the receiving street only; the relay notifies the receiving street's
governance office with ids only."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.case import Case
from domain.clock import local_today
from domain.taxonomy import Role
from gateway.messaging.relay import TRANSFERRED_KIND, Directory, Router
from gateway.settings import Settings
from projections.readmodels import ReadModels
from tests.conftest import TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import planted_case
from tests.integration.test_corrections import stored_bytes

STREET, OTHER = "chengguan-street", "xiaoxi-street"
VILLAGE, OTHER_VILLAGE = "dongshan-village", "xiaoxi-village"
OFFICE, OTHER_OFFICE = "chengguan-governance-office", "xiaoxi-governance-office"
POLICE = "chengguan-police-station"
GRACE_SECONDS = 2.2


@pytest.fixture
def settings(home: Path, store_url: str) -> Settings:
    return Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": store_url,
            "CASETRAIL_ASSIGNMENT_GRACE_HOURS": str(GRACE_SECONDS / 3600),
        }
    )


def application_of(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def synced(client: TestClient) -> ReadModels:
    readmodels: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()
    return readmodels


def test_a_transfer_moves_who_sees_the_file_and_the_grace_period_ends(
    client: TestClient, auth: TokenFactory, settings: Settings
) -> None:
    application = application_of(client)
    register_units(application, POLICE, OFFICE)
    register_units(application, OTHER_OFFICE, street=OTHER)
    sending = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    receiving = auth(Role.COORDINATOR, OTHER_OFFICE, street=OTHER, purpose="consultation")
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    police = auth(Role.UNIT_MEMBER, POLICE, purpose="intervention")
    planted = planted_case(VILLAGE, 2424)
    case_id = client.post("/v1/cases", json=planted.body, headers=reporter).json()["id"]
    assigned = client.post(
        f"/v1/cases/{case_id}/assignments",
        json={
            "unit": POLICE,
            "function": "judicial",
            "task": "核查情况",
            "due_on": (local_today() + timedelta(days=7)).isoformat(),
        },
        headers=sending,
    )
    assert assigned.status_code == 201, assigned.text
    assert client.get(f"/v1/cases/{case_id}", headers=receiving).status_code == 404

    # Only the sending street's coordinator may transfer; to another street, a village there.
    body = {"to_street": OTHER, "to_village": OTHER_VILLAGE, "reason": "随父母迁居"}
    for headers in (receiving, reporter, police):
        refused = client.post(f"/v1/cases/{case_id}/transfer", json=body, headers=headers)
        assert refused.status_code in (403, 404), refused.text
    no_village = client.post(
        f"/v1/cases/{case_id}/transfer",
        json={"to_street": OTHER, "reason": "迁居"},
        headers=sending,
    )
    assert no_village.status_code == 422 and "to_village" in no_village.text
    moved = client.post(f"/v1/cases/{case_id}/transfer", json=body, headers=sending)
    assert moved.status_code == 200, moved.text
    moved_at = time.monotonic()

    def rule(headers: dict[str, str]) -> str | None:
        answer = client.get(f"/v1/cases/{case_id}", headers=headers)
        if answer.status_code != 200:
            assert answer.status_code == 404, answer.text
            return None
        log = application.access_log(UUID(case_id))
        return str(log[-1]["rule"])

    assert rule(receiving) == "coordinator_same_street"
    assert rule(sending) == "coordinator_transferred_grace"
    assert rule(reporter) == "reporter_transferred_grace"
    assert rule(police) == "unit_member_grace"
    answer = client.get(f"/v1/cases/{case_id}", headers=receiving).json()
    assert answer["street"] == OTHER and answer["village"] == OTHER_VILLAGE
    (transfer,) = answer["transfers"]
    assert (transfer["from_street"], transfer["to_street"]) == (STREET, OTHER)
    (assignment,) = answer["assignments"]
    assert assignment["ended"]["outcome"] == "transferred"
    # The receiving coordinator may act on it now; the sending one no longer.
    follow = {"visited_on": local_today().isoformat(), "notes": "已到新住址走访。"}
    assert (
        client.post(f"/v1/cases/{case_id}/follow-ups", json=follow, headers=receiving).status_code
        == 201
    )
    refused = client.post(f"/v1/cases/{case_id}/follow-ups", json=follow, headers=sending)
    assert refused.status_code in (403, 404)

    # Ledgers, transfer lists and reports: the receiving street's, out and in.
    readmodels = synced(client)
    held = stored_bytes(settings, readmodels)
    for what, value in planted.needles().items():
        assert value not in held, what
    ledger_of = {
        name: {r["id"] for r in client.get("/v1/ledger", headers=h).json()["rows"]}
        for name, h in (("sending", sending), ("receiving", receiving))
    }
    assert ledger_of == {"sending": set(), "receiving": {case_id}}
    for headers, direction in ((sending, "out"), (receiving, "in")):
        listed = client.get("/v1/transfers", headers=headers)
        assert listed.status_code == 200, listed.text
        (row,) = listed.json()["transfers"]
        assert row["id"] == case_id and row["direction"] == direction
    for headers, files in ((sending, 0), (receiving, 1)):
        report = client.get("/v1/reports/quarterly", headers=headers).json()
        assert report["files"] == files, report
    assert client.get("/v1/transfers", headers=police).status_code == 403

    # The grace period ends: the sending side no longer sees the file.
    time.sleep(max(0.0, GRACE_SECONDS + 0.3 - (time.monotonic() - moved_at)))
    assert rule(sending) is None
    assert rule(reporter) is None
    assert rule(police) is None
    assert rule(receiving) == "coordinator_same_street"
    stored: object = application.repository.get(UUID(case_id))
    assert isinstance(stored, Case) and stored.street == OTHER


def test_the_relay_tells_the_receiving_street_s_office_ids_only(
    client: TestClient, auth: TokenFactory
) -> None:
    application = application_of(client)
    register_units(application, OFFICE)
    register_units(application, OTHER_OFFICE, street=OTHER)
    sending = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    planted = planted_case(VILLAGE, 2525)
    case_id = client.post("/v1/cases", json=planted.body, headers=sending).json()["id"]
    body = {"to_street": OTHER, "to_village": OTHER_VILLAGE, "reason": "随父母迁居"}
    assert (
        client.post(f"/v1/cases/{case_id}/transfer", json=body, headers=sending).status_code == 200
    )
    directory = Directory(application)
    directory.load()
    router = Router(application, directory)
    (event,) = [
        e
        for e in application.events.get(UUID(case_id))
        if isinstance(e, Case.Transferred)  # type: ignore[attr-defined]
    ]
    routed = router.routed(event)
    assert routed.undeliverable == []
    (notice,) = routed.outgoing
    assert notice.recipient.unit_id == OTHER_OFFICE and notice.kind == TRANSFERRED_KIND
    assert notice.body == {
        "case_ref": case_id,
        "from_street": STREET,
        "to_street": OTHER,
        "to_village": OTHER_VILLAGE,
        "transferred_at": event.timestamp.isoformat(),
    }
    for value in planted.needles().values():
        assert value.decode() not in repr(notice.body)


def test_a_transfer_to_a_street_no_unit_is_registered_in_is_refused(
    client: TestClient, auth: TokenFactory
) -> None:
    """A street code no registered unit belongs to (a typo, a street not yet set up): 422
    naming `to_street`, nothing stored; the file would be seen by nobody there."""
    application = application_of(client)
    register_units(application, OFFICE)
    register_units(application, OTHER_OFFICE, street=OTHER)
    sending = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    planted = planted_case(VILLAGE, 2626)
    case_id = client.post("/v1/cases", json=planted.body, headers=sending).json()["id"]
    position = application.recorder.max_notification_id()
    body = {"to_street": "nowhere-street", "to_village": OTHER_VILLAGE, "reason": "迁居"}
    refused = client.post(f"/v1/cases/{case_id}/transfer", json=body, headers=sending)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["errors"][0]["field"] == "to_street"
    assert application.recorder.max_notification_id() == position
    assert application.repository.get(UUID(case_id)).street == STREET


def test_an_undeliverable_assignment_after_a_transfer_names_the_receiving_street(
    client: TestClient, auth: TokenFactory
) -> None:
    """A unit the relay does not know yet (registered after its directory was loaded) is
    assigned a transferred file by the receiving street: the undeliverable notice is labelled
    with the street the file is in at that event, so it lands in that street's worklist."""
    application = application_of(client)
    register_units(application, OFFICE)
    register_units(application, OTHER_OFFICE, street=OTHER)
    sending = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    receiving = auth(Role.COORDINATOR, OTHER_OFFICE, street=OTHER, purpose="consultation")
    planted = planted_case(VILLAGE, 2727)
    case_id = client.post("/v1/cases", json=planted.body, headers=sending).json()["id"]
    body = {"to_street": OTHER, "to_village": OTHER_VILLAGE, "reason": "随父母迁居"}
    moved = client.post(f"/v1/cases/{case_id}/transfer", json=body, headers=sending)
    assert moved.status_code == 200, moved.text
    directory = Directory(application)
    directory.load()
    other_police = "xiaoxi-police-station"
    register_units(application, other_police, street=OTHER)
    assigned = client.post(
        f"/v1/cases/{case_id}/assignments",
        json={
            "unit": other_police,
            "function": "judicial",
            "task": "核查情况",
            "due_on": (local_today() + timedelta(days=7)).isoformat(),
        },
        headers=receiving,
    )
    assert assigned.status_code == 201, assigned.text
    (event,) = [
        e
        for e in application.events.get(UUID(case_id))
        if isinstance(e, Case.UnitAssigned)  # type: ignore[attr-defined]
    ]
    routed = Router(application, directory).routed(event)
    assert routed.outgoing == []
    (undeliverable,) = routed.undeliverable
    assert (undeliverable.reason, undeliverable.unit) == ("unit_not_registered", other_police)
    assert undeliverable.street == OTHER
