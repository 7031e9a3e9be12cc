"""scale: how request latencies grow with the store, from 10k to 1M events (issue 23).

For each size a store of N events over N/10 case files (event counts per file skewed: most
have a handful, a few have hundreds; `bench.workload.event_counts`) is built through the
aggregate's methods and saved many case files per transaction, and the read models and the
evidence log are caught up. Every store also gets the same 20 probe files (`add_probes`: a minor
with a unique ID number, consulted and assigned to a probe unit), an auditor and the probe
unit's member. Each larger store is then measured against the smallest (the reference), both
served at once by real servers (`bench.server`, the service as it ships, its read models
followed as in production), block by block, one client each (`CONCURRENCY`: a
latency the request's own, not a queue's), every kind of request in every block. In a block
both stores are asked the same requests side by side, in the same seconds (a duet,
`bench.loadgen.run_side_by_side`), so that the host's other load weighs on both alike;
`--in-turns` asks them one after the other, in turns (ABBA):

- `case_read`: `GET /v1/cases/{id}`, case files drawn with a Zipf-skewed hot set (s = 1.1), by
  the street's coordinator and the reporting villages; each read stores its access event first;
- `ledger_page`: `GET /v1/ledger`, the coordinator's ledger (台账): pages 1-20 of the street
  (Zipf), or the first pages filtered by village, risk or status, 50 rows a page, each row that
  shows identity recorded;
- `lookup`: `POST /v1/cases/search` of a probe minor's ID number (the blind index; one file);
- `worklist`: `GET /v1/worklists/assignments` of the probe unit's member (its 20 assignments);
- `access_log`: `GET /v1/cases/{id}/accesses` of a probe file, by a compliance auditor: its
  first page, full from the start (each probe file's log is given a page of the
  coordinator's reads before the server starts).

The results a request returns are the same size in both stores, so what grows is the store's
own cost. Target (issue 23): at the largest size, p99 at most 1.2 times the reference's, for
every kind, judged on the ratio of the pooled p99s with a 95% paired block-bootstrap interval
(`bench.harness.bootstrap_ratio`): `ok`, `MISS`, or `undecided` when the interval straddles 1.2.
Absolute latencies are printed and kept as indicative (they move with the machine's load).

Building a store takes time, so it is built in bulk (`bench.seeding`: real events saved by
`Application.save` in 3 processes, the files' data keys made in one transaction per save, the
read models following in processes of their own, then the evidence log) and SQLite stores are
kept under `$CASETRAIL_BENCH_CACHE` (default /tmp/casetrail-bench-cache), keyed by the chain of
sizes they grew by (a larger store extends the next smaller one of the run), seed and workload
version; each run works on a copy, so that its access events and probes never accumulate in the
cached store. PostgreSQL stores are built afresh in a throw-away schema each run (and
`ANALYZE`d), up to 1M events as SQLite's.

    .venv/bin/python -m bench.scale                 # SQLite and PostgreSQL 10k, 100k, 1M
                                                    # (200 blocks a comparison; about 80 min in all)
    .venv/bin/python -m bench.scale --quick         # SQLite 10k and 100k, 6 short blocks
    .venv/bin/python -m bench.scale --sizes 10000,100000 --no-postgres
    .venv/bin/python -m bench.scale --build-only     # only build the SQLite stores into the cache
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import httpx
from faker import Faker

from bench.harness import (
    Interval,
    Percentiles,
    Target,
    Zipf,
    bootstrap_ratio,
    describe,
    free_port,
    machine,
    percentile,
    print_targets,
    write_results,
)
from bench.loadgen import LoadClient, LoadResult, encode_request, run_side_by_side
from bench.reads import PURPOSE_OF, Tokens
from bench.seeding import Apart, populate_apart, save_in_bulk
from bench.server import Server, service_env
from bench.stores import (
    DEFAULT_POSTGRES_URL,
    Store,
    analyze_postgres,
    postgres_store,
    selected_stores,
    store_settings,
)
from bench.workload import (
    COORDINATOR,
    DEFAULT_SEED,
    STREET,
    StoredCase,
    event_counts,
    populate,
    readers_of,
    register_actors,
    register_people,
    reporter_of,
)
from domain import commands as cmd
from domain.access import Actor, Channel, Client, access_event
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import ProtectionFunction, Purpose, Role
from gateway import keyring
from gateway.auth import OVERLAP_SECONDS
from gateway.bootstrap import open_application, open_evidence
from gateway.cli.demo import GOVERNANCE_OFFICE, VILLAGES, synthetic_report
from gateway.http.routes.access import LOG_PAGE
from gateway.settings import Settings

# Clients per store: one connection, so one request in flight a store. Two stores are served at
# once on this two-core machine, each by two API processes and its followers. At 8 clients a
# store a p99 was the scheduler's queue (bench/README.md, thirteenth round). At 2, each block's
# two fresh connections landed on the same API process about half the time (its accept loop
# takes every connection pending) and then queued on that process's interpreter lock: 1,000
# worklists took 1.4 s or 2.5-2.7 s of wall time, 2.3-2.8 s of CPU either way, so a block's
# tail was where its connections landed, not the store's size (fourteenth round).
# `--concurrency N` still runs.
CONCURRENCY: Final = 1
# Blocks of a full run: a p99 ratio's interval narrows with the tail's episodes sampled; 200
# blocks (about 5 minutes a comparison on SQLite at one client) decided 5 of 5 kinds at 1M.
FULL_BLOCKS: Final = 200
QUICK_BLOCKS: Final = 6
# Issue 23: at the largest size, p99 at most 1.2 times the smallest store's, every kind.
GROWTH_TARGET: Final = 1.2
OK_STATUS: Final = frozenset({200})
EVENTS_PER_CASE: Final = 10
# Bump when the workload changes, so that cached stores built by an older one are not used.
WORKLOAD_VERSION: Final = 2
# Processes saving a store's events at once when it is built (`bench.seeding.populate_apart`):
# more than the two cores, since each spends part of its time waiting for the writer lock.
BUILD_WORKERS: Final = 3
# The read models' views as they follow a store being built, one process per entry.
FOLLOWER_VIEWS: Final = ("ledger", "reports", "screening,accesses")
# PostgreSQL to 1M as SQLite since the seventeenth round: issue 23 asks every kind's growth at
# 1M (bench/README.md); its 1M store is built afresh each run (about 4 minutes).
FULL_SIZES: Final[dict[str, tuple[int, ...]]] = {
    "sqlite": (10_000, 100_000, 1_000_000),
    "postgres": (10_000, 100_000, 1_000_000),
}
QUICK_SIZES: Final[dict[str, tuple[int, ...]]] = {"sqlite": (10_000, 100_000), "postgres": ()}
# Requests of each kind per block and side. Ledger pages as many as the other kinds since the
# fourteenth round: at 16 a block their p99 was the 32nd slowest of 3,200 and its growth's
# interval twice as wide as the others' (1.117 [0.966, 1.232] at 1M, bench/README.md). Access
# logs twice as many since the sixteenth: at 40, SQLite's 1M figure was undecided in two full
# runs of four (0.990 [0.750, 1.203], 1.042 [0.978, 1.408]), its p99 where the tail is sparse.
# Lookups and worklists too since the seventeenth: at 40 the sixteenth round's run B left
# SQLite's worklists at 100k (1.047 [0.898, 1.294]) and lookups at 1M (1.008 [0.958, 1.220])
# undecided, each decided in the other run; the interval narrows as the tail's count grows.
FULL_PER_BLOCK: Final = {
    "case_read": 120,
    "ledger_page": 40,
    "lookup": 80,
    "worklist": 80,
    "access_log": 80,
}
QUICK_PER_BLOCK: Final = {k: max(4, v // 2) for k, v in FULL_PER_BLOCK.items()}


def cache_root() -> Path:
    return Path(os.environ.get("CASETRAIL_BENCH_CACHE") or "/tmp/casetrail-bench-cache")  # noqa: S108


def _progress(label: str) -> Any:
    started = time.perf_counter()
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 10 or done == total:
            last[0] = now
            rate = done / (now - started)
            print(f"    {label}: {done:,}/{total:,} events ({rate:,.0f}/s)", flush=True)

    return report


def build(
    home: Path, url: str, events: int, seed: int, *, base: int = 0, workers: int = 1
) -> list[StoredCase]:
    """Keys, events and caught-up read models and evidence log for one size; the case files
    it added. `base`: the store in `home` already holds a smaller store of `base` events (a
    copy of it, keys included), which is extended by the rest instead of built again.
    `workers`: processes saving the events at once (`bench.seeding.populate_apart`).

    Through `bench.seeding`: every event saved by `Application.save`, the files' data keys made
    in one transaction per save; the read models follow the store as it grows, in a process of
    their own, by their own views from one decoding of the log; the evidence log is built
    after the events, beside the read models' last stretch."""
    if not base:
        keyring.init_keys(home / "keys")
    env = service_env(home, url)
    settings = Settings.from_env(env)
    app = CaseTrail(env=settings.application_env())
    try:
        added = events - base
        counts = event_counts(added // EVENTS_PER_CASE, added, seed + base)
        t0 = time.perf_counter()
        # The views in processes of their own (each decodes the log for itself): one alone
        # followed at half the rate the workers saved at.
        following = [Apart(f"readmodels:{views}", env) for views in FOLLOWER_VIEWS]
        try:
            if workers > 1:
                register_people(app)  # once, before the workers (each would race to)
                cases = populate_apart(env, counts, seed + base, workers, home)
            else:
                cases = populate(
                    app,
                    counts,
                    seed + base,
                    progress=_progress(f"building {events:,} ({base:,} there)"),
                    save=save_in_bulk,
                )
        except BaseException:
            for one in following:
                one.process.kill()
            raise
        built = time.perf_counter() - t0
        evidence = Apart("evidence", env)
        for one in following:
            one.finish()
        caught_up = time.perf_counter() - t0
        evidence.finish()
        print(
            f"    added {added:,} events in {built:.0f} s; read models (following them) caught "
            f"up by {caught_up:.0f} s, the evidence log by {time.perf_counter() - t0:.0f} s"
        )
    finally:
        app.close()
    return cases


def catch_up_evidence(settings: Settings) -> None:
    """The evidence log (issue 6's Merkle tree over every event) caught up, as a server that
    has run for a while keeps it: else the measured server would spend the run building it."""
    t0 = time.perf_counter()
    app = open_application(settings)  # also installs the store guard and the evidence tables
    try:
        evidence = open_evidence(settings, app)
        try:
            evidence.catch_up()
        finally:
            evidence.close()
    finally:
        app.close()
    print(f"    evidence log caught up in {time.perf_counter() - t0:.0f} s", flush=True)


def _save_cases(path: Path, cases: Sequence[StoredCase]) -> None:
    path.write_text(json.dumps([[str(c.id), c.village, c.events] for c in cases]))


def _load_cases(path: Path) -> list[StoredCase]:
    return [StoredCase(UUID(i), v, n) for i, v, n in json.loads(path.read_text())]


def cached_sqlite(events: int, seed: int, ladder: Sequence[int], workers: int = 1) -> Path:
    """The cached store of `events` events, built if missing: by extending the cached store
    of the next smaller size of `ladder` (itself built the same way), so that a run of 10k,
    100k and 1M builds 1M events, not 1.11M. Its name holds the chain of sizes it grew by;
    `built.json` in it says how (by how many processes, each drawing its files from a seed of
    its own, and how long it took)."""
    chain = [s for s in sorted(set(ladder)) if s < events] + [events]
    base = chain[-2] if len(chain) > 1 else 0
    name = "+".join(str(s) for s in chain)
    cached = cache_root() / f"scale-sqlite-{name}-s{seed}-v{WORKLOAD_VERSION}"
    if (cached / "complete").exists():
        print(f"    using the store cached in {cached}")
        return cached
    shutil.rmtree(cached, ignore_errors=True)
    before: list[StoredCase] = []
    if base:
        smaller = cached_sqlite(base, seed, chain[:-1], workers)
        t0 = time.perf_counter()
        shutil.copytree(smaller, cached)
        (cached / "complete").unlink()
        before = _load_cases(cached / "cases.json")
        print(
            f"    extending the {base:,}-event store (copied in {time.perf_counter() - t0:.1f} s)"
        )
    else:
        cached.mkdir(parents=True)
    url = f"sqlite:///{cached / 'casetrail.sqlite'}"
    t0 = time.perf_counter()
    cases = build(cached, url, events, seed, base=base, workers=workers)
    how = {"events": events, "extended": base, "workers": workers}
    how["seconds"] = round(time.perf_counter() - t0)
    (cached / f"built-{events}.json").write_text(json.dumps(how) + "\n")
    _save_cases(cached / "cases.json", before + cases)
    (cached / "complete").write_text("ok\n")
    return cached


@contextmanager
def sqlite_home(
    events: int, seed: int, work: Path, ladder: Sequence[int] = (), workers: int = 1
) -> Iterator[tuple[Path, str, list[StoredCase]]]:
    """A working copy of the cached store of this size (built first if missing)."""
    cached = cached_sqlite(events, seed, ladder, workers)
    home = work / f"sqlite-{events}"
    t0 = time.perf_counter()
    shutil.copytree(cached, home)
    copied = time.perf_counter() - t0
    # The copy's pages (1.5 GB at 1M events) are written back now, not behind the measured
    # server's first durable commits. (Suspected at first of the 2-10 s stalls in the first
    # blocks at 1M; those were the user registry's scans, bench/README.md "scale", fourth round.)
    os.sync()
    synced = time.perf_counter() - t0
    print(f"    working copy in {copied:.1f} s, written to disk by {synced:.1f} s")
    try:
        yield home, f"sqlite:///{home / 'casetrail.sqlite'}", _load_cases(cached / "cases.json")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def postgres_home(
    events: int, seed: int, work: Path, base_url: str, workers: int = 1
) -> Iterator[tuple[Path, str, list[StoredCase]]]:
    home = work / f"postgres-{events}"
    with postgres_store(base_url, f"{events}", prefix="bench_scale") as url:
        cases = build(home, url, events, seed, workers=workers)
        analyze_postgres(url)  # statistics as autovacuum keeps them (bench/stores.py)
        try:
            yield home, url, cases
        finally:
            shutil.rmtree(home, ignore_errors=True)


def ledger_plan(tokens: Tokens, rng: random.Random, count: int) -> list[bytes]:
    pages = Zipf(20)
    headers = tokens.headers(COORDINATOR, "consultation")
    plan = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.6:
            query = f"page={pages.draw(rng) + 1}&per_page=50"
        elif draw < 0.8:
            query = f"village={rng.choice(VILLAGES)}&page={rng.randint(1, 3)}&per_page=50"
        elif draw < 0.9:
            query = f"risk={rng.choice(('high', 'urgent'))}&page=1&per_page=50"
        else:
            query = "status=intervening&page=1&per_page=50"
        plan.append(encode_request("GET", f"/v1/ledger?{query}", headers))
    return plan


def read_plan(
    cases: Sequence[StoredCase], tokens: Tokens, rng: random.Random, count: int
) -> list[bytes]:
    zipf = Zipf(len(cases))
    plan = []
    for _ in range(count):
        case = cases[zipf.draw(rng)]
        actor = readers_of(case, rng)
        headers = tokens.headers(actor, PURPOSE_OF[str(actor.role)])
        plan.append(encode_request("GET", f"/v1/cases/{case.id}", headers))
    return plan


# Who reads what beyond the case reads and ledger pages: a compliance auditor reads access logs;
# a member of a probe unit reads its worklist (the probe files' assignments).
AUDITOR: Final = Actor("bench-auditor", Role.COMPLIANCE_AUDITOR, GOVERNANCE_OFFICE, STREET)
PROBE_UNIT: Final = "bench-probe-unit"
PROBE_MEMBER: Final = Actor("bench-probe-member", Role.UNIT_MEMBER, PROBE_UNIT, STREET)
PROBES: Final = 20
PROBE_CLIENT: Final = Client(address="127.0.0.1", user_agent="casetrail-bench")
KINDS: Final = ("case_read", "ledger_page", "lookup", "worklist", "access_log")


@dataclass(frozen=True)
class Probe:
    """A probe file: the same minor (a unique ID number) in every store, assigned to the probe
    unit, so that a lookup finds one file, the unit's worklist holds `PROBES` items and an
    access log holds a page of reads and what the run adds, whatever the store's size."""

    case_id: UUID
    id_number: str


def add_probes(home: Path, url: str, seed: int) -> list[Probe]:
    """Store the probe files (and register the auditor and the probe unit's member) in a
    working copy, before its server starts; its followers index them."""
    settings = Settings.from_env(service_env(home, url))
    app = CaseTrail(env=settings.application_env())
    try:
        register_actors(app, AUDITOR, PROBE_MEMBER)
        faker = Faker("zh_CN")
        faker.seed_instance(seed + 23)
        rng = random.Random(seed + 23)
        by = COORDINATOR.as_record()
        probes, cases = [], []
        for n in range(PROBES):
            village = VILLAGES[n % len(VILLAGES)]
            body = synthetic_report(faker, rng, village=village, today=date.today())
            report = cmd.ReportClue.model_validate(body)
            case = Case.report(report, street=STREET, by=reporter_of(village).as_record())
            case.hold_consultation(
                cmd.HoldConsultation(
                    held_on=date.today(), participants=[GOVERNANCE_OFFICE], decision="探针"
                ),
                by=by,
            )
            case.assign_unit(
                cmd.AssignUnit(
                    unit=PROBE_UNIT,
                    function=ProtectionFunction.FAMILY,
                    task="探针任务",
                    due_on=date.today() + timedelta(days=14),
                ),
                by=by,
            )
            probes.append(Probe(case.id, report.minor.id_number))
            cases.append(case)
        app.save(*cases)
        # Each probe file's access log starts a page long (the endpoint's default page), so
        # that every access_log request answers one full page from the first block on: the
        # same work in every block and in both stores, not a log growing through the run.
        # The reads are the coordinator's, decided by the service's own rules on each file.
        for case in cases:
            _, decision = app.authorise_read(
                case.id,
                COORDINATOR,
                Purpose.CONSULTATION,
                f"bench-probe-{case.id.hex}-0",
                channel=Channel.API,
                client=PROBE_CLIENT,
            )
            app.store_events(
                [
                    access_event(
                        decision,
                        case_id=case.id,
                        actor=COORDINATOR,
                        purpose=Purpose.CONSULTATION,
                        request_id=f"bench-probe-{case.id.hex}-{k}",
                        case_version=case.version,
                        channel=Channel.API,
                        client=PROBE_CLIENT,
                    )
                    for k in range(1, LOG_PAGE)
                ]
            )
    finally:
        app.close()
    return probes


def lookup_plan(probes: Sequence[Probe], tokens: Tokens, rng: random.Random, n: int) -> list[bytes]:
    headers = tokens.headers(COORDINATOR, "consultation")
    return [
        encode_request("POST", "/v1/cases/search", headers, {"id_number": p.id_number})
        for p in (rng.choice(probes) for _ in range(n))
    ]


def worklist_plan(tokens: Tokens, n: int) -> list[bytes]:
    headers = tokens.headers(PROBE_MEMBER, "intervention")
    return [encode_request("GET", "/v1/worklists/assignments", headers) for _ in range(n)]


def access_log_plan(
    probes: Sequence[Probe], tokens: Tokens, rng: random.Random, n: int
) -> list[bytes]:
    headers = tokens.headers(AUDITOR, "compliance_review")
    return [
        encode_request("GET", f"/v1/cases/{p.case_id}/accesses", headers)
        for p in (rng.choice(probes) for _ in range(n))
    ]


@dataclass
class Side:
    """One store of a comparison: its server, client, cases, probes and results per kind."""

    events: int
    server: Server
    client: LoadClient
    tokens: Tokens
    cases: list[StoredCase]
    probes: list[Probe]
    settings: dict[str, Any]
    results: dict[str, LoadResult]
    blocks: dict[str, list[list[float]]]

    def plan(self, kind: str, rng: random.Random, n: int) -> list[bytes]:
        if kind == "case_read":
            return read_plan(self.cases, self.tokens, rng, n)
        if kind == "ledger_page":
            return ledger_plan(self.tokens, rng, n)
        if kind == "lookup":
            return lookup_plan(self.probes, self.tokens, rng, n)
        if kind == "worklist":
            return worklist_plan(self.tokens, n)
        return access_log_plan(self.probes, self.tokens, rng, n)


@contextmanager
def side(
    store: Store, events: int, args: argparse.Namespace, work: Path, runner: asyncio.Runner
) -> Iterator[Side]:
    """A working store of `events` events with its probes, and its server, ready."""
    with ExitStack() as stack:
        if store == "sqlite":
            home, url, cases = stack.enter_context(
                sqlite_home(events, args.seed, work, args.size_plan["sqlite"], args.build_workers)
            )
        else:
            home, url, cases = stack.enter_context(
                postgres_home(events, args.seed, work, args.postgres_url, args.build_workers)
            )
        probes = add_probes(home, url, args.seed)
        env = service_env(
            home,
            url,
            CASETRAIL_READMODEL_URL=f"sqlite:///{home / 'readmodels.sqlite'}"
            if store == "sqlite"
            else url,
        )
        app = CaseTrail(env=Settings.from_env(env).application_env())
        settings = store_settings(app)
        app.close()
        log = work / f"scale-{store}-{events}.log"
        server = stack.enter_context(
            Server(port=free_port(), variant="audited", env=env, log_path=log)
        )
        client = LoadClient(server.port, args.concurrency, runner)
        stack.callback(client.close)
        found = Side(
            events,
            server,
            client,
            Tokens(home),
            cases,
            probes,
            settings,
            {},
            {k: [] for k in KINDS},
        )
        wait_indexed(found)
        yield found


def wait_indexed(found: Side, timeout: float = 120.0) -> None:
    """Until the followers have indexed the probe files: a lookup of the last finds it."""
    deadline = time.monotonic() + timeout
    probe = found.probes[-1]
    headers = found.tokens.headers(COORDINATOR, "consultation")
    url = f"http://127.0.0.1:{found.server.port}/v1/cases/search"
    while time.monotonic() < deadline:
        answer = httpx.post(url, json={"id_number": probe.id_number}, headers=headers, timeout=10)
        if answer.status_code == 200 and answer.json().get("rows"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the probe files were not indexed within {timeout:.0f} s")


def measure(
    store: Store, reference: int, events: int, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """The store of `events` events against the `reference` store (the smallest), both served
    at once, block by block (side by side, or in turns with `--in-turns`), every kind of
    request in every block."""
    print(
        f"\n== scale / {store}: {events:,} events over {events // EVENTS_PER_CASE:,} cases, "
        f"against {reference:,} events, {args.blocks} blocks "
        f"{'in turns' if args.in_turns else 'side by side'} =="
    )
    sizes = {"per block": {k: args.per_block[k] for k in KINDS}}
    print(f"  requests {sizes}")
    with (
        asyncio.Runner() as runner,  # one event loop for both sides' clients
        side(store, reference, args, work, runner) as small,
        side(store, events, args, work, runner) as large,
    ):
        started = time.monotonic()  # both ready (the first started earlier)
        sides = (small, large)
        print("  store    " + " ".join(f"{k}={v}" for k, v in large.settings.items()))
        for one in sides:  # warm-up: every kind once over
            for kind in KINDS:
                one.client.run(one.plan(kind, random.Random(args.seed), 20), OK_STATUS)
        # For its first OVERLAP_SECONDS an API process's user registry refreshes from position
        # 0 (gateway/auth.py: the overlap's safe start), reading the whole log every 2 s: a
        # start-up cost of the service (seconds at 1M events, bench/README.md "scale"), not
        # the growth this measures in a server that has been running.
        settle = OVERLAP_SECONDS + 5 - (time.monotonic() - started)
        if settle > 0:
            print(f"  waiting {settle:.0f} s more: the servers' start-up overlap")
            time.sleep(settle)
        per = args.per_block
        for block in range(args.blocks):
            for kind in KINDS:
                # The same draws for both sides, keyed by the side's place (not its size).
                plans = {
                    n: (
                        one.client,
                        one.plan(kind, random.Random(f"{args.seed}-{block}-{kind}"), per[kind]),
                    )
                    for n, one in enumerate(sides)
                }
                if args.in_turns:  # one side at a time, ABBA
                    first = 0 if (block + KINDS.index(kind)) % 2 == 0 else 1
                    groups = [[first], [1 - first]]
                else:  # side by side: both stores in the same seconds
                    groups = [[0, 1]]
                answers: dict[int, LoadResult] = {}
                for group in groups:
                    answers |= run_side_by_side({n: plans[n] for n in group}, OK_STATUS)
                for n, one in enumerate(sides):
                    one.results.setdefault(kind, LoadResult()).add(answers[n])
                    one.blocks[kind].append(answers[n].latencies_ms)
            line = "  ".join(
                f"{k} {percentile(small.blocks[k][-1], 99):.0f}/"
                f"{percentile(large.blocks[k][-1], 99):.0f}"
                for k in KINDS
            )
            print(f"  block {block + 1:>2}/{args.blocks} p99 ms small/large: {line}", flush=True)
        found: dict[str, Any] = {
            "store": store,
            "events": events,
            "reference_events": reference,
            "settings": large.settings,
            "kinds": {},
        }
        for kind in KINDS:
            growth = bootstrap_ratio(large.blocks[kind], small.blocks[kind], 99)
            entry: dict[str, Any] = {"p99_growth": asdict(growth)}
            for label, one in (("reference", small), ("store", large)):
                result = one.results[kind]
                p = Percentiles.of(result.histogram)
                entry[label] = {
                    "events": one.events,
                    "requests": result.requests,
                    "per_second": round(result.per_second, 1),
                    "latency_ms": p.as_dict(),
                    "statuses": dict(result.statuses),
                    "unexpected": result.unexpected,
                }
                print(f"  {kind:<12} {one.events:>9,} events  {p.line()}")
                if result.unexpected:
                    print(f"    unexpected answers: {[u[:160] for u in result.unexpected]}")
            print(f"  {kind:<12} p99 growth {growth.text()}")
            found["kinds"][kind] = entry
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", help="comma-separated event counts (for every store)")
    parser.add_argument(
        "--blocks", type=int, help=f"blocks (default {FULL_BLOCKS}, quick {QUICK_BLOCKS})"
    )
    parser.add_argument(
        "--in-turns",
        action="store_true",
        help="ask the two stores one after the other, in turns (ABBA), not side by side",
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--build-workers",
        type=int,
        default=BUILD_WORKERS,
        help=f"processes saving events at once when a store is built (default {BUILD_WORKERS})",
    )
    parser.add_argument(
        "--measure",
        help="comma-separated: which of the larger sizes to measure (default: every one); "
        "the others still make the chain a larger store is built from",
    )
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="build the SQLite stores of the sizes into the cache and measure nothing",
    )
    args = parser.parse_args(argv)
    args.blocks = args.blocks or (QUICK_BLOCKS if args.quick else FULL_BLOCKS)
    args.per_block = QUICK_PER_BLOCK if args.quick else FULL_PER_BLOCK
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.sizes:
        given = tuple(sorted(int(s) for s in args.sizes.split(",")))
        sizes = {"sqlite": given, "postgres": given}
    if any(len(v) == 1 for v in sizes.values()):
        parser.error("--sizes needs two sizes at least: the smallest is the reference")
    args.size_plan = sizes
    args.measure = {int(s) for s in args.measure.split(",")} if args.measure else set()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"scale benchmark: {', '.join(KINDS)} at {args.concurrency} concurrent clients, "
        f"sizes {args.size_plan}, each against the smallest "
        f"{'in turns' if args.in_turns else 'side by side'}"
    )
    print(f"machine: {describe(info)}")
    if args.build_only:
        sizes = args.size_plan["sqlite"]
        for events in sizes:
            t0 = time.perf_counter()
            print(f"\n== scale / sqlite: the cached store of {events:,} events ==")
            where = cached_sqlite(events, args.seed, sizes, args.build_workers)
            print(f"  {where} ready in {time.perf_counter() - t0:.0f} s", flush=True)
        return 0
    stores, skipped = selected_stores(
        args.postgres_url,
        sqlite=not args.no_sqlite,
        postgres=bool(args.size_plan["postgres"]) and not args.no_postgres,
        postgres_off_reason=(
            "--no-postgres" if args.no_postgres else "no PostgreSQL sizes in this mode"
        ),
    )
    results: list[dict[str, Any]] = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-scale-") as tmp:
        for store in stores:
            sizes = args.size_plan[store]
            for events in sizes[1:]:
                if args.measure and events not in args.measure:
                    continue
                found = measure(store, sizes[0], events, args, Path(tmp))
                results.append(found)
                for kind in KINDS:
                    entry = found["kinds"][kind]
                    growth = Interval(**entry["p99_growth"])
                    note = (
                        f"p99 {entry['store']['latency_ms']['p99_ms']:.1f} ms at "
                        f"{events // 1000:,}k, {entry['reference']['latency_ms']['p99_ms']:.1f} "
                        f"ms at {sizes[0] // 1000:,}k (indicative)"
                    )
                    targets.append(
                        Target.of_interval(
                            "scale",
                            store,
                            f"{kind} p99 at {events // 1000:,}k / at {sizes[0] // 1000:,}k",
                            growth,
                            GROWTH_TARGET,
                            "max",
                            note=note,
                        )
                    )
    print_targets(targets)
    path = write_results(
        "scale",
        {
            "benchmark": "scale",
            "unit": "p99 latency at each size over the smallest store's, same turns",
            "machine": info,
            "workload": {
                "sizes": args.size_plan,
                "events_per_case": EVENTS_PER_CASE,
                "concurrency": args.concurrency,
                "blocks": args.blocks,
                "per_block": args.per_block,
                "probes": PROBES,
                "seed": args.seed,
                "workload_version": WORKLOAD_VERSION,
            },
            "results": results,
            "targets": [t.as_dict() for t in targets],
            "skipped": skipped,
        },
    )
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
