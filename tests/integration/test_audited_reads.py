"""Foundation, over real HTTP through the ASGI app, on SQLite and PostgreSQL:
report, audited read, refusals recorded, and no disclosure when the record cannot be stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from fastapi.testclient import TestClient

from domain.access import AccessDenied, CaseAccessed
from domain.application import CaseTrail
from domain.taxonomy import Role
from gateway.cli.main import DEFAULT_STREET
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.conftest import PG_DSN, TokenFactory
from tests.integration.planted import planted_case
from tests.people import fixture_user, register

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"


def application_of(client: TestClient) -> CaseTrail:
    app: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return app


def answer_keys(fields: list[str]) -> tuple[set[str], set[str]]:
    """Field ids as the answer shows them: ('minor.name', 'issues.mental_health', 'id') ->
    top-level keys {'minor', 'issues', 'id'} and minor keys {'name'}."""
    top = {f.split(".")[0] for f in fields}
    minor = {f.removeprefix("minor.") for f in fields if f.startswith("minor.")}
    return top, minor


def assert_answer_matches_fields(answer: dict[str, Any], fields: list[str]) -> None:
    top, minor = answer_keys(fields)
    assert set(answer) == top
    assert set(answer.get("minor", {})) == minor


def test_clue_reported_and_read_back_leaves_an_access_event(
    client: TestClient, auth: TokenFactory
) -> None:
    planted = planted_case()
    created = client.post("/v1/cases", json=planted.body, headers=auth(Role.REPORTER, VILLAGE))
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    assert created.headers["Location"] == f"/v1/cases/{case_id}"

    read = client.get(
        f"/v1/cases/{case_id}", headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    )
    assert read.status_code == 200, read.text
    answer = read.json()
    assert answer["minor"]["name"] == planted.name
    assert answer["minor"]["id_number"] == planted.id_number
    assert answer["description"] == planted.description

    events = application_of(client).access_events(UUID(case_id))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, CaseAccessed)
    assert_answer_matches_fields(answer, event.fields)
    assert event.purpose == "follow_up"
    assert event.actor["role"] == "reporter"
    assert event.actor["unit"] == VILLAGE
    assert event.request_id == read.headers["X-Request-ID"]


def test_coordinator_of_the_street_reads_every_field(
    client: TestClient, auth: TokenFactory
) -> None:
    case_id = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    ).json()["id"]
    read = client.get(
        f"/v1/cases/{case_id}", headers=auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    )
    assert read.status_code == 200
    assert {"minor", "guardians", "description", "issues", "status"} <= read.json().keys()


def test_refusals_are_recorded_and_look_like_a_missing_case(
    client: TestClient, auth: TokenFactory
) -> None:
    case_id = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    ).json()["id"]
    missing_id = "00000000-0000-4000-8000-000000000001"
    outsider = auth(Role.REPORTER, "xihe-village", purpose="follow_up")
    other_street = auth(Role.COORDINATOR, "far-office", street="far-street", purpose="consultation")

    not_yours = client.get(f"/v1/cases/{case_id}", headers=outsider)
    not_there = client.get(f"/v1/cases/{missing_id}", headers=outsider)
    wrong_street = client.get(f"/v1/cases/{case_id}", headers=other_street)

    for response in (not_yours, not_there, wrong_street):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    strip = ("instance", "request_id")
    same = [{k: v for k, v in r.json().items() if k not in strip} for r in (not_yours, not_there)]
    assert same[0] == same[1]

    app = application_of(client)
    denied = app.access_events(UUID(case_id))
    assert [type(e) for e in denied] == [AccessDenied, AccessDenied]
    assert {e.rule for e in denied} == {"out_of_scope"}
    missing = app.access_events(UUID(missing_id))
    assert [(type(e), e.rule) for e in missing] == [(AccessDenied, "no_such_case")]


def test_a_purpose_the_role_may_not_use_is_refused_and_recorded(
    client: TestClient, auth: TokenFactory
) -> None:
    case_id = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    ).json()["id"]
    response = client.get(
        f"/v1/cases/{case_id}", headers=auth(Role.REPORTER, VILLAGE, purpose="investigation")
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "X-Purpose-Of-Use"
    (event,) = application_of(client).access_events(UUID(case_id))
    assert isinstance(event, AccessDenied)
    assert event.rule.startswith("purpose_not_allowed")


def test_reads_need_a_valid_token_and_a_purpose(client: TestClient, auth: TokenFactory) -> None:
    case_id = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    ).json()["id"]
    no_token = client.get(f"/v1/cases/{case_id}", headers={"X-Purpose-Of-Use": "follow_up"})
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"] == "Bearer"
    forged = client.get(
        f"/v1/cases/{case_id}",
        headers={"Authorization": "Bearer not.a.token", "X-Purpose-Of-Use": "follow_up"},
    )
    assert forged.status_code == 401
    no_purpose = client.get(f"/v1/cases/{case_id}", headers=auth(Role.REPORTER, VILLAGE))
    assert no_purpose.status_code == 422
    assert no_purpose.json()["errors"][0]["field"] == "X-Purpose-Of-Use"


def _assert_no_case_data(text: str, needles: dict[str, bytes]) -> None:
    for what, needle in needles.items():
        assert needle.decode() not in text, f"{what} disclosed in an error response"


def test_read_whose_access_event_cannot_be_stored_returns_503_and_no_data_sqlite(
    tmp_path: Path, home: Path, auth: TokenFactory
) -> None:
    db = home / "casetrail.sqlite"
    writable = Settings.from_env({"CASETRAIL_HOME": str(home)})
    # This store is the test's own (SQLite), not the fixture's: its reporter is registered here.
    register(writable, fixture_user(Role.REPORTER, VILLAGE), Role.REPORTER, VILLAGE, DEFAULT_STREET)
    planted = planted_case()
    with TestClient(create_app(writable)) as client:
        case_id = client.post(
            "/v1/cases", json=planted.body, headers=auth(Role.REPORTER, VILLAGE)
        ).json()["id"]
    before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]

    # The same database file, opened read-only: every write fails in SQLite itself.
    read_only = Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": f"sqlite:///file:{db}?mode=ro"}
    )
    with TestClient(create_app(read_only), raise_server_exceptions=False) as client:
        response = client.get(
            f"/v1/cases/{case_id}", headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up")
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    _assert_no_case_data(response.text, planted.needles())
    after = sqlite3.connect(db).execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
    assert after == before


def test_read_whose_access_event_cannot_be_stored_returns_503_and_no_data_postgres(
    pg_schema: str, home: Path, auth: TokenFactory
) -> None:
    settings = Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": f"{PG_DSN}?schema={pg_schema}"}
    )
    # This store is the test's own, not the fixture's: its reporter is registered here.
    register(settings, fixture_user(Role.REPORTER, VILLAGE), Role.REPORTER, VILLAGE, DEFAULT_STREET)
    planted = planted_case()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        case_id = client.post(
            "/v1/cases", json=planted.body, headers=auth(Role.REPORTER, VILLAGE)
        ).json()["id"]
        # The database refuses every further insert, as a read-only or failing store would.
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(
                f"CREATE FUNCTION {pg_schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'store is read-only'; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON {pg_schema}.casetrail_events "
                f"FOR EACH ROW EXECUTE FUNCTION {pg_schema}.refuse()"
            )
            before = conn.execute(f"SELECT COUNT(*) FROM {pg_schema}.casetrail_events").fetchone()
        response = client.get(
            f"/v1/cases/{case_id}", headers=auth(Role.REPORTER, VILLAGE, purpose="follow_up")
        )
    assert response.status_code == 503, response.text
    _assert_no_case_data(response.text, planted.needles())
    with psycopg.connect(PG_DSN) as conn:
        after = conn.execute(f"SELECT COUNT(*) FROM {pg_schema}.casetrail_events").fetchone()
    assert after == before


def test_openapi_example_posts_as_it_stands(client: TestClient, auth: TokenFactory) -> None:
    schema = client.get("/openapi.json").json()
    examples = schema["paths"]["/v1/cases"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    (example,) = examples.values()
    body = example["value"]
    response = client.post(
        "/v1/cases", json=body, headers=auth(Role.REPORTER, body["minor"]["village"])
    )
    assert response.status_code == 201, response.text
    assert client.get("/docs").status_code == 200
