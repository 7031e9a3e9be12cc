"""Shared fixtures: real SQLite files, a real PostgreSQL schema per test, the real ASGI app.

PostgreSQL is expected on 127.0.0.1:5432 (trust auth, database `test`). When it is missing the
PostgreSQL-backed tests skip on a developer machine but fail when CI=true.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import psycopg
import pytest
from fastapi.testclient import TestClient

from domain.taxonomy import Role
from gateway import keyring
from gateway.auth import issue_token
from gateway.cli.main import DEFAULT_STREET
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.people import Registrar, fixture_user

PG_DSN = os.environ.get("CASETRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# The date rules count days in the street office's calendar (`domain.clock.local_today`, UTC+8);
# the tests build their dates with `local_today()`, which reads the process's zone: the same
# zone for both, or a test run between 16:00 and 24:00 UTC would see "today" a day apart.
os.environ["TZ"] = "Asia/Shanghai"
time.tzset()
# `make test` hands whole files to two workers (pytest-xdist `--dist loadfile
# --no-loadscope-reorder`) in the order collected. The files that take longest go first, so
# the many short files fill in at the end and no long file starts last and runs alone. Prefixes
# of node ids, longest first; any other file keeps its place after them. Only the order changes.
LONGEST_FIRST: Final = (
    "tests/integration/test_schema_fuzz.py",
    "tests/integration/test_canary_leaks.py",
    "tests/reliability/test_contention.py",
    "tests/reliability/test_crash_safety.py",
    "tests/reliability/test_chaos.py",
    "tests/messaging/",
    "tests/integration/test_cli.py",
    "tests/reports/",
    "tests/web/",
    "tests/integration/test_first_start.py",
    "tests/projections/test_crash_recovery.py",
    "tests/integration/test_backup.py",
    "tests/evidence/",
    "tests/integration/test_corrections.py",
    "tests/specs/",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (`LONGEST_FIRST`); a stable sort keeps each file's own order."""

    def rank(item: pytest.Item) -> int:
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)),
            len(LONGEST_FIRST),
        )

    items.sort(key=rank)


def require_postgres() -> None:
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {PG_DSN}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_url(schema: str) -> str:
    return f"{PG_DSN}?schema={schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}"
    schema: str = request.getfixturevalue("pg_schema")
    return pg_url(schema)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    keyring.init_keys(path / "keys")
    return path


@pytest.fixture
def settings(home: Path, store_url: str) -> Settings:
    return Settings.from_env({"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": store_url})


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


Headers = dict[str, str]
TokenFactory = Callable[..., Headers]


@pytest.fixture
def registrar(settings: Settings) -> Iterator[Registrar]:
    found = Registrar(settings)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def auth(settings: Settings, registrar: Registrar) -> TokenFactory:
    """auth(role, unit, street=..., purpose=..., user=...) -> request headers with a fresh token
    for a user registered with that role, unit and street (registered here first)."""
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")

    def headers(
        role: Role,
        unit: str,
        *,
        street: str = DEFAULT_STREET,
        purpose: str | None = None,
        user: str | None = None,
    ) -> Headers:
        who = user or fixture_user(role, unit, street)
        registrar.ensure(who, role, unit, street)
        token = issue_token(key, user=who, role=role, unit=unit, street=street)
        found = {"Authorization": f"Bearer {token}"}
        if purpose:
            found["X-Purpose-Of-Use"] = purpose
        return found

    return headers
