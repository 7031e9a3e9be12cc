"""First start on PostgreSQL: any number of processes creating the store at once all come up.

Issue "First start on PostgreSQL with several workers fails at random": the library replaces
its insert function on every start, and two sessions doing so at once failed with "tuple
concurrently updated". Creation now happens under one advisory lock (gateway/store/setup.py).
Real processes (`casetrail serve` with four API workers, the followers' child, the relay and
the embedded nats-server), a real PostgreSQL, a schema that does not exist before the start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from gateway import keyring
from tests.conftest import PG_DSN, pg_url, require_postgres

pytestmark = pytest.mark.postgres

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))
WORKERS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    """Names of schemas that do not exist yet; dropped afterwards if a start created them."""
    require_postgres()
    names: list[str] = []
    yield names
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _environ(home: Path, schema: str, **more: str) -> dict[str, str]:
    environ = {**os.environ, "CASETRAIL_HOME": str(home), **more}
    environ.pop("CASETRAIL_EVENT_KEY", None)
    environ["CASETRAIL_DATABASE_URL"] = pg_url(schema)
    return environ


def _events(stderr: str) -> list[dict[str, object]]:
    """The JSON log lines of every process (lines of several processes may share a line)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    for line in stderr.splitlines():
        at = line.find("{")
        while at != -1:
            try:
                value, end = decoder.raw_decode(line, at)
            except json.JSONDecodeError:
                at = line.find("{", at + 1)
                continue
            if isinstance(value, dict):
                found.append(value)
            at = line.find("{", end)
    return found


def _all_up(events: list[dict[str, object]]) -> bool:
    names = [e.get("event") for e in events]
    return (
        names.count("service_started") >= WORKERS
        and "projections_running" in names
        and "relay_started" in names
    )


def _start_and_stop(home: Path, schema: str) -> str:
    """One first start: serve until every worker, the followers and the relay are up, then
    SIGTERM. Returns everything the processes wrote to stderr."""
    port = _free_port()
    environ = _environ(
        home, schema, CASETRAIL_WORKERS=str(WORKERS), CASETRAIL_NATS_PORT=str(_free_port())
    )
    log = home / f"{schema}.stderr"
    with log.open("w", encoding="utf-8") as err_file:
        server = subprocess.Popen(
            [CASETRAIL, "serve", "--port", str(port)],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and server.poll() is None:
                if _all_up(_events(log.read_text(encoding="utf-8"))):
                    break
                time.sleep(0.2)
            assert server.poll() is None, f"the service stopped by itself: {log.read_text()}"
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).is_success
        finally:
            server.terminate()
            server.wait(timeout=60)
    return log.read_text(encoding="utf-8")


# The race came at random: ten starts in a row under `make soak`, three on every `make test`.
@pytest.mark.parametrize("starts", [3, pytest.param(10, marks=pytest.mark.soak)])
def test_four_workers_on_a_fresh_schema_come_up_every_time_in_a_row(
    tmp_path: Path, schemas: list[str], starts: int
) -> None:
    for attempt in range(starts):
        home = tmp_path / f"start-{attempt}"
        keyring.init_keys(home / "keys")  # keys only: the store is created by `serve`
        schema = f"t_first_{uuid.uuid4().hex[:10]}"
        schemas.append(schema)
        err = _start_and_stop(home, schema)
        assert "Traceback" not in err, f"start {attempt}: {err[-3000:]}"
        assert "concurrently" not in err
        events = _events(err)
        started = [e for e in events if e.get("event") == "service_started"]
        assert len(started) == WORKERS, f"start {attempt}: {len(started)} workers came up"
        problems = [e for e in events if e.get("level") in ("error", "critical")]
        assert problems == [], f"start {attempt}: {problems}"
        assert any(e.get("event") == "projections_running" for e in events)


def test_two_store_inits_at_the_same_instant_both_succeed(
    tmp_path: Path, schemas: list[str]
) -> None:
    for attempt in range(3):
        schema = f"t_init_{uuid.uuid4().hex[:10]}"
        schemas.append(schema)
        environ = _environ(tmp_path / f"init-{attempt}", schema)
        both = [
            subprocess.Popen(
                [CASETRAIL, "store", "init"],
                env=environ,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=60), *p.communicate()) for p in both]
        for code, _out, err in results:
            assert code == 0, err
            assert "Traceback" not in err
        outputs = sorted(out.strip() for _, out, _ in results)
        # One created everything; the other, waiting on the lock, found it all in place.
        assert outputs[0] == "all in place already", outputs
        assert outputs[1].startswith("created: "), outputs


def test_keys_init_creates_a_missing_schema(tmp_path: Path, schemas: list[str]) -> None:
    schema = f"t_keys_{uuid.uuid4().hex[:10]}"
    schemas.append(schema)
    result = subprocess.run(
        [CASETRAIL, "keys", "init"],
        env=_environ(tmp_path, schema),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(PG_DSN) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    assert found is not None


def test_a_missing_schema_the_role_may_not_create_is_one_line(
    tmp_path: Path, schemas: list[str]
) -> None:
    role = f"t_limited_{uuid.uuid4().hex[:8]}"
    schema = f"t_denied_{uuid.uuid4().hex[:10]}"
    schemas.append(schema)
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"REVOKE CREATE ON DATABASE test FROM {role}")
    try:
        keyring.init_keys(tmp_path / "keys")
        url = f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}"
        for args in (["store", "init"], ["serve", "--no-messaging", "--port", str(_free_port())]):
            environ = {**_environ(tmp_path, schema), "CASETRAIL_DATABASE_URL": url}
            result = subprocess.run(
                [CASETRAIL, *args], env=environ, capture_output=True, text=True, timeout=60,
                check=False,
            )  # fmt: skip
            assert result.returncode == 2, (args, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("casetrail: error: schema ")
            assert f"CREATE SCHEMA {schema} AUTHORIZATION {role}" in lines[0]
            assert "Traceback" not in result.stderr
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
