"""Crash safety (issue 22): the real service, killed with SIGKILL at random moments under a load
of commands and reads from several clients, keeps every promise it made before it died.

Each cycle: `casetrail serve` (one process: the API, its embedded read-model followers and the
Merkle log) takes reports, follow-ups and reads from `CLIENTS` threads; once they have had some
answers, it is killed with SIGKILL after a random pause, mid-request, mid-commit, mid-batch of
a follower or of the evidence log, wherever it happens to be. Then it is started again on the
same store and port, and `campaign.check_everything` holds it to every answer ever given: each
command answered with success is stored exactly once, each read answered with data has its
access event in the access-log read model (by the request id the client sent, all of them),
`casetrail verify` passes, and every read model equals a rebuild from zero.

`make test` runs a few cycles per store (SQLite, PostgreSQL); `make soak` runs
`SOAK_CYCLES` per store. The seed is fixed per test (printed, and in every failure's
message); the kill's moment and the clients' choices follow from it, the server's timing does
not. Figures: docs/reliability.md.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from functools import partial
from pathlib import Path
from typing import Final

import pytest

from tests.reliability.campaign import (
    Bodies,
    Service,
    Tally,
    check_everything,
    checks_can_fail,
    mixed_load,
    prepare,
    run_threads,
    store_for,
    wait_gone,
)

CLIENTS: Final = 4
SOAK_CYCLES: Final = 50
# Answers a cycle's clients must have had before the kill's random pause starts: the kill then
# lands under load, never on an idle service just started.
ANSWERS_BEFORE_KILL: Final = 12
MAX_PAUSE_SECONDS: Final = 1.5


def crash_cycles(kind: str, cycles: int, root: Path, seed: int, *, workers: int = 1) -> str:
    """`cycles` kills and restarts on a store of `kind`, `casetrail serve` running `workers`
    API processes; a line of figures for the report."""
    print(f"crash safety on {kind}: seed {seed}, {cycles} cycles, {workers} workers")
    rng = random.Random(seed)
    started = time.monotonic()
    with store_for(kind, root) as store:
        home = root / "home"
        tokens = prepare(home, store.env)
        env = {
            **store.env,
            "CASETRAIL_LOG_LEVEL": "warning",
            "CASETRAIL_WORKERS": str(workers),
        }
        service = Service(home, root / "service.log", env=env).start(timeout=180)
        tally, bodies = Tally(), Bodies(seed)
        checked = None
        try:
            for cycle in range(cycles):
                context = f"{kind}, seed {seed}, cycle {cycle + 1} of {cycles}"
                stop = threading.Event()
                pause = rng.uniform(0, MAX_PAUSE_SECONDS)
                orphans: set[int] = set()
                before = sum(tally.answers.values())
                tag = (seed << 16) | cycle
                clients = [
                    partial(
                        mixed_load,
                        service.base,
                        tokens,
                        tally,
                        bodies,
                        tag=tag,
                        thread=n,
                        seed=rng.randrange(1 << 30),
                        stop=stop,
                    )
                    for n in range(CLIENTS)
                ]

                def kill_under_load(
                    context: str = context,
                    before: int = before,
                    pause: float = pause,
                    stop: threading.Event = stop,
                    orphans: set[int] = orphans,
                ) -> None:
                    deadline = time.monotonic() + 120
                    while sum(tally.answers.values()) - before < ANSWERS_BEFORE_KILL:
                        assert time.monotonic() < deadline, f"no load reached it ({context})"
                        time.sleep(0.02)
                    time.sleep(pause)
                    orphans.update(service.kill())
                    stop.set()

                run_threads([*clients, kill_under_load], timeout=300)
                # Its workers and children stop by themselves (gateway/lifeline.py).
                wait_gone(orphans, 60, context)
                service.start(timeout=180)
                checked = check_everything(service, store, tally, context)
                print(
                    f"cycle {cycle + 1}: {checked.commands} commands, {checked.reads} "
                    f"disclosures verified, {time.monotonic() - started:.0f} s",
                    flush=True,
                )
            checks_can_fail(service, store, tally)
        finally:
            service.stop()
        assert checked is not None
        # One process: the kill cuts the requests in flight. Several: the workers, told by
        # their lifeline, finish theirs before they stop.
        assert workers > 1 or tally.unanswered >= cycles, (
            f"only {tally.unanswered} requests were cut by {cycles} kills: the kills did not "
            f"land under load (seed {seed})"
        )
    line = (
        f"{kind}: {cycles} cycles, {checked.commands} commands acknowledged and verified, "
        f"{checked.reads} disclosures verified by request id ({len(tally.reads)} reads), "
        f"{tally.unanswered} requests cut by the kills, {checked.events} events, "
        f"{time.monotonic() - started:.0f} s; answers {dict(sorted(tally.answers.items()))}"
    )
    print(line)
    return line


def _seed(request: pytest.FixtureRequest) -> int:
    return zlib.crc32(request.node.nodeid.encode())


@pytest.mark.parametrize(
    ("kind", "cycles"),
    [("sqlite", 2), pytest.param("postgres", 1, marks=pytest.mark.postgres)],
)
def test_sigkilled_service_keeps_every_acknowledged_command_and_recorded_read(
    kind: str, cycles: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    crash_cycles(kind, cycles, tmp_path, _seed(request))


def test_sigkilled_serve_leaves_no_process(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The production layout (two API workers, the followers in a child process): killed with
    SIGKILL, `casetrail serve` leaves nothing running (its workers had kept serving on the
    port, unsupervised, holding it), and the restart keeps every promise."""
    crash_cycles("sqlite", 1, tmp_path, _seed(request), workers=2)


@pytest.mark.soak
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_soak_fifty_kills_per_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    crash_cycles(kind, SOAK_CYCLES, tmp_path, _seed(request))
