"""A follower process killed with SIGKILL at random points during a burst of events, restarted
each time, ends with exactly the rows of a clean rebuild: no event applied twice, none skipped.

The follower is the real command, `casetrail projections run`, in a process of its own; the
burst is written through the application by this process meanwhile. Each kill lands while the
follower is working through a backlog (it is killed soon after it starts moving again).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from domain.application import CaseTrail
from gateway import keyring
from gateway.bootstrap import open_application, readmodel_config
from gateway.settings import Settings
from projections.follower import Follower
from projections.readmodels import VIEW_NAMES, ReadModels
from tests.projections.workload import Workload

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))
KILLS = 4


def _tables(readmodels: ReadModels) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: recorder.dump(table)
        for recorder in readmodels.recorders.values()
        for table in recorder.view.tables
    }


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)


def _moved_past(follower: Follower, position: int) -> Callable[[], bool]:
    return lambda: follower.position() > position


class FollowerProcess:
    def __init__(self, settings: Settings, log: IO[str]) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")},
            "CASETRAIL_HOME": str(settings.home),
            "CASETRAIL_DATABASE_URL": settings.database_url,
            "CASETRAIL_LOG_LEVEL": "warning",
        }
        self.log = log
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [CASETRAIL, "projections", "run", "--batch-size", "10", "--poll", "0.05"],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
            text=True,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(10) == -signal.SIGKILL

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


def test_sigkilled_follower_ends_identical_to_a_clean_rebuild(
    settings: Settings, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    application: CaseTrail = open_application(settings)
    observer = ReadModels(application, readmodel_config(settings))
    assert observer.config.index_key == keyring.load_index_key(settings.keys_dir)
    workload = Workload(application, seed=seed)
    workload.cases(20)
    burst_done = threading.Event()
    burst_errors: list[BaseException] = []

    def burst() -> None:
        try:
            while not burst_done.is_set():
                workload.cases(5)
        except BaseException as exc:  # reported below
            burst_errors.append(exc)

    ledger = observer.follower("ledger")
    reports = observer.follower("reports")
    kills: list[tuple[int, int, int]] = []  # (ledger position, reports position, head)
    with (tmp_path / "follower.log").open("w") as log:
        follower = FollowerProcess(settings, log)
        writer = threading.Thread(target=burst)
        writer.start()
        try:
            for _ in range(KILLS):
                before = ledger.position()
                follower.start()
                _wait_for(_moved_past(ledger, before), 60, "the follower to move")
                time.sleep(rng.uniform(0.0, 0.3))
                head = application.recorder.max_notification_id() or 0
                follower.kill()
                kills.append((ledger.position(), reports.position(), head))
        finally:
            burst_done.set()
            writer.join(60)
        assert not burst_errors, burst_errors
        head = application.recorder.max_notification_id() or 0
        follower.start()
        _wait_for(lambda: ledger.position() == head and reports.position() == head, 120, "catch-up")
        assert follower.stop() == 0, (tmp_path / "follower.log").read_text()

    context = f"seed {seed}, kills at (ledger, reports, head): {kills}"
    interrupted = [k for k in kills if k[0] < k[2] or k[1] < k[2]]
    assert len(interrupted) >= 2, f"kills did not land during the backlog: {context}"
    followed = _tables(observer)
    assert len(followed["ledger_cases"]) == len(workload.bodies), context
    for name in VIEW_NAMES:
        observer.rebuild(name)
    rebuilt = _tables(observer)
    for table, rows in rebuilt.items():
        assert followed[table] == rows, f"{table} differs from a clean rebuild ({context})"
    observer.close()
    application.close()
