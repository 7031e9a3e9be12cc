"""The compliance reports' scenario world, shared by their tests (test_disclosures.py,
test_fhir_audit_events.py, tests/reports/test_annual_report.py): two files of the same child
(the same ID number, planted values) and one of another child, reported over HTTP through the
real ASGI app; tokens of any role and user; the store's access events as the tests check them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pytest
from fastapi.testclient import TestClient

from domain.access import AccessDenied, CaseAccessed
from domain.application import CaseTrail
from domain.taxonomy import Role
from gateway.settings import Settings
from projections.readmodels import ReadModels
from tests.conftest import TokenFactory
from tests.integration.planted import Planted, planted_case

VILLAGE: Final = "dongshan-village"
OFFICE: Final = "chengguan-governance-office"
# What a client may send as its User-Agent, which access records keep and the reports show.
FORMULA: Final = '=HYPERLINK("http://attacker.example/x","click")'
# Tests whose point is not storage run on SQLite only (the scenario's storage-bound checks run
# on both: the accounting, the access reports, the FHIR bundle, the annual counts).
SQLITE_ONLY: Final = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@dataclass
class World:
    client: TestClient
    settings: Settings
    auth: TokenFactory
    child: Planted
    other: Planted
    files: list[str]
    other_file: str

    def headers(
        self,
        role: Role,
        unit: str,
        *,
        user: str | None = None,
        purpose: str | None = None,
        agent: str | None = None,
    ) -> dict[str, str]:
        """A fresh token for a registered user (the `auth` fixture), the purpose, and the
        client's User-Agent when given."""
        found: dict[str, str] = self.auth(role, unit, user=user, purpose=purpose)
        if agent is not None:
            found["User-Agent"] = agent
        return found

    def auditor(self) -> dict[str, str]:
        return self.headers(
            Role.COMPLIANCE_AUDITOR, "county-audit", user="auditor-1", purpose="compliance_review"
        )

    @property
    def application(self) -> CaseTrail:
        found: CaseTrail = self.client.app.state.services.application  # type: ignore[attr-defined]
        return found

    @property
    def readmodels(self) -> ReadModels:
        found: ReadModels = self.client.app.state.services.readmodels  # type: ignore[attr-defined]
        return found

    def accesses(self) -> list[CaseAccessed | AccessDenied]:
        decode = self.application.mapper.to_domain_event
        found = []
        for notification in self.application.notifications():
            event = decode(notification)
            if isinstance(event, CaseAccessed | AccessDenied):
                found.append(event)
        return found

    def planted_values(self) -> list[str]:
        values = []
        for planted in (self.child, self.other):
            minor = planted.body["minor"]
            values += [minor["name"], minor["id_number"], minor["school"], planted.description]
            values += [g["name"] for g in planted.body["guardians"]]
            values += [g["phone"] for g in planted.body["guardians"]]
        return values


def _report(client: TestClient, world_headers: dict[str, str], body: dict[str, Any]) -> str:
    response = client.post("/v1/cases", json=body, headers=world_headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def make_world(client: TestClient, settings: Settings, auth: TokenFactory) -> World:
    child = planted_case(VILLAGE, seed=7)
    second = planted_case(VILLAGE, seed=8).body
    second["minor"] = dict(child.body["minor"])  # the same child, another clue
    other = planted_case(VILLAGE, seed=9)
    found = World(client, settings, auth, child, other, [], "")
    reporter = found.headers(Role.REPORTER, VILLAGE)
    found.files = [_report(client, reporter, child.body), _report(client, reporter, second)]
    found.other_file = _report(client, reporter, other.body)
    found.readmodels.catch_up()  # the ledger finds the files (exports, the blind index)
    return found
