"""A service on PostgreSQL keeps few connections open while idle.

Every pool of the library kept five connections open: one idle service (two API workers and
the projections' process) held 47 of the server's 100 default connections, and two services
and their builders used them all up (bench/README.md, "Targets, 2026-12-06, thirteenth round";
the setups that failed with "couldn't get a connection after 5.00 sec"). Each pool now keeps
one and grows on demand (`gateway.store.eventstore.POSTGRES_POOL_KEPT`, `POSTGRES_POOL_MAX`).

Proven here, counted by the server (`pg_stat_activity`, this test's connections named through
libpq's `PGAPPNAME`): the API application with its read models and followers, in one process,
holds at most `IDLE_BUDGET` connections once started and idle; a burst of concurrent reads is
answered in full, its pools grown for it and never beyond their bound.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from fastapi.testclient import TestClient

from domain.taxonomy import Role
from gateway.http.app import create_app
from gateway.settings import Settings
from gateway.store.eventstore import POSTGRES_POOL_MAX
from tests.conftest import PG_DSN, TokenFactory
from tests.integration.planted import planted_case

# One process: the events' pool, the read models', the evidence log's, the followers' own
# listening connections: 10 here; with five kept a pool, the same process held 17.
IDLE_BUDGET = 12


def _connections(name: str) -> int:
    with psycopg.connect(PG_DSN, autocommit=True, application_name="casetrail-counter") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _settled(name: str, seconds: float = 20.0) -> int:
    """The count once it has not changed for a second (the followers start in threads)."""
    deadline = time.monotonic() + seconds
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = _connections(name)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            return now
        time.sleep(0.1)
    return last


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_an_idle_service_keeps_few_connections_and_a_burst_is_answered(
    settings: Settings, auth: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"casetrail-test-{uuid.uuid4().hex[:12]}"
    # Every libpq connection this process opens from now on (the service's, not the token
    # registrar's, opened before) carries the name.
    monkeypatch.setenv("PGAPPNAME", name)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        idle = _settled(name)
        assert 0 < idle <= IDLE_BUDGET, idle
        created = client.post(
            "/v1/cases",
            json=planted_case("dongshan-village", seed=2301).body,
            headers=auth(Role.REPORTER, "dongshan-village"),
        )
        assert created.status_code == 201, created.text
        path = f"/v1/cases/{created.json()['id']}"
        headers = auth(Role.COORDINATOR, "chengguan-governance-office", purpose="consultation")
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = pool.map(lambda _: client.get(path, headers=headers).status_code, range(240))
            statuses = list(answers)
        assert statuses == [200] * 240
        busy = _connections(name)
        # Grown for the burst, within the pools' bounds (a handful of pools, each at most
        # POSTGRES_POOL_MAX, and the followers' own).
        assert busy <= 6 * POSTGRES_POOL_MAX
