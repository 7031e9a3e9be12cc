"""The benchmarks' own machinery (issue 23): the raw-save endpoint commands are measured against
exists only in the benchmark launcher and only when its setting says so, stores exactly the
events it is given, and asks for a token like every route; the verdicts on ratios say `ok`,
`MISS` or `undecided` from the interval, never `MISS` for a figure the interval cannot decide;
a server's profile is read process by process, whatever the processes' command lines hold;
a duet's block asks both sides in the same seconds.

Real parts: the service's own app and the launcher's (`bench.server.bench_app`) over the test's
SQLite or PostgreSQL store, with TestClient; nothing timed (bench/ measures, tests check).
"""

from __future__ import annotations

import asyncio
import http.server
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from faker import Faker
from fastapi.testclient import TestClient

from bench import profile
from bench.harness import (
    MISS,
    OK,
    UNDECIDED,
    Interval,
    PooledBlocks,
    Target,
    bootstrap_ratio,
    percentile,
)
from bench.loadgen import LoadClient, encode_request, run_side_by_side
from bench.server import (
    SAVE_PATH,
    VARIANT_ENV,
    Server,
    bench_app,
    decode_events,
    encode_events,
)
from bench.stores import analyze_postgres
from bench.workload import STREET, reporter_of
from domain import commands as cmd
from domain.application import CaseTrail
from domain.case import Case
from domain.clock import local_today
from domain.taxonomy import Role
from gateway.cli.demo import VILLAGES, synthetic_report
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.conftest import PG_DSN, TokenFactory, pg_url

FLAG = "CASETRAIL_BENCH_SAVE_ENDPOINT"
VILLAGE = VILLAGES[0]


def _paths(app: object) -> set[str]:
    return {getattr(route, "path", "") for route in getattr(app, "routes", [])}


def _environ(settings: Settings, flag: str) -> dict[str, str]:
    return {
        "CASETRAIL_HOME": str(settings.home),
        "CASETRAIL_DATABASE_URL": settings.database_url,
        FLAG: flag,
    }


def test_the_service_never_mounts_it_whatever_the_setting(settings: Settings) -> None:
    flagged = Settings.from_env(_environ(settings, "yes"))
    assert flagged.bench_save_endpoint is True
    assert SAVE_PATH not in _paths(create_app(flagged))


@pytest.fixture
def launcher(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, CaseTrail]]:
    """The benchmark launcher's app with the setting on, and the store opened beside it."""
    for key, value in _environ(settings, "yes").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(VARIANT_ENV, "audited")
    monkeypatch.setenv("CASETRAIL_PROJECTIONS", "off")
    app = bench_app()
    assert SAVE_PATH in _paths(app)
    application = CaseTrail(env=settings.application_env())
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, application
    finally:
        application.close()


def test_the_launcher_mounts_it_only_when_the_setting_says(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _environ(settings, "no").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(VARIANT_ENV, "audited")
    monkeypatch.setenv("CASETRAIL_PROJECTIONS", "off")
    assert SAVE_PATH not in _paths(bench_app())


def _new_case(seed: int) -> Case:
    faker = Faker("zh_CN")
    faker.seed_instance(seed)
    body = synthetic_report(faker, random.Random(seed), village=VILLAGE, today=local_today())
    report = cmd.ReportClue.model_validate(body)
    return Case.report(report, street=STREET, by=reporter_of(VILLAGE).as_record())


def test_a_raw_save_stores_exactly_the_events_it_is_given(
    launcher: tuple[TestClient, CaseTrail], auth: TokenFactory
) -> None:
    client, application = launcher
    case = _new_case(23)
    events = case.collect_events()
    body = encode_events(application, events)
    # The same events back, field for field, as the mapper would build them.
    assert [vars(e) for e in decode_events(application, body)] == [vars(e) for e in events]
    headers = {**auth(Role.REPORTER, VILLAGE), "content-type": "application/json"}
    answer = client.post(SAVE_PATH, content=body, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["saved"] == len(events)
    stored: Case = application.repository.get(case.id)
    assert stored.version == case.version
    assert vars(stored) == vars(case)


def test_a_raw_save_asks_for_a_token_like_every_route(
    launcher: tuple[TestClient, CaseTrail],
) -> None:
    client, application = launcher
    case = _new_case(24)
    body = encode_events(application, case.collect_events())
    answer = client.post(
        SAVE_PATH,
        content=body,
        headers={"content-type": "application/json", "accept": "application/json"},
        follow_redirects=False,
    )
    # Refused as any unauthenticated request off the API's paths is (a 303 to the sign-in
    # page, `gateway.http.problems.is_page_path`), and nothing stored.
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith("/signin")
    assert application.recorder.select_events(case.id) == []


# --- verdicts -----------------------------------------------------------------------------------


def test_the_interval_covers_the_median_at_the_stated_confidence() -> None:
    assert Interval.of([3.0, 1.0, 2.0, 4.0]).confidence == 0.875  # 4 blocks: min and max only
    eight = Interval.of([float(v) for v in range(8)])
    assert (eight.low, eight.high, eight.blocks) == (0.0, 7.0, 8)
    assert eight.confidence >= 0.99
    many = Interval.of([float(v) for v in range(24)])
    assert many.confidence >= 0.95
    assert (many.low, many.high) == (6.0, 17.0)  # ranks 7 and 18 of 24
    assert many.median == 11.5


def _target(low: float, high: float, kind: str = "min") -> Target:
    interval = Interval(median=(low + high) / 2, low=low, high=high, blocks=8, confidence=0.99)
    return Target.of_interval("s", "sqlite", "m", interval, 0.8, kind)


def test_a_verdict_is_ok_miss_or_undecided_from_the_whole_interval() -> None:
    assert _target(0.81, 0.95).verdict == OK
    assert _target(0.50, 0.79).verdict == MISS
    assert _target(0.70, 0.90).verdict == UNDECIDED  # straddles: never MISS
    assert _target(0.70, 0.90, kind="max").verdict == UNDECIDED
    assert _target(0.50, 0.79, kind="max").verdict == OK
    # A figure without an interval is judged on its value alone, as before.
    assert Target("s", "sqlite", "m", 0.7, 0.8, "min").verdict == MISS
    assert _target(0.70, 0.90).as_dict()["verdict"] == UNDECIDED


def test_the_block_bootstrap_decides_a_clear_difference_and_not_a_tie() -> None:
    rng = random.Random(5)
    base = [[rng.uniform(1, 10) for _ in range(100)] for _ in range(12)]
    slower = [[2 * v for v in block] for block in base]
    twice = bootstrap_ratio(slower, base)
    assert twice.median == pytest.approx(2.0)
    assert twice.low == pytest.approx(2.0) and twice.high == pytest.approx(2.0)
    noisy = [[rng.uniform(1, 10) for _ in range(100)] for _ in range(12)]
    tie = bootstrap_ratio(noisy, base)
    assert tie.low < 1.0 < tie.high
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


@pytest.mark.parametrize("q", [50.0, 99.0, 99.9])
def test_a_resampled_percentile_is_the_percentile_of_the_drawn_blocks_pooled(q: float) -> None:
    # bootstrap_ratio walks the values from the top instead of pooling each draw: the answer
    # must be the pool's, ties, unequal blocks and blocks drawn many times or never included.
    rng = random.Random(int(q * 10))
    blocks = [
        [float(rng.randint(1, 60)) for _ in range(rng.randint(1, 90))]
        for _ in range(rng.randint(1, 15))
    ]
    pooled = PooledBlocks(blocks)
    for _ in range(200):
        times_drawn = [0] * len(blocks)
        for _ in range(len(blocks)):
            times_drawn[rng.randrange(len(blocks))] += 1
        pool = [v for i, c in enumerate(times_drawn) for _ in range(c) for v in blocks[i]]
        assert pooled.percentile(times_drawn, q) == percentile(pool, q)


def test_a_blocks_cpu_counts_the_work_it_left_behind(tmp_path: Path) -> None:
    """A server's followers index a block's events after its last answer: the block's CPU is
    read once the server has gone quiet, so that work is the block's (`settled_cpu_seconds`).
    Here a child process stands in for it: it burns about 0.6 s of CPU after the block ends.
    Read at once (as before), none of it is counted; settled, all of it is."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6:\n    pass\n"
    child = subprocess.Popen([sys.executable, "-c", burn + "time.sleep(30)"])
    try:
        server = Server.__new__(Server)
        server.process = child
        at_once = server.cpu_seconds()
        settled = server.settled_cpu_seconds(window=0.2, limit=20.0)
        assert settled - at_once >= 0.4, (at_once, settled)
        assert settled >= 0.55, settled
    finally:
        child.kill()
        child.wait()


# --- side by side ---------------------------------------------------------------------------------


class _Rendezvous(http.server.BaseHTTPRequestHandler):
    """Answers 200 only once the other server has been asked something too (within 3 s), 503
    if it waits alone: a request answered 200 was served while the other side was busy."""

    protocol_version = "HTTP/1.1"
    mine: threading.Event
    theirs: threading.Event

    def do_GET(self) -> None:
        self.mine.set()
        status = 200 if self.theirs.wait(3.0) else 503
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@contextmanager
def _rendezvous_servers() -> Iterator[tuple[int, int]]:
    a, b = threading.Event(), threading.Event()
    servers = [
        http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), type("Side", (_Rendezvous,), {"mine": mine, "theirs": theirs})
        )
        for mine, theirs in ((a, b), (b, a))
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield servers[0].server_address[1], servers[1].server_address[1]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_side_by_side_blocks_ask_both_servers_in_the_same_seconds() -> None:
    """A duet's block (`run_side_by_side`) has both sides' requests in flight at once: each
    server here answers 200 only if the other is asked while it waits. Run in turns, the
    first side's server waits alone and answers 503: the check can fail."""
    request = encode_request("GET", "/", {})
    ok = frozenset({200})
    with _rendezvous_servers() as (port_a, port_b), asyncio.Runner() as runner:
        clients = {"a": LoadClient(port_a, 2, runner), "b": LoadClient(port_b, 2, runner)}
        try:
            found = run_side_by_side({k: (c, [request] * 6) for k, c in clients.items()}, ok)
            assert {k: dict(r.statuses) for k, r in found.items()} == {"a": {200: 6}, "b": {200: 6}}
            assert all(r.requests == 6 and len(r.latencies_ms) == 6 for r in found.values())
        finally:
            for client in clients.values():
                client.close()
    with _rendezvous_servers() as (port_a, _), asyncio.Runner() as runner:
        alone = LoadClient(port_a, 1, runner)
        try:
            assert dict(alone.run([request], ok).statuses) == {503: 1}
        finally:
            alone.close()


def test_side_by_side_clients_must_share_one_event_loop() -> None:
    with asyncio.Runner() as one, asyncio.Runner() as other:
        clients = {"a": LoadClient(1, 1, one), "b": LoadClient(1, 1, other)}
        with pytest.raises(ValueError, match="share one runner"):
            run_side_by_side({k: (c, []) for k, c in clients.items()}, frozenset({200}))


@pytest.mark.postgres
def test_a_bulk_built_postgres_store_is_analyzed_before_it_is_measured(pg_schema: str) -> None:
    """`bench.stores.analyze_postgres`: every table of the store's schema gets the planner's
    statistics (a bulk-built store measured at once had none, and this machine's server runs
    without autovacuum): its rows are known to the planner afterwards, not before."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for table in ("alpha", "beta"):
            conn.execute(f"CREATE TABLE {pg_schema}.{table} (n BIGINT PRIMARY KEY)")
            conn.execute(f"INSERT INTO {pg_schema}.{table} SELECT generate_series(1, 5000)")

        def analyzed() -> dict[str, bool]:
            rows = conn.execute(
                "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE schemaname = %s",
                [pg_schema],
            ).fetchall()
            return {name: done for name, done in rows}

        assert analyzed() == {"alpha": False, "beta": False}
        analyze_postgres(pg_url(pg_schema))
        assert analyzed() == {"alpha": True, "beta": True}


# A raw py-spy profile of a server and its children (`bench.profile.Profiler`, --subprocesses):
# the followers' process is started as `python -c "...; main()" projections run`, so its process
# frame holds a ";", the character stacks are split at.
_SERVER = 'process 10:"python -m bench.server --port 1 --variant audited"'
_WORKER = 'process 11:"python -B -c from multiprocessing.spawn import spawn_main; spawn_main(x)"'
_FOLLOWERS = 'process 12:"python -c from gateway.cli.main import main; main() projections run"'
_PROFILE = "\n".join(
    [
        f"{_SERVER};{_WORKER};thread (0x1);read_case (/app/gateway/http/routes/cases.py:125);"
        "decide (/app/domain/access.py:10) 7",
        f"{_SERVER};{_WORKER};thread (0x2);_run (/app/domain/group_commit.py:220);"
        "store_events (/app/domain/application.py:500) 3",
        f"{_SERVER};{_FOLLOWERS};thread (0x3);run (/app/projections/follower.py:800);"
        "apply (/app/projections/compliance/access_log.py:213) 5",
        # A sample of a process in no Python frame: not a sample of any function.
        f"{_SERVER};{_FOLLOWERS};thread (0x4) 4",
    ]
)


def test_a_profile_is_read_by_process_whatever_its_command_lines_hold(tmp_path: Path) -> None:
    path = tmp_path / "profile.txt"
    # Frames name files by their path in this checkout, as in a profile of a server run from it.
    root = str(Path(profile.__file__).resolve().parent.parent) + "/"
    path.write_text(_PROFILE.replace("/app/", root) + "\n")
    found = list(profile.stacks(path))
    assert [(s.process, s.frames, s.count) for s in found] == [
        (_WORKER, ("read_case (gateway/http/routes/cases.py)", "decide (domain/access.py)"), 7),
        (_WORKER, ("_run (domain/group_commit.py)", "store_events (domain/application.py)"), 3),
        (
            _FOLLOWERS,
            ("run (projections/follower.py)", "apply (projections/compliance/access_log.py)"),
            5,
        ),
    ]
    assert found[0].processes == (_SERVER, _WORKER)
    followers = profile.summary(path, process="projections run")
    assert "5 samples of processes naming 'projections run'" in followers
    assert "100.0%  apply (projections/compliance/access_log.py)" in followers
    assert "read_case" not in followers
    assert "main()" not in profile.summary(path)  # no fragment of a command line as a frame
    parts, total = profile.audit_parts(path)
    assert total == 15
    assert parts["read models (followers' process)"] == 5
    assert parts["durable (group) commit"] == 3
    assert parts["access decision"] == 7
