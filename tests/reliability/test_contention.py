"""Contention (issue 22): many writers on one case file and many readers across files, all at
once, against the real service in its production layout (`CASETRAIL_WORKERS=2`: two API
processes on one port, the followers in a child process), on SQLite and on PostgreSQL.

`WRITERS` client threads each record follow-ups on the same case file while `READERS` threads
each read case files among `FILES`; all start together (a barrier). A writer whose command is
answered 409 or 503 (the answers that invite a retry) sends it again until it is stored. Then:
- every follow-up was answered 201 in the end, and the file holds each of them exactly once
  (no lost change, none doubled by a retry), and no other;
- every read answered with data has its access event, by request id, in the access-log view;
- no answer was a 5xx other than 503, and no other refusal came back;
- no client thread was still waiting when the time ran out (no deadlock);
- `casetrail verify` passes and every read model equals a rebuild (`campaign.check_everything`).

`make test` runs one round on SQLite, one request a client; `make soak` runs `SOAK_ROUNDS`
rounds of `SOAK_EACH` requests a client per store (SQLite and PostgreSQL) on the same service,
the file growing. The seed is fixed per test and printed. Figures: docs/reliability.md.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final
from uuid import UUID

import pytest

from domain.application import replay
from domain.case import Case
from gateway.bootstrap import open_application
from tests.reliability.campaign import (
    Bodies,
    Client,
    Service,
    Tally,
    Tokens,
    check_everything,
    prepare,
    run_threads,
    store_for,
)

WRITERS: Final = 50
READERS: Final = 200
FILES: Final = 20
SOAK_ROUNDS: Final = 10
SOAK_EACH: Final = 2


def _files(service: Service, tokens: Tokens, tally: Tally, seed: int) -> list[UUID]:
    """`FILES` case files, reported one after the other before the crowd arrives."""
    client = Client(service.base, tokens, tally, tag=seed, thread=0xFFFF)
    bodies, rng = Bodies(seed), random.Random(seed)
    try:
        files = [client.report(bodies, rng) for _ in range(FILES)]
    finally:
        client.close()
    assert all(files), f"the case files were not all reported: {tally.faults}"
    return [f for f in files if f is not None]


def crowd(
    service: Service,
    tokens: Tokens,
    tally: Tally,
    files: list[UUID],
    *,
    each: int,
    tag: int,
    seed: int,
) -> None:
    """One round: `WRITERS` writers on `files[0]` and `READERS` readers across `files`, all
    released at once, each sending `each` requests; each writer's follow-ups stored in the end,
    each reader's reads answered."""
    start = threading.Barrier(WRITERS + READERS)
    rng = random.Random(seed)
    failed: list[str] = []

    def writer(n: int) -> None:
        client = Client(service.base, tokens, tally, tag, n)
        try:
            start.wait(120)
            for i in range(each):
                if not client.follow_up(files[0], f"并发回访 {tag:x}-{n}-{i}", retry=True):
                    failed.append(f"writer {n}'s follow-up {i} was not stored")
        finally:
            client.close()

    def reader(n: int, picks: list[UUID]) -> None:
        client = Client(service.base, tokens, tally, tag, WRITERS + n)
        try:
            start.wait(120)
            for case_id in picks:
                if not client.read(case_id, retry=True):
                    failed.append(f"reader {n}'s read of {case_id} got no data")
        finally:
            client.close()

    targets: list[Callable[[], None]] = [partial(writer, n) for n in range(WRITERS)]
    picks = [[rng.choice(files) for _ in range(each)] for _ in range(READERS)]
    targets += [partial(reader, n, picks[n]) for n in range(READERS)]
    run_threads(targets, timeout=600)
    assert not failed, failed[:5]


def contention(kind: str, rounds: int, each: int, root: Path, seed: int) -> str:
    """`rounds` crowds on one service on a store of `kind`, each client sending `each`
    requests; then the checks. A line of figures for the report."""
    print(f"contention on {kind}: seed {seed}, {rounds} rounds of {each} requests a client")
    started = time.monotonic()
    with store_for(kind, root) as store:
        home = root / "home"
        tokens = prepare(home, store.env)
        env = {**store.env, "CASETRAIL_WORKERS": "2", "CASETRAIL_LOG_LEVEL": "warning"}
        service = Service(home, root / "service.log", env=env).start(timeout=180)
        tally = Tally()
        try:
            files = _files(service, tokens, tally, seed)
            for round_ in range(rounds):
                crowd(
                    service,
                    tokens,
                    tally,
                    files,
                    each=each,
                    tag=(seed << 16) | round_,
                    seed=seed + round_,
                )
            context = f"{kind}, seed {seed}, {rounds} rounds"
            checked = check_everything(service, store, tally, context)
            application = open_application(service.settings())
            try:
                busy: object = application.repository.get(files[0], projector_func=replay)
                assert isinstance(busy, Case)
                notes = [f["notes"] for f in busy.follow_ups]
            finally:
                application.close()
            expected = sorted(n for n, case in tally.follow_ups.items() if case == files[0])
            assert len(expected) == WRITERS * each * rounds, context
            assert sorted(notes) == expected, f"the busy file's follow-ups differ ({context})"
        finally:
            assert service.stop() == 0, service.logs()[-4000:]
    line = (
        f"{kind}: {rounds} rounds of {WRITERS} writers x {each} on one file and "
        f"{READERS} readers x {each} across {FILES} files; {checked.commands} commands "
        f"acknowledged and verified, {checked.reads} disclosures verified by request id, "
        f"{tally.retries} retries, {time.monotonic() - started:.0f} s; answers "
        f"{dict(sorted(tally.answers.items()))}"
    )
    print(line)
    return line


def _seed(request: pytest.FixtureRequest) -> int:
    return zlib.crc32(request.node.nodeid.encode()) & 0xFFFF


# PostgreSQL's round is in the soak (`test_soak_contention_rounds`): `make test`'s budget.
@pytest.mark.parametrize("kind", ["sqlite"])
def test_fifty_writers_on_one_file_and_two_hundred_readers(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    contention(kind, 1, 1, tmp_path, _seed(request))


@pytest.mark.soak
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_soak_contention_rounds(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    contention(kind, SOAK_ROUNDS, SOAK_EACH, tmp_path, _seed(request))
