"""The chaos run (issue 21): the production layout as real processes on loopback (PostgreSQL
under least-privilege roles, a three-node NATS cluster, two API processes, the relay,
`projections run`, two unit clients), loaded through both APIs while a broker node, an API
process, the relay and the projections process are each SIGKILLed and started again, the three
keys rotated and a backup taken in the middle (the long version); then held to every answer
(`tests/reliability/chaos.py` says what is checked).

`make test` runs one round of the four kills (about a minute); `make chaos` runs
`CHAOS_ROUNDS` rounds (`soak`). The seed is fixed per test and printed: the faults' order
and the clients' choices follow from it, the processes' timing does not. Figures: README
("The chaos run").
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import pytest

from tests.reliability.chaos import Chaos, Plan, database

CHAOS_ROUNDS = int(os.environ.get("CASETRAIL_CHAOS_ROUNDS", "3"))


def chaos_run(plan: Plan, root: Path, seed: int) -> None:
    print(f"chaos run: seed {seed}, {plan}")
    began = time.monotonic()
    with database() as db:
        chaos = Chaos(root, db, seed)
        try:
            chaos.start()
            started = time.monotonic()
            figures = chaos.run(plan)
            ran = time.monotonic()
            lines = chaos.check(plan)
            checked = time.monotonic()
        finally:
            chaos.close()
    lines.append(
        f"times: {started - began:.0f} s to start, {ran - started:.0f} s of load and faults, "
        f"{checked - ran:.0f} s of checks"
    )
    tally = chaos.tally
    print(
        f"{figures.operations} operations in {figures.seconds:.0f} s "
        f"({dict(sorted(tally.answers.items()))}, {tally.unanswered} unanswered: refused by a "
        f"killed API or cut by its kill); "
        f"kills {dict(figures.kills)}"
    )
    for line in [*figures.notes, *lines]:
        print("  " + line)


def _seed(request: pytest.FixtureRequest) -> int:
    return zlib.crc32(request.node.nodeid.encode())


@pytest.mark.postgres
def test_every_process_killed_under_load_nothing_lost_nothing_doubled(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    chaos_run(
        Plan(rounds=1, pause=1.0, clients=2, rotate=False, backup=False), tmp_path, _seed(request)
    )


@pytest.mark.soak
@pytest.mark.postgres
def test_chaos_soak(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    chaos_run(Plan(rounds=CHAOS_ROUNDS, pause=4.0, clients=4), tmp_path, _seed(request))
