"""A service on PostgreSQL keeps few connections open while idle.

Every pool of the library kept five connections open: one idle service (two API workers and
the projections' process) held 47 of the server's 100 default connections, and two services
and their builders used them all up (bench/README.md, "Targets, 2026-12-06, thirteenth round";
the setups that failed with "couldn't get a connection after 5.00 sec"). Each pool now keeps
one and grows on demand (`gateway.store.eventstore.POSTGRES_POOL_KEPT`, `POSTGRES_POOL_MAX`).

Proven here on the real service (`casetrail serve`, two API workers and the projections'
process, as production runs), its connections counted by the server (`pg_stat_activity`; the
service's own are named through libpq's `PGAPPNAME`, given to it alone): idle, it holds at most
`IDLE_BUDGET`; a burst of concurrent reads is answered in full, its pools grown for it within
their bounds.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from gateway import keyring
from gateway.store.eventstore import POSTGRES_POOL_MAX
from tests.conftest import PG_DSN, pg_url
from tests.integration.live_service import LiveService
from tests.integration.planted import planted_case

# Two API workers and the projections' process, each with its pools (events, read models,
# evidence log) and each follower's listening connection: about 21; with five kept a pool, 47.
IDLE_BUDGET = 30
VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"


def _connections(name: str) -> int:
    with psycopg.connect(PG_DSN, autocommit=True, application_name="casetrail-counter") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _settled(name: str, seconds: float = 30.0) -> int:
    """The count once it has not changed for two seconds (the workers and followers start at
    their own pace)."""
    deadline = time.monotonic() + seconds
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = _connections(name)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 2.0:
            return now
        time.sleep(0.2)
    return last


def test_an_idle_service_keeps_few_connections_and_a_burst_is_answered(
    pg_schema: str, tmp_path: Path
) -> None:
    name = f"casetrail-test-{uuid.uuid4().hex[:12]}"
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    env = {
        "CASETRAIL_DATABASE_URL": pg_url(pg_schema),
        "CASETRAIL_WORKERS": "2",
        "CASETRAIL_PROJECTIONS": "process",
    }
    service = LiveService(home, tmp_path / "service.log", env={**env, "PGAPPNAME": name})
    service.start(timeout=90)
    try:
        idle = _settled(name)
        assert 0 < idle <= IDLE_BUDGET, idle
        reporter = service.headers(service.token("reporter", VILLAGE))
        created = httpx.post(
            f"{service.base}/v1/cases",
            json=planted_case(VILLAGE, seed=2301).body,
            headers=reporter,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        url = f"{service.base}/v1/cases/{created.json()['id']}"
        coordinator = service.headers(service.token("coordinator", OFFICE), "consultation")

        def read(_: int) -> int:
            return httpx.get(url, headers=coordinator, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=24) as pool:
            statuses = list(pool.map(read, range(240)))
        assert statuses == [200] * 240
        # Grown for the burst, within the pools' bounds (three processes, a few pools each,
        # each at most POSTGRES_POOL_MAX, and the followers' own).
        assert idle <= _connections(name) <= 3 * 4 * POSTGRES_POOL_MAX
    finally:
        service.stop()
