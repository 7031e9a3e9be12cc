"""The event store at rest: no personal data in the bytes, and each event bound to its place."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.taxonomy import Purpose, Role
from gateway.bootstrap import StartupProblem, open_application
from gateway.settings import Settings
from gateway.store.eventstore import (
    EventIntegrityError,
    KeyMismatchError,
    new_key_text,
    store_environment,
)
from tests.conftest import PG_DSN, TokenFactory, pg_url
from tests.integration.planted import Planted, planted_case

REPORTER = Actor("user-1", Role.REPORTER, "dongshan-village", "chengguan-street")


def _store_planted(url: str, keys: list[str] | None, planted: Planted) -> UUID:
    app = CaseTrail(env=store_environment(url, keys))
    try:
        case_id = app.report_clue(cmd.ReportClue.model_validate(planted.body), REPORTER)
        app.read_case(case_id, REPORTER, purpose=Purpose.FOLLOW_UP, request_id="r-1")
        return case_id
    finally:
        app.close()


def _sqlite_bytes(db: Path) -> bytes:
    # The WAL holds the newest pages until a checkpoint: search it too.
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def _postgres_bytes(schema: str) -> bytes:
    """The table's rows as stored, and the table's data file on disk after a checkpoint."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT originator_id::text, topic, state FROM {schema}.casetrail_events"
        ).fetchall()
        conn.execute("CHECKPOINT")
        data_dir = conn.execute("SHOW data_directory").fetchone()
        relation = conn.execute(
            "SELECT pg_relation_filepath(%s)", (f"{schema}.casetrail_events",)
        ).fetchone()
    assert rows and data_dir and relation
    on_disk = (Path(str(data_dir[0])) / str(relation[0])).read_bytes()
    in_rows = b"".join(str(r[0]).encode() + str(r[1]).encode() + bytes(r[2]) for r in rows)
    return in_rows + on_disk


def _assert_absent_when_encrypted_present_when_not(
    encrypted: bytes, plain: bytes, planted: Planted
) -> None:
    for what, needle in planted.needles().items():
        # The control proves the search would find it.
        assert needle in plain, f"search failed to find {what} in the plaintext store"
        assert needle not in encrypted, f"{what} readable in the encrypted store"


def test_sqlite_file_holds_no_personal_data(tmp_path: Path) -> None:
    planted = planted_case()
    encrypted_db, plain_db = tmp_path / "enc.sqlite", tmp_path / "plain.sqlite"
    _store_planted(f"sqlite:///{encrypted_db}", [new_key_text()], planted)
    _store_planted(f"sqlite:///{plain_db}", None, planted)
    _assert_absent_when_encrypted_present_when_not(
        _sqlite_bytes(encrypted_db), _sqlite_bytes(plain_db), planted
    )


@pytest.mark.postgres
def test_postgres_table_holds_no_personal_data(pg_schema: str) -> None:
    planted = planted_case()
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}_plain")
    try:
        _store_planted(pg_url(pg_schema), [new_key_text()], planted)
        _store_planted(pg_url(f"{pg_schema}_plain"), None, planted)
        _assert_absent_when_encrypted_present_when_not(
            _postgres_bytes(pg_schema), _postgres_bytes(f"{pg_schema}_plain"), planted
        )
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {pg_schema}_plain CASCADE")


def _copy_state(settings: Settings, source: tuple[UUID, int], target: tuple[UUID, int]) -> None:
    """Overwrite one row's stored state with another's, directly in the database, as someone
    with the rights to drop the append-only trigger first."""
    if settings.store_kind == "sqlite":
        with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as conn:
            conn.execute("DROP TRIGGER casetrail_no_update_stored_events")
            (state,) = conn.execute(
                "SELECT state FROM stored_events WHERE originator_id=? AND originator_version=?",
                (source[0].hex, source[1]),
            ).fetchone()
            conn.execute(
                "UPDATE stored_events SET state=? WHERE originator_id=? AND originator_version=?",
                (state, target[0].hex, target[1]),
            )
    else:
        schema = settings.database_url.rsplit("schema=", 1)[1]
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP TRIGGER casetrail_append_only ON {schema}.casetrail_events")
            conn.execute(
                f"UPDATE {schema}.casetrail_events SET state = (SELECT state FROM "
                f"{schema}.casetrail_events WHERE originator_id=%s AND originator_version=%s) "
                "WHERE originator_id=%s AND originator_version=%s",
                (source[0], source[1], target[0], target[1]),
            )


def test_state_copied_into_another_row_is_refused(
    settings: Settings, client: TestClient, auth: TokenFactory
) -> None:
    reporter = auth(Role.REPORTER, "dongshan-village")
    first = client.post("/v1/cases", json=planted_case().body, headers=reporter).json()["id"]
    second = client.post("/v1/cases", json=planted_case().body, headers=reporter).json()["id"]
    reader = auth(Role.REPORTER, "dongshan-village", purpose="follow_up")
    assert client.get(f"/v1/cases/{second}", headers=reader).status_code == 200

    _copy_state(settings, source=(UUID(first), 1), target=(UUID(second), 1))

    response = client.get(f"/v1/cases/{second}", headers=reader)
    assert response.status_code == 500
    problem = response.json()
    assert problem["type"] == "urn:casetrail:problem:integrity-error"
    # The answer names no stored content; which event failed is in the service's log (and
    # `casetrail verify` finds it), tied to the answer by its request id.
    assert "did not decrypt or authenticate" in problem["detail"]
    assert problem["request_id"] == response.headers["X-Request-ID"]
    assert "minor" not in problem

    app: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    with pytest.raises(EventIntegrityError, match="integrity check failed"):
        app.repository.get(UUID(second))
    # The untouched case still reads.
    assert client.get(f"/v1/cases/{first}", headers=reader).status_code == 200


def test_a_wrong_key_stops_the_service_with_a_clear_message(settings: Settings, home: Path) -> None:
    right_key = (home / "keys" / "event.key").read_text().strip()
    _store_planted(settings.database_url, [right_key], planted_case())
    wrong = Settings.from_env(
        {
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": settings.database_url,
            "CASETRAIL_EVENT_KEY": new_key_text(),
        }
    )
    with pytest.raises(StartupProblem, match="not the key this store was written with"):
        open_application(wrong)


def test_rotated_keys_still_open_old_events(tmp_path: Path) -> None:
    old, new = new_key_text(), new_key_text()
    url = f"sqlite:///{tmp_path / 'rotate.sqlite'}"
    case_id = _store_planted(url, [old], planted_case())
    rotated = CaseTrail(env=store_environment(url, [new, old]))
    assert rotated.repository.get(case_id).version == 1
    rotated.close()
    without_old = CaseTrail(env=store_environment(url, [new]))
    with pytest.raises(KeyMismatchError):
        without_old.repository.get(case_id)
    without_old.close()
