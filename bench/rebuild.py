"""rebuild: how fast the read models rebuild from zero, against a raw scan-and-decrypt of the
same event log, in the same run.

A fresh encrypted store (SQLite file, PostgreSQL schema) is filled with case histories and the
access events their reads leave. Then, timed:

- **scan**: `select_notifications` page by page and `mapper.to_domain_event` on every event
  (decrypt, authenticate, decode): the least any rebuild must do;
- **scan (case events)**: the same, for the topics the views read (they skip access events in
  the query);
- **rebuild ledger**, **rebuild reports**: `Follower.rebuild()`: empty the view, then read,
  decrypt and fold every case event into its tables, one transaction per batch with its
  tracking position.

Each round runs scan, rebuild ledger, rebuild reports, scan (ABBA: this shared machine's speed
drifts); a rebuild is compared with the mean of its round's two scans, and the figures are the
medians of the rounds. The ratio rebuild/scan is what a read model costs on top of reading the
log, which every rebuild must do. Rebuilds are checked: every case file has its ledger row and
every view ends at the end of the log.

    .venv/bin/python -m bench.rebuild            # 120,000 events, 2 rounds, SQLite and PostgreSQL
    .venv/bin/python -m bench.rebuild --quick    # 6,000 events, 1 round: checks that it works
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlparse, urlunparse
from uuid import UUID

import psycopg
from faker import Faker
from psycopg import sql

from bench.harness import describe, filesystem_of, machine, write_results
from domain import commands as cmd
from domain.access import IN_PROCESS_CLIENT, Actor, Channel, Decision, access_event
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import ProtectionFunction, Purpose, Role
from gateway.cli.demo import GOVERNANCE_OFFICE, MEMBER_UNITS, VILLAGES, synthetic_report
from gateway.store.eventstore import new_key_text, store_environment
from projections.ledger.view import CASE_TOPICS
from projections.readmodels import VIEW_NAMES, ReadModelConfig, ReadModels

Store = Literal["sqlite", "postgres"]

STREET: Final = "chengguan-street"
DEFAULT_EVENTS: Final = 120_000
QUICK_EVENTS: Final = 6_000
DEFAULT_ROUNDS: Final = 2
DEFAULT_SEED: Final = 20261129
DEFAULT_POSTGRES_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
# Share of the log that is access events (reads leave one each); the rest are case events.
ACCESS_SHARE: Final = 0.25
PAGE: Final = 500
COORDINATOR: Final = Actor("bench-coordinator", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)


# --- the event log -------------------------------------------------------------------------------


class Histories:
    """Case histories built in memory from a pool of validated commands (seeded), saved many
    cases per transaction: building pydantic commands costs more than storing events."""

    def __init__(self, seed: int) -> None:
        faker = Faker("zh_CN")
        faker.seed_instance(seed)
        self.rng = random.Random(seed)
        self.today = date.today()
        self.reports = [
            cmd.ReportClue.model_validate(
                synthetic_report(faker, self.rng, village=VILLAGES[n % len(VILLAGES)])
            )
            for n in range(300)
        ]
        self.follow_ups = [
            cmd.RecordFollowUp(visited_on=self.today, notes=faker.sentence(nb_words=20))
            for _ in range(50)
        ]
        self.consultation = cmd.HoldConsultation(
            held_on=self.today, participants=[GOVERNANCE_OFFICE], decision="会商决定分工介入。"
        )

    def case(self, events: int) -> Case:
        rng, by = self.rng, COORDINATOR.as_record()
        report = rng.choice(self.reports)
        village = report.minor.village
        case = Case.report(
            report,
            street=STREET,
            by={"user": "r", "role": "reporter", "unit": village, "street": STREET},
        )
        assignment: UUID | None = None
        function, unit = ProtectionFunction.FAMILY, MEMBER_UNITS[ProtectionFunction.FAMILY]
        for n in range(events - 1):
            if n == 0:
                case.hold_consultation(self.consultation, by=by)
            elif n == 1:
                function, unit = rng.choice(list(MEMBER_UNITS.items()))
                assignment = case.assign_unit(
                    cmd.AssignUnit(
                        unit=unit,
                        function=function,
                        task="入户走访。",
                        due_on=self.today + timedelta(days=14),
                    ),
                    by=by,
                )
            elif n == 2 and assignment is not None:
                case.acknowledge_assignment(assignment, unit=unit, by=_member(unit))
            elif rng.random() < 0.6 or assignment is None:
                case.record_follow_up(rng.choice(self.follow_ups), by=by)
            else:
                case.record_intervention(
                    cmd.RecordIntervention.model_construct(
                        assignment_id=assignment,
                        function=function,
                        measure="home_visit",
                        notes="已走访。",
                        done_on=self.today,
                    ),
                    by=_member(unit),
                )
        return case


def _member(unit: str) -> dict[str, str]:
    return Actor(f"bench-member-{unit}", Role.UNIT_MEMBER, unit, STREET).as_record()


def fill(app: CaseTrail, events: int, seed: int) -> tuple[int, int]:
    """Store about `events` events; returns (case files, access events)."""
    histories = Histories(seed)
    rng = random.Random(seed + 1)
    stored = cases = accesses = 0
    pending: list[Any] = []
    while stored < events:
        if accesses < ACCESS_SHARE * stored:
            pending.append(
                access_event(
                    Decision(True, "coordinator_same_street", frozenset({"id", "status"})),
                    case_id=UUID(int=rng.getrandbits(128)),
                    actor=COORDINATOR,
                    purpose=Purpose.CONSULTATION,
                    request_id=secrets.token_hex(8),
                    case_version=None,
                    channel=Channel.API,
                    client=IN_PROCESS_CLIENT,
                )
            )
            stored += 1
            accesses += 1
        else:
            size = min(1 + int(rng.expovariate(1 / 5)), 60, max(1, events - stored))
            pending.append(histories.case(size))
            stored += size
            cases += 1
        if len(pending) >= 400:
            app.save(*pending)
            pending = []
    if pending:
        app.save(*pending)
    return cases, accesses


# --- stores --------------------------------------------------------------------------------------


@contextmanager
def fresh_store(
    store: Store, directory: Path, postgres_url: str
) -> Iterator[tuple[str, dict[str, str]]]:
    """(events URL, read models' environment), thrown away afterwards."""
    if store == "sqlite":
        yield (
            f"sqlite:///{directory / 'events.sqlite'}",
            store_environment(f"sqlite:///{directory / 'readmodels.sqlite'}", None),
        )
        return
    schema = f"bench_rebuild_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = urlunparse(urlparse(postgres_url)._replace(query=f"schema={schema}"))
    try:
        yield url, store_environment(url, None)
    finally:
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def postgres_unreachable(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


# --- measuring -----------------------------------------------------------------------------------


def scan(app: CaseTrail, topics: Sequence[str] = ()) -> int:
    """Read and decrypt every event (of `topics`) in pages, as a follower does."""
    count, start = 0, 0
    while True:
        page = app.recorder.select_notifications(
            start=start, limit=PAGE, topics=topics, inclusive_of_start=False
        )
        for notification in page:
            app.mapper.to_domain_event(notification)
        count += len(page)
        if len(page) < PAGE:
            return count
        start = page[-1].id


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _rebuild(readmodels: ReadModels, name: str) -> float:
    started = time.perf_counter()
    readmodels.rebuild(name)
    return time.perf_counter() - started


@dataclass
class Round:
    """One round, in ABBA order: scan, rebuild ledger, rebuild reports, scan (the machine's
    speed drifts; each rebuild is compared with the scans of its own round)."""

    scan_seconds: tuple[float, float]
    case_scan_seconds: float
    rebuild_seconds: dict[str, float]

    @property
    def scan(self) -> float:
        return statistics.mean(self.scan_seconds)

    def ratio(self, name: str) -> float:
        return self.rebuild_seconds[name] / self.scan


@dataclass
class Figures:
    store: str
    events: int
    case_events: int
    cases: int
    fill_seconds: float
    rounds: list[Round]

    def median(self, values: Sequence[float]) -> float:
        return statistics.median(values)

    @property
    def scan(self) -> float:
        return self.median([r.scan for r in self.rounds])

    @property
    def case_scan(self) -> float:
        return self.median([r.case_scan_seconds for r in self.rounds])

    def rebuild(self, name: str) -> float:
        return self.median([r.rebuild_seconds[name] for r in self.rounds])

    def ratio(self, name: str) -> float:
        return self.median([r.ratio(name) for r in self.rounds])

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "events": self.events,
            "case_events": self.case_events,
            "cases": self.cases,
            "fill_seconds": round(self.fill_seconds, 2),
            "rounds": [
                {
                    "scan_seconds": [round(s, 3) for s in r.scan_seconds],
                    "case_scan_seconds": round(r.case_scan_seconds, 3),
                    "rebuild_seconds": {k: round(v, 3) for k, v in r.rebuild_seconds.items()},
                    "ratio": {k: round(r.ratio(k), 3) for k in r.rebuild_seconds},
                }
                for r in self.rounds
            ],
            "median": {
                "scan_seconds": round(self.scan, 3),
                "scan_events_per_second": round(self.events / self.scan),
                "case_scan_seconds": round(self.case_scan, 3),
                "rebuild_seconds": {k: round(self.rebuild(k), 3) for k in VIEW_NAMES},
                "rebuild_case_events_per_second": {
                    k: round(self.case_events / self.rebuild(k)) for k in VIEW_NAMES
                },
                "ratio_to_scan": {k: round(self.ratio(k), 3) for k in VIEW_NAMES},
            },
        }


def measure(
    store: Store, events: int, seed: int, batch: int, rounds: int, postgres_url: str
) -> Figures:
    with (
        tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp,
        fresh_store(store, Path(tmp), postgres_url) as (url, readmodel_env),
    ):
        if store == "sqlite":
            print(f"  {store}: files on {filesystem_of(tmp)}")
        app = CaseTrail(env=store_environment(url, [new_key_text()]))
        try:
            fill_seconds, (cases, _) = timed(lambda: fill(app, events, seed))
            total = app.recorder.max_notification_id() or 0
            readmodels = ReadModels(
                app, ReadModelConfig(env=readmodel_env, index_key=os.urandom(32), batch_size=batch)
            )
            try:
                done: list[Round] = []
                case_events = 0
                for _ in range(rounds):
                    first = timed(lambda: scan(app))[0]
                    rebuilds = {name: _rebuild(readmodels, name) for name in VIEW_NAMES}
                    last = timed(lambda: scan(app))[0]
                    case_scan, case_events = timed(lambda: scan(app, CASE_TOPICS))
                    done.append(Round((first, last), case_scan, rebuilds))
                    _check(readmodels, cases)
            finally:
                readmodels.close()
            return Figures(store, total, case_events, cases, fill_seconds, done)
        finally:
            app.close()


def _check(readmodels: ReadModels, cases: int) -> None:
    """The rebuilt views hold every case file and stand at the end of the log."""
    with readmodels.ledger.reading() as db:
        (rows,) = db.execute("SELECT COUNT(*) AS n FROM {ledger_cases}")
    if int(rows["n"]) != cases:
        raise AssertionError(f"the ledger holds {rows['n']} rows for {cases} cases")
    if any(f.lag() for f in readmodels.followers.values()):
        raise AssertionError("a rebuild stopped short of the end of the log")


def report(figures: Figures) -> list[str]:
    lines = [
        f"{figures.store}: {figures.events:,} events ({figures.case_events:,} case events, "
        f"{figures.cases:,} files), filled in {figures.fill_seconds:.1f} s; "
        f"medians of {len(figures.rounds)} rounds",
        f"  scan and decrypt, all events   {figures.scan:7.2f} s  "
        f"{figures.events / figures.scan:9,.0f} events/s",
        f"  scan and decrypt, case events  {figures.case_scan:7.2f} s  "
        f"{figures.case_events / figures.case_scan:9,.0f} events/s",
    ]
    for name in VIEW_NAMES:
        seconds = figures.rebuild(name)
        per_round = ", ".join(f"{r.ratio(name):.2f}" for r in figures.rounds)
        lines.append(
            f"  rebuild {name:<8}               {seconds:7.2f} s  "
            f"{figures.case_events / seconds:9,.0f} case events/s  "
            f"rebuild/scan {figures.ratio(name):5.2f} (rounds: {per_round})"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--events", type=int, help=f"events in the log (default {DEFAULT_EVENTS:,})"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events")
    parser.add_argument("--batch-size", type=int, default=500, help="events per view transaction")
    parser.add_argument("--rounds", type=int, help="rounds per store (default 2; quick: 1)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    events = args.events or (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    info = machine()
    print(f"rebuild: {events:,} events, batch {args.batch_size}, seed {args.seed}")
    print(f"machine: {describe(info)}")
    stores: list[Store] = ["sqlite"]
    if not args.no_postgres:
        why = postgres_unreachable(args.postgres_url)
        if why is None:
            stores.append("postgres")
        else:
            print(f"SKIPPED postgres: unreachable at {args.postgres_url}: {why}")
    results = []
    started = time.perf_counter()
    for store in stores:
        rounds = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
        figures = measure(store, events, args.seed, args.batch_size, rounds, args.postgres_url)
        print("\n".join(report(figures)))
        results.append(figures.as_dict())
    print(f"done in {time.perf_counter() - started:.0f} s")
    path = write_results(
        "rebuild",
        {
            "machine": info,
            "events": events,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "access_share": ACCESS_SHARE,
            "results": results,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
