"""Least privilege end to end on PostgreSQL (issue 21): the owner's `casetrail store init`
creates every table, `ops/postgres-roles.sql` gives each process its role, and the service runs
under them, as real processes: the API (`casetrail serve`, role api), the followers
(`casetrail projections run`, role projections) and the relay (`casetrail relay run`, role
relay) with a real nats-server and a unit's client.

A clue reported and assigned over HTTP reaches the unit, shows in the ledger (written by the
projections role), is covered by a signed checkpoint and verifies; no process logged a refused
privilege; and each role is refused what it must not do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from domain.taxonomy import Role
from gateway import keyring
from gateway.messaging.broker import EmbeddedBroker, NatsSettings
from gateway.messaging.broker_config import NatsLayout
from gateway.settings import Settings
from tests.conftest import PG_DSN, require_postgres
from tests.messaging.stack import CASETRAIL, Stack, free_port, require_nats_server, wait_for
from tests.messaging.test_delivery import OFFICE, POLICE, assign, received, report

ROOT = Path(__file__).resolve().parents[2]
APPEND_ONLY = {
    "casetrail_events": "state",
    "casetrail_snapshots": "state",
    "casetrail_merkle_nodes": "hash",
    "casetrail_merkle_leaves": "position",
    "casetrail_checkpoints": "size",
    "casetrail_key_announcements": "seq",
}


def _url(role: str, schema: str) -> str:
    return f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}"


def roles_script(schema: str, roles: dict[str, str], dsn: str = PG_DSN) -> None:
    """`ops/postgres-roles.sql` with psql, as the superuser of `dsn`: the roles, the schema and
    their grants in that database (also used by tests/reliability/chaos.py)."""
    psql = shutil.which("psql")
    if psql is None:
        if os.environ.get("CI") == "true":
            pytest.fail("psql is needed to run ops/postgres-roles.sql")
        pytest.skip("psql is not installed")
    variables = [f"schema={schema}", *(f"{name}={role}" for name, role in roles.items())]
    result = subprocess.run(
        [
            psql,
            dsn,
            "-q",
            *(a for v in variables for a in ("-v", v)),
            "-f",
            str(ROOT / "ops" / "postgres-roles.sql"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def roles() -> Iterator[tuple[str, dict[str, str]]]:
    require_postgres()
    tag = uuid.uuid4().hex[:8]
    names = {
        "owner": f"ct_owner_{tag}",
        "api": f"ct_api_{tag}",
        "relay": f"ct_relay_{tag}",
        "projections": f"ct_proj_{tag}",
    }
    schema = f"t_least_{tag}"
    try:
        yield schema, names
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            for role in names.values():
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (role,)).fetchone():
                    conn.execute(f"DROP OWNED BY {role}")
                    conn.execute(f"DROP ROLE {role}")


def test_the_service_runs_under_its_least_privilege_roles(
    tmp_path: Path, roles: tuple[str, dict[str, str]]
) -> None:
    require_nats_server()
    schema, names = roles
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}

    roles_script(schema, names)
    init = subprocess.run(
        [CASETRAIL, "store", "init"],
        env={
            **base,
            "CASETRAIL_HOME": str(home),
            "CASETRAIL_DATABASE_URL": _url(names["owner"], schema),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    for table in (
        "ledger_cases",
        "follower_heartbeats",
        "nats_relay_tracking",
        "casetrail_merkle_tracking",
        "casetrail_key_announcements",
    ):
        assert table in init.stdout, init.stdout
    roles_script(schema, names)

    def role_env(role: str) -> dict[str, str]:
        return {"CASETRAIL_DATABASE_URL": _url(names[role], schema), "CASETRAIL_CREATE_TABLE": "no"}

    # The in-process helpers (registering units and users, minting tokens) act as the API.
    settings = Settings.from_env({"CASETRAIL_HOME": str(home), **role_env("api")})
    port = free_port()
    nats = NatsSettings(url=f"tls://127.0.0.1:{port}", port=port)
    layout = NatsLayout(home)
    stack = Stack(
        root=tmp_path,
        home=home,
        settings=settings,
        nats=nats,
        layout=layout,
        broker=EmbeddedBroker(layout, host="127.0.0.1", port=port),
        api_port=free_port(),
    )
    try:
        stack.register(POLICE, "城关派出所", "police_station")
        stack.register(OFFICE, "城关街道综治办", "governance_office")
        stack.write_config()
        stack.broker.start()
        stack.api = stack.spawn(
            "api",
            "serve",
            "--no-messaging",
            "--port",
            str(stack.api_port),
            env={
                **role_env("api"),
                "CASETRAIL_PROJECTIONS": "off",
                "CASETRAIL_CHECKPOINT_EVERY_EVENTS": "1",
            },
        )
        projections = stack.spawn(
            "projections",
            "projections",
            "run",
            env={**role_env("projections"), "CASETRAIL_CHECKPOINT_EVERY_EVENTS": "1"},
        )
        stack.relay = stack.spawn(
            "relay", "relay", "run", "--reminder-interval", "0", env=role_env("relay")
        )
        police = stack.start_listener(POLICE)
        stack.listeners[POLICE] = police
        stack.wait_api()

        case_id = report(stack)
        assignment_id = assign(stack, case_id, POLICE)
        wait_for(lambda: bool(received(police, assignment_id)), 60, "the police to get it")
        coordinator = stack.headers(Role.COORDINATOR, OFFICE, purpose="consultation")

        def in_ledger() -> bool:
            answer = httpx.get(f"{stack.api_url}/v1/ledger", headers=coordinator, timeout=5)
            assert answer.status_code == 200, answer.text
            return case_id in answer.text

        wait_for(in_ledger, 60, "the projections role to write the ledger")
        verified = subprocess.run(
            [CASETRAIL, "verify"],
            env={**stack.env, **role_env("api")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("intact: ") and "checkpoint" in verified.stdout
        for process in (stack.api, projections, stack.relay, police.process):
            assert process.popen.poll() is None, process.text()[-2000:]
            text = process.text()
            assert "InsufficientPrivilege" not in text and "permission denied" not in text, (
                process.name,
                text[-3000:],
            )
            # A refused write logs only its error's type (e.g. the evidence maintainer's
            # `evidence_maintenance_failed`): no process failed at anything.
            failed = [
                line
                for line in text.splitlines()
                if '_failed"' in line or '"level": "error"' in line
            ]
            assert failed == [], (process.name, failed[:5])
        with psycopg.connect(PG_DSN) as conn:
            beats = {r[0] for r in conn.execute(f"SELECT name FROM {schema}.follower_heartbeats")}
        assert {"ledger", "nats_relay"} <= beats
    finally:
        stack.close()

    # --- and what each role must not do ----------------------------------------------------
    refused: list[str] = []
    connections = {
        role: psycopg.connect(f"postgresql://{names[role]}@127.0.0.1:5432/test", autocommit=True)
        for role in ("api", "relay", "projections")
    }

    def refuse(role: str, statement: str) -> None:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            connections[role].execute(statement)
        refused.append(f"{role}: {statement}")

    try:
        for role in ("api", "relay", "projections"):
            for table, column in APPEND_ONLY.items():
                refuse(role, f"UPDATE {schema}.{table} SET {column} = {column}")
                refuse(role, f"DELETE FROM {schema}.{table}")
                refuse(role, f"TRUNCATE {schema}.{table}")
            refuse(role, f"CREATE TABLE {schema}.intruder (a int)")
        refuse(
            "projections",
            f"INSERT INTO {schema}.casetrail_events (originator_id, "
            "originator_version, topic, state) VALUES (gen_random_uuid(), 1, 'x', '\\x00')",
        )
        for role in ("api", "relay"):
            refuse(role, f"DELETE FROM {schema}.ledger_cases")
            refuse(role, f"UPDATE {schema}.ledger_tracking SET notification_id = 0")
        refuse("api", f"UPDATE {schema}.nats_relay_tracking SET notification_id = 0")
        refuse("projections", f"UPDATE {schema}.nats_relay_tracking SET notification_id = 0")
    finally:
        for connection in connections.values():
            connection.close()
    assert len(refused) == 3 * (3 * len(APPEND_ONLY) + 1) + 1 + 4 + 2
