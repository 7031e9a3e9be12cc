"""The disk fills up under a running service on SQLite (issue 22, "Outages").

The service's home (keys, the events' file, the read models' file) is on a tmpfs of a few MB
(`faults.Tmpfs`, root only: skipped elsewhere, a failure when CI=true). Once the service serves,
a file fills the disk to its last byte. Then every read and command is answered 503
problem+json `store-full` (never data, never a 5xx other than 503: the read's access event
could not be stored, so nothing is disclosed); space is freed and the same requests succeed,
the service not restarted. Finally, the service stopped: `casetrail verify` passes, SQLite's
`integrity_check` is `ok` on both files, each command answered 201 is stored once, and each read
answered with data has its `CaseAccessed`.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from domain.case import Case
from gateway import keyring
from gateway.settings import Settings
from tests.integration.live_service import LiveService, cli
from tests.reliability.faults import Tmpfs
from tests.reliability.test_outages_store import (
    Client,
    every_disclosure_recorded,
    refused,
    until_served,
    wait_listed,
)

DISK_BYTES = 12 * 1024 * 1024


def test_a_full_disk_is_a_named_503_and_leaves_the_store_intact(tmp_path: Path) -> None:
    disk = Tmpfs(tmp_path / "disk", DISK_BYTES)
    home = disk.path / "home"
    try:
        keyring.init_keys(home / "keys")
        service = LiveService(home, tmp_path / "service.log").start(timeout=90)
        try:
            client = Client(service)
            created = [client.report()]
            client.case_id = created[0].json()["id"]
            assert client.read().status_code == 200
            wait_listed(client)

            filler = disk.fill()
            assert disk.free() == 0
            for _ in range(2):
                refused(client.read(), "store-full")
                refused(client.ledger(), "store-full")
                answer = client.report()
                created.append(answer)
                refused(answer, "store-full")

            filler.unlink()
            assert until_served(client.read).status_code == 200
            created.append(until_served(client.report))
            assert created[-1].status_code == 201
            service.caught_up()
            # The service's own checkpointer signs again once the disk has room (its first
            # checkpoint may have met the full disk): `verify` checks the store against it.
            wait_signed(home)
            assert service.process is not None and service.process.poll() is None
        finally:
            service.stop()

        report = cli(home, "verify")
        assert report.startswith("intact"), report
        for name in ("casetrail.sqlite", "readmodels.sqlite"):
            with sqlite3.connect(home / name) as connection:
                assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
        assert every_disclosure_recorded(settings, client) >= 2
        stored = stored_cases(settings)
        accepted = {a.json()["id"] for a in created if a.status_code == 201}
        assert accepted <= stored and len(accepted) == 2
    finally:
        disk.unmount()


def wait_signed(home: Path, timeout: float = 90) -> None:
    """Until the service has signed a checkpoint (`casetrail checkpoint list`: one line each)."""
    deadline = time.monotonic() + timeout
    while "\tsigned" not in cli(home, "checkpoint", "list"):
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint signed within {timeout:.0f}s of the disk's recovery")
        time.sleep(0.5)


def stored_cases(settings: Settings) -> set[str]:
    from gateway.bootstrap import open_application  # noqa: PLC0415 (only here)

    application = open_application(settings)
    try:
        return {
            str(event.originator_id)
            for notification in application.notifications()
            if isinstance(
                event := application.mapper.to_domain_event(notification),
                Case.ClueReported,  # type: ignore[attr-defined]
            )
        }
    finally:
        application.close()
