"""The relay looks at the store because a commit woke it, not because a timer ran out.

On PostgreSQL the store's NOTIFY wakes it; on SQLite, where the relay is another process than
the API, the file's `PRAGMA data_version` (`gateway.messaging.relay.relay_waker`). Each test
gives the relay a fallback timer of 30 s and commits the assignment from another process (as
the API would), then checks that the unit holds the notice, and that every look the relay took
meanwhile was caused by a commit (`RelayStats.woken_by_commit`), none by the timer. How fast
that is, is measured by `bench/notice_latency.py`, not asserted here.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from domain import commands as cmd
from domain.access import Actor
from domain.taxonomy import Role
from domain.units import RegisterUnit
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.messaging.broker import EmbeddedBroker, NatsSettings
from gateway.messaging.broker_config import NatsLayout
from gateway.messaging.registry import register_unit, write_broker_config
from gateway.messaging.relay import (
    PostgresCommitWaker,
    Relay,
    RelayOptions,
    SqliteCommitWaker,
    relay_waker,
)
from gateway.messaging.sealing import UnitCredentials, open_envelope
from gateway.settings import Settings
from tests.integration.planted import planted_case
from tests.messaging.stack import connect_as, free_port, require_nats_server

STREET = "chengguan-street"
POLICE = "chengguan-police-station"
REPORTER = Actor("user-reporter", Role.REPORTER, "dongshan-village", STREET)
FALLBACK_SECONDS = 30.0
ROOT = Path(__file__).resolve().parents[2]

# Run in a child process: the assignment is committed by another process, as by the API.
ASSIGN = """
import os, sys, uuid
from datetime import date, timedelta
from domain import commands as cmd
from domain.access import Actor
from domain.taxonomy import Role
from gateway.bootstrap import open_application
from gateway.settings import Settings

coordinator = Actor(
    "user-coordinator", Role.COORDINATOR, "chengguan-governance-office", "chengguan-street"
)
application = open_application(Settings.from_env(os.environ))
try:
    assignment = application.change_case(
        uuid.UUID(sys.argv[1]),
        coordinator,
        "assign_unit",
        lambda case: case.assign_unit(
            cmd.AssignUnit(
                unit=sys.argv[2],
                function="online",
                task="核查网络欺凌线索。",
                due_on=date.today() + timedelta(days=5),
            ),
            by=coordinator.as_record(),
        ),
    )
finally:
    application.close()
print(assignment)
"""


def assign_from_another_process(settings: Settings, case_id: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    env.update(
        {
            "CASETRAIL_HOME": str(settings.home),
            "CASETRAIL_DATABASE_URL": settings.database_url,
            "PYTHONPATH": str(ROOT),
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", ASSIGN, case_id, POLICE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_commit_from_another_process_wakes_the_relay(tmp_path: Path, settings: Settings) -> None:
    require_nats_server()
    port = free_port()
    nats = NatsSettings(url=f"tls://127.0.0.1:{port}", port=port)
    layout = NatsLayout(settings.home)
    application = open_application(settings)
    broker = EmbeddedBroker(layout, host="127.0.0.1", port=port)
    credentials_path = tmp_path / "police.pem"
    try:
        register_unit(
            settings,
            application,
            RegisterUnit(unit_id=POLICE, name="城关派出所", type="police_station", street=STREET),
            credentials_path,
        )
        write_broker_config(settings, application, nats)
        broker.start()
        case_id = application.report_clue(cmd.ReportClue(**planted_case().body), REPORTER)
        credentials = UnitCredentials.load(credentials_path)
        relay = Relay(
            application,
            nats_settings=nats,
            layout=layout,
            signer=keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service"),
            index_key=keyring.load_index_key(settings.keys_dir),
            options=RelayOptions(poll_seconds=FALLBACK_SECONDS, reminder_interval=0),
        )

        async def run() -> tuple[dict[str, Any], int, int]:
            stop = asyncio.Event()
            task = asyncio.create_task(relay.run(stop))
            try:
                head = application.recorder.max_notification_id() or 0
                deadline = time.monotonic() + 30
                while not (relay.stats.connected and relay.position() >= head):
                    assert time.monotonic() < deadline, "the relay did not catch up"
                    assert not task.done(), "the relay stopped"
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)  # idle: waiting for a commit
                by_commit, by_timer = relay.stats.woken_by_commit, relay.stats.woken_by_timer
                assignment = await asyncio.to_thread(
                    assign_from_another_process, settings, str(case_id)
                )
                nc = await connect_as(
                    nats, layout, credentials_path, inbox_prefix=f"_INBOX_{credentials.user}"
                )
                try:
                    pull = await nc.jetstream().pull_subscribe_bind(
                        durable=credentials.user, stream="CASETRAIL"
                    )
                    # Well under the fallback timer: only a wake-up can have sent it.
                    [message] = await pull.fetch(1, timeout=FALLBACK_SECONDS / 2)
                    await message.ack()
                finally:
                    await nc.close()
                content = open_envelope(
                    message.data,
                    recipient=credentials.user,
                    private_key=credentials.sealing_key,
                    service_key=credentials.service_key,
                ).content
                assert content["body"]["assignment"]["id"] == assignment
                return (
                    content,
                    relay.stats.woken_by_commit - by_commit,
                    relay.stats.woken_by_timer - by_timer,
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)  # the stop ends a wait in progress at once

        content, by_commit, by_timer = asyncio.run(run())
        assert content["kind"] == "assignment"
        assert by_commit >= 1
        assert by_timer == 0
    finally:
        broker.stop()
        application.close()


def test_the_relay_waker_matches_the_store(settings: Settings) -> None:
    application = open_application(settings)
    try:
        waker = relay_waker(application)
        try:
            if settings.database_url.startswith("postgresql"):
                assert isinstance(waker, PostgresCommitWaker)
            else:
                assert isinstance(waker, SqliteCommitWaker)
        finally:
            waker.close()
    finally:
        application.close()


def test_data_version_moves_on_another_connection_s_commit(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x INTEGER)")
    waker = SqliteCommitWaker(str(path))
    stop = threading.Event()
    try:
        if sys.platform == "linux":
            assert waker.writes is not None  # sleeps in the kernel until a file is written
        # Nothing committed since the waker was made: the timer runs out.
        assert waker.wait(0.05, stop) is False
        # A commit after the waker was made, before its wait: not missed.
        writer.execute("INSERT INTO t VALUES (1)")
        assert waker.wait(FALLBACK_SECONDS, stop) is True
        assert waker.wait(0.05, stop) is False
        # A commit during the wait wakes it.
        timer = threading.Timer(0.1, lambda: writer.execute("INSERT INTO t VALUES (2)"))
        timer.start()
        started = time.monotonic()
        assert waker.wait(FALLBACK_SECONDS, stop) is True
        assert time.monotonic() - started < FALLBACK_SECONDS
        timer.join()
        # A commit long after the last write (the watch asleep in the kernel) wakes it too.
        time.sleep(1.2)
        writer.execute("INSERT INTO t VALUES (3)")
        assert waker.wait(FALLBACK_SECONDS, stop) is True
        # A stop ends the wait.
        stop.set()
        assert waker.wait(FALLBACK_SECONDS, stop) is False
    finally:
        waker.close()
        writer.close()
