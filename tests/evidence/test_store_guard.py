"""The store's guards: append-only triggers on both stores, ordered appends on PostgreSQL, and
the PostgreSQL roles of ops/postgres-roles.sql (the service may read and append, nothing else)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from domain import commands as cmd
from domain.application import CaseTrail
from domain.taxonomy import Purpose
from gateway import keyring
from gateway.bootstrap import StartupProblem, open_application
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.evidence.verification import verify_store
from gateway.settings import Settings
from gateway.store import guard as store_guard
from gateway.store.eventstore import store_environment
from tests.conftest import PG_DSN, require_postgres
from tests.evidence.helpers import CASETRAIL, REPORTER, Tamper, populate
from tests.integration.planted import planted_case

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("casetrail_merkle_nodes", "casetrail_merkle_leaves", "casetrail_checkpoints")


COLUMNS = {
    "casetrail_merkle_nodes": "hash",
    "casetrail_merkle_leaves": "position",
    "casetrail_checkpoints": "size",
}


def _statements(tamper: Tamper, table: str) -> list[str]:
    target = f"{tamper.prefix}{table}"
    column = COLUMNS[table]
    found = [f"UPDATE {target} SET {column} = {column}", f"DELETE FROM {target} WHERE 1=1"]
    if not tamper.sqlite:
        found.append(f"TRUNCATE {target}")
    return found


def test_updates_deletes_and_truncates_are_refused(settings: Settings) -> None:
    populate(settings, events=4, checkpoint_every=2)
    tamper = Tamper(settings)
    events = "stored_events" if tamper.sqlite else "casetrail_events"
    attempts = [
        f"UPDATE {tamper.events} SET state = state",
        f"UPDATE {tamper.events} SET {tamper.pos} = {tamper.pos} + 100",
        f"DELETE FROM {tamper.events} WHERE {tamper.pos} = 1",
        f"DELETE FROM {tamper.events}",
    ]
    if not tamper.sqlite:
        attempts.append(f"TRUNCATE {tamper.events}")
    for table in TABLES:
        attempts += _statements(tamper, table)
    before = tamper.count()
    refused = []
    for statement in attempts:
        with (
            pytest.raises((sqlite3.Error, psycopg.Error)) as caught,
            tamper.connection() as conn,
        ):
            conn.execute(statement)
        assert "append-only" in str(caught.value), statement
        refused.append(statement)
    assert len(refused) == len(attempts)
    assert tamper.count() == before
    # The refusals name the table and what was refused.
    with (
        pytest.raises((sqlite3.Error, psycopg.Error), match=f"{events} is append-only: DELETE"),
        tamper.connection() as conn,
    ):
        conn.execute(f"DELETE FROM {tamper.events}")


def test_guards_install_once_and_then_only_check(settings: Settings) -> None:
    application = open_application(settings)  # installs
    try:
        assert store_guard.missing(application.recorder) == []
        assert store_guard.install(application.recorder) == []
        assert store_guard.appends_are_ordered(application.recorder)
    finally:
        application.close()
    Tamper(settings).drop_triggers()
    application = open_application(settings)  # puts them back
    try:
        assert store_guard.missing(application.recorder) == []
    finally:
        application.close()


def test_a_store_without_guards_that_cannot_get_them_does_not_start(
    tmp_path: Path, home: Path
) -> None:
    db = home / "casetrail.sqlite"
    key = (home / "keys" / "event.key").read_text().strip()
    bare = CaseTrail(env=store_environment(f"sqlite:///{db}", [key]))
    bare.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
    bare.close()
    read_only = Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": f"sqlite:///file:{db}?mode=ro"}
    )
    with pytest.raises(StartupProblem, match="cannot install the store's append-only guards"):
        open_application(read_only)


@pytest.mark.postgres
def test_postgres_inserts_commit_in_notification_order(pg_schema: str, home: Path) -> None:
    """The second insert draws its id only after the first has committed: a reader never sees
    id n+1 while id n may still appear."""
    settings = Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": f"{PG_DSN}?schema={pg_schema}"}
    )
    open_application(settings).close()
    table = f"{pg_schema}.casetrail_events"
    insert = (
        f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
        "VALUES (%s, 1, 'probe', '\\x00') RETURNING notification_id"
    )
    first = psycopg.connect(PG_DSN)
    first_id = first.execute(insert, (uuid.uuid4(),)).fetchone()
    done: dict[str, object] = {}

    def second() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            done["id"] = conn.execute(insert, (uuid.uuid4(),)).fetchone()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert "id" not in done, "the second insert did not wait for the first to commit"
    with psycopg.connect(PG_DSN, autocommit=True) as probe:
        visible = probe.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    assert visible == (0,)
    first.commit()
    thread.join(10)
    first.close()
    assert first_id is not None and done["id"] == (first_id[0] + 1,)


# --- the roles of ops/postgres-roles.sql ------------------------------------------------------


def _psql(schema: str, owner: str, service: str) -> None:
    psql = shutil.which("psql")
    if psql is None:
        if os.environ.get("CI") == "true":
            pytest.fail("psql is needed to run ops/postgres-roles.sql")
        pytest.skip("psql is not installed")
    result = subprocess.run(
        [
            psql,
            PG_DSN,
            "-q",
            "-v",
            f"schema={schema}",
            "-v",
            f"owner={owner}",
            "-v",
            f"service={service}",
            "-f",
            str(ROOT / "ops" / "postgres-roles.sql"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _url(role: str, schema: str) -> str:
    return f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}"


@pytest.mark.postgres
def test_the_service_role_may_read_and_append_and_nothing_else(home: Path) -> None:
    require_postgres()
    tag = uuid.uuid4().hex[:8]
    schema, owner, service = f"t_roles_{tag}", f"ct_owner_{tag}", f"ct_service_{tag}"
    try:
        _psql(schema, owner, service)
        init = subprocess.run(
            [CASETRAIL, "store", "init"],
            env={
                **os.environ,
                "CASETRAIL_HOME": str(home),
                "CASETRAIL_DATABASE_URL": _url(owner, schema),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert init.returncode == 0, init.stderr
        assert "created:" in init.stdout
        _psql(schema, owner, service)

        # The service, as in production: its own role, no right to create tables.
        key = (home / "keys" / "event.key").read_text().strip()
        env = {**store_environment(_url(service, schema), [key]), "CASETRAIL_CREATE_TABLE": "no"}
        application = CaseTrail(env=env)
        try:
            assert store_guard.install(application.recorder) == []
            case_id = application.report_clue(
                cmd.ReportClue.model_validate(planted_case().body), REPORTER
            )
            application.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-roles")
            signing = keyring.load_private_key(home / "keys" / keyring.SERVICE_KEY, "key")
            evidence = Evidence(application, signing, EvidenceSettings())
            checkpoint = evidence.checkpoint_now()
            evidence.close()
            assert checkpoint.size == 2
            report = verify_store(application.recorder, signing.public_key())
            assert report.intact, report.summary()
        finally:
            application.close()

        refused = 0
        columns = {"casetrail_events": "state", **COLUMNS}
        dsn = f"postgresql://{service}@127.0.0.1:5432/test"
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table, column in columns.items():
                for statement in (
                    f"UPDATE {schema}.{table} SET {column} = NULL",
                    f"DELETE FROM {schema}.{table}",
                    f"TRUNCATE {schema}.{table}",
                ):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission"):
                        conn.execute(statement)
                    refused += 1
            count = conn.execute(f"SELECT COUNT(*) FROM {schema}.casetrail_events").fetchone()
            assert count == (2,)
        assert refused == 12
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            for role in (service, owner):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (role,)).fetchone()
                if exists:
                    conn.execute(f"DROP OWNED BY {role}")
                    conn.execute(f"DROP ROLE {role}")
