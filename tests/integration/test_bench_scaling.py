"""The scaling benchmark's accounting of where the CPU goes (issue 21), and the profile's split
of an audited read into the audit's parts (issue 23): CPU used by a database's PostgreSQL
backend is counted as that database's and no one else's, CPU of a process under the server
as the server's (the followers' child apart), and a profile's samples go to the part their
stack names.

Real parts: a real PostgreSQL database of the test's own (the benchmark's `postgres_database`),
real child processes burning CPU, a py-spy raw profile file in the format py-spy writes. Nothing
timed: the checks are of who gets the CPU, with margins far wider than a tick.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench.profile import audit_parts
from bench.scaling import PARTS, cpu_between, postgres_database, sample
from tests.conftest import PG_DSN, require_postgres

# About a second of CPU in PostgreSQL's backend (a few hundred ms on a fast machine).
_BUSY_QUERY = "SELECT count(*) FROM generate_series(1, 4000000) AS s(i) WHERE i % 7 = 3"


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    require_postgres()
    with postgres_database(PG_DSN, "test") as found:
        yield found


@pytest.mark.postgres
def test_a_backend_of_the_database_is_counted_as_its_postgres_and_nobody_elses(
    database: tuple[str, str],
) -> None:
    url, name = database
    with psycopg.connect(url) as conn, psycopg.connect(PG_DSN) as other:
        conn.execute("SELECT 1")
        other.execute("SELECT 1")
        # The "server" here is a process that does nothing: only the backend works.
        idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            before = sample(idle.pid, name, None)
            conn.execute(_BUSY_QUERY)
            after = sample(idle.pid, name, None)
            # Another database's backend working is not this database's.
            other.execute(_BUSY_QUERY)
            later = sample(idle.pid, name, None)
        finally:
            idle.kill()
            idle.wait()
    ours = cpu_between(before, after)
    theirs = cpu_between(after, later)
    assert ours["postgres"] >= 0.1, ours
    assert ours["api"] + ours["followers"] < 0.05, ours
    assert theirs["postgres"] < 0.05, theirs
    assert set(ours) == set(PARTS)


@pytest.mark.parametrize("busy", ["api", "followers"])
def test_a_servers_processes_are_its_api_and_the_followers_child_its_followers(
    busy: str, tmp_path: Path
) -> None:
    # A stand-in "server": a parent whose children are an API worker and a followers' process
    # (named as `casetrail serve` names it: "projections run" in its command line); one of
    # them burns CPU, the other sleeps. Each child leaves a file once started, so that its
    # start (imports) is not in the measured window.
    burn = "while True: pass"
    rest = "import time; time.sleep(60)"
    api, followers = (burn, rest) if busy == "api" else (rest, burn)
    scripts = []
    for name, body in (("api", api), ("followers", followers)):
        script = tmp_path / f"{name}.py"
        script.write_text(f"open({str(tmp_path / name)!r} + '.started', 'w').close()\n{body}\n")
        scripts.append(script)
    started = [tmp_path / "api.started", tmp_path / "followers.started"]
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, {str(scripts[0])!r}])\n"
            f"subprocess.Popen([sys.executable, {str(scripts[1])!r}, 'projections' + ' run'])\n"
            "time.sleep(60)\n",
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while not all(p.exists() for p in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        before = sample(parent.pid, "no_such_database", None)
        time.sleep(2.0)
        after = sample(parent.pid, "no_such_database", None)
        children = [pid for pid, (part, _) in after.by_pid.items() if part in ("api", "followers")]
        children.remove(parent.pid)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()
    used = cpu_between(before, after)
    idle = "followers" if busy == "api" else "api"
    assert len(children) == 2, after.by_pid
    assert used["pg_shared"] == 0, used
    assert used[busy] >= 0.05, used
    assert used[idle] <= 0.02, used
    assert used["postgres"] == 0, used


def _raw_profile(path: Path, stacks: dict[str, int]) -> Path:
    path.write_text("".join(f"{stack} {count}\n" for stack, count in stacks.items()))
    return path


def test_profile_samples_go_to_the_audit_part_their_stack_names(tmp_path: Path) -> None:
    # As py-spy --subprocesses writes them: a child's stack starts with its parent's process
    # frame; a command line may hold a ";"; methods are named with their class.
    api = 'process 10:"python -m bench.server --port 1";thread (0x1)'
    followers = (
        'process 10:"python -m bench.server --port 1";process 11:"python -c from gateway.cli.'
        'main import main; main() projections run --supervised-by 10";thread (0x2)'
    )
    committer = (
        f"{api};Thread._bootstrap (threading.py:1);GroupCommit._run (domain/group_commit.py:174)"
    )
    request = (
        f"{api};Server.run (uvicorn/server.py:1);CaseTrail.read_case (domain/application.py:620)"
    )
    path = _raw_profile(
        tmp_path / "profile.txt",
        {
            f"{committer};store_events (domain/application.py:546);put (eventsourcing/"
            "persistence.py:1);to_stored_event (eventsourcing/persistence.py:2)": 3,
            f"{committer};store_events (domain/application.py:546);put (eventsourcing/"
            "persistence.py:1);insert_events (eventsourcing/postgres.py:3)": 5,
            f"{committer};_take_batch (domain/group_commit.py:170)": 2,
            f"{request};GroupCommit.record_all (domain/group_commit.py:130);"
            "wait (threading.py:1)": 1,
            f"{request};access_event (domain/access.py:650)": 4,
            f"{request};CaseTrail._decide (domain/application.py:810);"
            "decide (domain/access.py:390)": 6,
            f"{request};_get_case (domain/application.py:590)": 20,
            f"{followers};follow (projections/follower.py:1);append (projections/evidence/"
            "log.py:9)": 7,
            f"{followers};follow (projections/follower.py:1);apply (projections/ledger/x.py:1)": 8,
        },
    )
    parts, total = audit_parts(path)
    assert total == 56
    assert parts == {
        "access event encoded + encrypted": 3,
        "durable (group) commit": 5,
        "hand-off (committer side)": 2,
        "hand-off (reader side)": 1,
        "access event built": 4,
        "access decision": 6,
        "rest of the read (HTTP, token, loading the case, answer)": 20,
        "evidence log (followers' process)": 7,
        "read models (followers' process)": 8,
    }
