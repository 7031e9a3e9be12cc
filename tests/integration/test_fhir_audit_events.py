"""The FHIR R5 AuditEvent export over HTTP (`GET /v1/compliance/fhir/AuditEvent`), on SQLite and
PostgreSQL: every bundle the tests produce validates with the `fhir.resources` R5 models.

A scenario of each kind of access record (a granted read, a refused read, a break-glass read,
a refused command, a full-identity export) gives a `searchset` Bundle whose AuditEvents carry
the person and the unit as agents, the case as an opaque entity, the purpose of use with its v3
code where one exists, break-glass as BTG, success or failure with the deciding rule, the
service as observer; pages follow the `next` link; filters narrow; no planted value is in any
bundle; the export itself is recorded. The mapping alone (no HTTP) is checked for every purpose
and kind, and the validator is shown to refuse a wrong bundle, so that the checks can fail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from fhir.resources.auditevent import AuditEvent
from fhir.resources.bundle import Bundle
from pydantic import ValidationError

from domain.access import Actor, CaseAccessed, Channel, Client, command_refused
from domain.compliance.records import AccessRecord, RecordKind
from domain.taxonomy import Purpose, Role
from gateway.compliance import fhir
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.compliance_world import OFFICE, SQLITE_ONLY, World, make_world


@pytest.fixture
def world(client: TestClient, settings: Settings, auth: TokenFactory) -> World:
    return make_world(client, settings, auth)


PATH: Final = "/v1/compliance/fhir/AuditEvent"


def validated(document: dict[str, Any]) -> Bundle:
    """The bundle as the R5 models read it (raises when it is not valid FHIR R5)."""
    bundle = Bundle.model_validate(document)
    for entry in bundle.entry or []:
        assert isinstance(entry.resource, AuditEvent)
    return bundle


def _get(world: World, **params: Any) -> dict[str, Any]:
    response = world.client.get(PATH, params=params, headers=world.auditor())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == fhir.MEDIA_TYPE
    document: dict[str, Any] = response.json()
    validated(document)
    return document


def _events(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in document.get("entry", [])]


def _codes(concepts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for concept in concepts for c in concept["coding"]}


def test_every_kind_of_access_as_a_valid_r5_bundle(world: World) -> None:
    client = world.client
    first = world.files[0]
    coordinator = world.headers(Role.COORDINATOR, OFFICE, purpose="consultation")
    assert client.get(f"/v1/cases/{first}", headers=coordinator).status_code == 200
    outsider = world.headers(Role.UNIT_MEMBER, "far-unit", purpose="emergency")
    assert client.get(f"/v1/cases/{first}", headers=outsider).status_code == 404
    glass = client.post(
        f"/v1/cases/{first}/break-glass",
        json={"reason": "孩子今晚失联，需立即联系监护人核实情况"},
        headers=world.headers(Role.UNIT_MEMBER, "far-unit"),
    )
    assert glass.status_code == 200, glass.text
    world.application.store_events(
        [
            command_refused(
                case_id=UUID(first),
                actor=Actor("u-9", Role.UNIT_MEMBER, "far-unit", "chengguan-street"),
                command="close_case",
                rule="not_permitted:unit_member",
                request_id="r-1",
                channel=Channel.API,
                client=Client(address="203.0.113.9", user_agent="test"),
            )
        ]
    )
    assert (
        client.get("/v1/ledger/export?format=json&identity=true", headers=coordinator).status_code
        == 200
    )

    document = _get(world, case_id=first)
    assert document["resourceType"] == "Bundle" and document["type"] == "searchset"
    events = _events(document)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_kind.setdefault(event["code"]["coding"][0]["code"], []).append(event)
    assert set(by_kind) == {"read", "refused_read", "refused_command"}
    for event in events:
        person, unit = event["agent"]
        assert person["requestor"] is True and person["who"]["identifier"]["value"]
        assert unit["who"]["type"] == "Organization"
        assert unit["who"]["identifier"]["value"].startswith("chengguan-street/")
        assert event["entity"][0]["what"]["identifier"] == {
            "system": fhir.CASE_SYSTEM,
            "value": first,
        }
        assert "display" not in event["entity"][0]["what"]
        assert event["source"]["observer"]["identifier"]["value"] == "casetrail"

    read = next(e for e in by_kind["read"] if e["agent"][0]["who"]["identifier"]["value"]
                == f"user-{Role.COORDINATOR}-{OFFICE}")  # fmt: skip
    assert read["outcome"]["code"]["code"] == "0"
    assert (fhir.V3_ACT_REASON, "COC") in _codes(read["authorization"])
    assert (fhir.PURPOSE_SYSTEM, "consultation") in _codes(read["authorization"])

    glass_event = next(
        e for e in by_kind["read"] if (fhir.V3_ACT_REASON, "BTG") in _codes(e["authorization"])
    )
    assert (fhir.V3_ACT_REASON, "ETREAT") in _codes(glass_event["authorization"])
    assert glass_event["outcome"]["detail"][0]["coding"][0]["code"] == "break_glass"

    refused = by_kind["refused_read"][0]
    assert refused["outcome"]["code"]["code"] == "4"
    assert refused["outcome"]["detail"][0]["coding"][0] == {
        "system": fhir.RULE_SYSTEM,
        "code": "break_glass_without_reason",
    }
    command = by_kind["refused_command"][0]
    assert command["action"] == "E" and command["outcome"]["code"]["code"] == "4"
    assert {"command": "close_case"}.items() <= {
        d["type"]["coding"][0]["code"]: d.get("valueString") for d in command["entity"][0]["detail"]
    }.items()

    text = json.dumps(document, ensure_ascii=False)
    for value in world.planted_values():
        assert value not in text


@SQLITE_ONLY
def test_pages_follow_the_next_link_and_filters_narrow(world: World) -> None:
    client = world.client
    coordinator = world.headers(Role.COORDINATOR, OFFICE, purpose="consultation")
    for case_id in world.files:
        for _ in range(2):
            assert client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code == 200
    seen: list[str] = []
    document = _get(world, role="coordinator", limit=3)
    while True:
        seen += [e["id"] for e in _events(document)]
        links = {link["relation"]: link["url"] for link in document["link"]}
        if "next" not in links:
            break
        response = client.get(links["next"], headers=world.auditor())
        assert response.status_code == 200
        document = response.json()
        validated(document)
    assert len(seen) == len(set(seen)) == 4
    only = _get(world, case_id=world.files[1], role="coordinator")
    assert len(_events(only)) == 2
    empty = _get(world, user="nobody")
    assert _events(empty) == [] and validated(empty).entry is None


@SQLITE_ONLY
def test_the_export_is_recorded(world: World) -> None:
    coordinator = world.headers(Role.COORDINATOR, OFFICE, purpose="consultation")
    assert world.client.get(f"/v1/cases/{world.files[0]}", headers=coordinator).status_code == 200
    before = len(world.accesses())
    _get(world, case_id=world.files[0])
    new = world.accesses()[before:]
    assert [str(e.case_id) for e in new] == [world.files[0]]
    assert isinstance(new[0], CaseAccessed) and new[0].rule == "fhir_export:compliance_review"


# --- the mapping alone ---------------------------------------------------------------------------


def _record(kind: RecordKind, purpose: str, *, break_glass: bool = False) -> AccessRecord:
    return AccessRecord(
        position=7,
        event_id=uuid4(),
        at=datetime(2026, 3, 1, 8, 30, tzinfo=UTC),
        kind=kind,
        case_id=uuid4() if purpose else None,
        user="user-1",
        role="coordinator",
        unit="office",
        street="chengguan-street",
        purpose=purpose,
        rule="coordinator_same_street" if kind is RecordKind.READ else "out_of_scope",
        channel="api",
        fields=("minor.name",) if kind is RecordKind.READ else (),
        break_glass=break_glass,
        request_id="r",
        case_version=2,
        client_address="",
        client_user_agent="",
        command="close_case" if kind is RecordKind.REFUSED_COMMAND else "",
    )


@pytest.mark.parametrize("kind", list(RecordKind))
@pytest.mark.parametrize("purpose", [*(str(p) for p in Purpose), ""])
def test_every_purpose_and_kind_maps_to_a_valid_audit_event(kind: RecordKind, purpose: str) -> None:
    record = _record(kind, purpose, break_glass=purpose == "emergency")
    document = fhir.bundle([record], self_url=PATH, next_url=None, total=1)
    bundle = validated(document)
    assert bundle.total == 1
    event = document["entry"][0]["resource"]
    codes = _codes(event.get("authorization", []))
    if purpose in fhir.V3_PURPOSES:
        assert (fhir.V3_ACT_REASON, fhir.V3_PURPOSES[purpose][0]) in codes
    if purpose == "emergency":
        assert (fhir.V3_ACT_REASON, "BTG") in codes
    assert ("entity" in event) == bool(purpose)


def test_the_validator_refuses_a_wrong_bundle() -> None:
    """The checks above can fail: R4's name for the purpose, or a missing observer, is refused."""
    document = fhir.bundle([_record(RecordKind.READ, "consultation")], self_url=PATH, next_url=None)
    event = document["entry"][0]["resource"]
    event["purposeOfEvent"] = event.pop("authorization")
    with pytest.raises(ValidationError):
        validated(document)
    document = fhir.bundle([_record(RecordKind.READ, "consultation")], self_url=PATH, next_url=None)
    del document["entry"][0]["resource"]["source"]["observer"]
    with pytest.raises(ValidationError):
        validated(document)
