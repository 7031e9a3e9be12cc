"""No plaintext personal data in the read models: the bytes of the read-model database hold no
planted name, ID number (not even masked), description or phone, while the blind index finds
the file by exact ID number and name; the log output of lookups holds none of them either."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from domain.access import CaseAccessed
from domain.identity import mask_id_number, mask_name
from domain.taxonomy import Role
from gateway import logs
from gateway.settings import Settings
from projections.readmodels import ReadModels
from tests.conftest import PG_DSN, TokenFactory
from tests.integration.planted import planted_case
from tests.projections.workload import Workload

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"


def readmodels_of(client: TestClient) -> ReadModels:
    found: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    return found


def _sqlite_bytes(home: Path) -> bytes:
    db = home / "readmodels.sqlite"
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def _postgres_bytes(schema: str, readmodels: ReadModels) -> bytes:
    """Every view table's rows as text, and its data file on disk after a checkpoint."""
    found = b""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        (data_dir,) = conn.execute("SHOW data_directory").fetchone() or ("",)
        for recorder in readmodels.recorders.values():
            for table in (*recorder.view.tables, recorder.tracking_table_name):
                rows = conn.execute(f"SELECT t::text FROM {schema}.{table} t").fetchall()
                found += "".join(str(r[0]) for r in rows).encode()
                (path,) = conn.execute(
                    "SELECT pg_relation_filepath(%s)", (f"{schema}.{table}",)
                ).fetchone() or ("",)
                found += (Path(str(data_dir)) / str(path)).read_bytes()
    return found


def test_read_models_hold_no_personal_data_yet_find_a_minor_by_blind_index(
    client: TestClient, auth: TokenFactory, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    readmodels = readmodels_of(client)
    Workload(client.app.state.services.application, seed=31).cases(8)  # type: ignore[attr-defined]
    planted = planted_case(VILLAGE, seed=4711)
    case_id = client.post("/v1/cases", json=planted.body, headers=auth(Role.REPORTER, VILLAGE))
    assert case_id.status_code == 201, case_id.text
    case = case_id.json()["id"]
    readmodels.catch_up()

    if settings.store_kind == "sqlite":
        stored = _sqlite_bytes(settings.home)
    else:
        stored = _postgres_bytes(settings.database_url.rsplit("schema=", 1)[1], readmodels)
    needles = {
        **planted.needles(),
        # The masks are sealed too (docs/projections.md, "What each column holds").
        "masked name": mask_name(planted.name).encode(),
        "masked ID number": mask_id_number(planted.id_number).encode(),
    }
    for what, needle in needles.items():
        assert needle not in stored, f"{what} readable in the read models"
    # The control: what the read models do hold of this file is found by the same search.
    for held in (
        case,
        readmodels.blind_index.id_number(planted.id_number),
        readmodels.blind_index.name(planted.name),
    ):
        assert held.encode() in stored, f"the search missed {held!r}: it proves nothing"

    captured = io.StringIO()
    logs.configure("debug", stream=captured)
    caplog.set_level(logging.DEBUG)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    try:
        by_id = client.post(
            "/v1/cases/search", json={"id_number": planted.id_number}, headers=coordinator
        )
        by_name = client.post("/v1/cases/search", json={"name": planted.name}, headers=coordinator)
        lowercase_x = planted.id_number.lower()
        again = client.post(
            "/v1/cases/search", json={"id_number": lowercase_x}, headers=coordinator
        )
        by_body = client.post(
            "/v1/cases/search", json={"id_number": planted.id_number}, headers=coordinator
        )
        ledger = client.get("/v1/ledger", headers=coordinator)
    finally:
        logs.configure("info")
    for response in (by_id, by_name, again, by_body, ledger):
        assert response.status_code == 200, response.text
    assert by_body.json()["rows"] == by_id.json()["rows"]
    assert [r["id"] for r in by_id.json()["rows"]] == [case]
    assert [r["id"] for r in by_name.json()["rows"]] == [case]
    assert [r["id"] for r in again.json()["rows"]] == [case]
    (row,) = by_id.json()["rows"]
    assert row["name"] == mask_name(planted.name)
    assert row["id_number"] == mask_id_number(planted.id_number)
    texts = (planted.name, planted.id_number, planted.description, planted.phone)
    for response in (by_id, by_name, ledger):
        for text in texts:
            assert text not in response.text

    # The service's own log lines (the test's HTTP client logs the URLs it requests: not ours).
    service_records = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    output = captured.getvalue() + "\n".join(service_records)
    assert '"route": "/v1/cases/search"' in output, "the lookups produced no log lines to search"
    for text in texts:
        assert text not in output

    # Each lookup that answered the file (school, gender, age in clear) was recorded.
    events = client.app.state.services.application.access_events(UUID(case))  # type: ignore[attr-defined]
    lookups = [e for e in events if isinstance(e, CaseAccessed) and e.rule.startswith("lookup:")]
    assert len(lookups) == 4
    assert all("minor.name:masked" in e.fields and "minor.name" not in e.fields for e in lookups)


def test_lookup_by_an_unknown_id_number_finds_nothing_and_a_malformed_one_is_422(
    client: TestClient, auth: TokenFactory
) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    unknown = planted_case(seed=99).id_number
    found = client.post("/v1/cases/search", json={"id_number": unknown}, headers=coordinator)
    assert found.status_code == 200
    assert found.json()["rows"] == []
    bad = client.post(
        "/v1/cases/search", json={"id_number": "110101200001011234"}, headers=coordinator
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "id_number"
    assert "110101200001011234" not in bad.text
    neither = client.post("/v1/cases/search", json={}, headers=coordinator)
    assert neither.status_code == 422
    assert neither.json()["errors"][0]["field"] == "id_number"


def test_an_id_number_or_name_in_a_url_is_refused_unread_and_unechoed(
    client: TestClient, auth: TokenFactory
) -> None:
    """Promise 2: no personal data in URLs. The old lookup by query string answers 400, naming
    the field and the body-borne search to use instead, without echoing, deciding or recording."""
    planted = planted_case(seed=5)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    since = client.app.state.services.application.recorder.max_notification_id() or 0  # type: ignore[attr-defined]
    for params, field in (
        ({"id_number": planted.id_number}, "id_number"),
        ({"name": planted.name}, "name"),
        ({}, "id_number"),
    ):
        answer = client.get("/v1/cases", params=params, headers=coordinator)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["field"] == field
        assert "POST /v1/cases/search" in answer.json()["detail"]
        assert planted.id_number not in answer.text and planted.name not in answer.text
    after = client.app.state.services.application.recorder.max_notification_id() or 0  # type: ignore[attr-defined]
    assert after == since


def test_a_lookup_never_tells_a_hidden_case_from_a_missing_one(
    client: TestClient, auth: TokenFactory
) -> None:
    """Need-to-know for lists: the answer for an existing case outside the caller's scope is the
    same as for an ID number nobody has, and nothing about the hidden case is recorded as seen."""
    planted = planted_case(seed=7)
    owner = auth(Role.REPORTER, "dongshan-village")
    created = client.post("/v1/cases", json=planted.body, headers=owner)
    assert created.status_code == 201
    # Registered (events) before the catch-up, so that both answers see the same position.
    outsider = auth(Role.REPORTER, "xihe-village", purpose="follow_up")
    other_street = auth(Role.COORDINATOR, "far-office", street="far-street", purpose="consultation")
    services = client.app.state.services  # type: ignore[attr-defined]
    services.readmodels.catch_up()

    missing = planted_case(seed=8).id_number
    for headers in (outsider, other_street):
        hidden = client.post(
            "/v1/cases/search", json={"id_number": planted.id_number}, headers=headers
        )
        absent = client.post("/v1/cases/search", json={"id_number": missing}, headers=headers)
        assert hidden.status_code == absent.status_code == 200
        assert hidden.json() == absent.json()
        assert created.json()["id"] not in hidden.text
    events = services.application.access_events(UUID(created.json()["id"]))
    assert events == []

    # The owner finds it, and that disclosure is recorded.
    mine = client.post(
        "/v1/cases/search",
        json={"id_number": planted.id_number},
        headers=auth(Role.REPORTER, "dongshan-village", purpose="follow_up"),
    )
    assert [row["id"] for row in mine.json()["rows"]] == [created.json()["id"]]
    assert len(services.application.access_events(UUID(created.json()["id"]))) == 1
