"""append: events appended per second through the domain, plaintext vs encrypted.

Each run stores N events through `CaseTrail`, as the gateway would: `report_clue` creates a case
(a new stream) and `change_case(..., "record_follow_up", ...)` loads a case, checks permission and
appends to its stream. Steady state is one creation and `FOLLOW_UPS_PER_CASE` follow-ups per step,
so streams stay short (at most 4 events) and every run does the same work. Commands are built and
validated before timing: the figures cover permission checks, the aggregate's rules, loading the
case, mapping, encryption (and decryption on load) and storage; not Faker nor command validation.

Plaintext and encrypted run side by side, each in its own fresh store (a new SQLite file, a new
PostgreSQL schema) after an untimed warm-up: the plan is cut into blocks of `BLOCK` operations and
the two modes take turns block by block, in ABBA order. The machine is shared and its disk
latency wanders by tens of percent from one second to the next; interleaving exposes both modes
to the same conditions, so their ratio stays meaningful even when the absolute figures move.
Each round starts again with fresh stores; throughput is the median of the rounds.

    .venv/bin/python -m bench.append            # 3000 events per run, 5 rounds
    .venv/bin/python -m bench.append --quick    # 300 events, 1 round: checks that it works
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal
from uuid import UUID

from faker import Faker
from hdrh.histogram import HdrHistogram

from bench.harness import (
    Percentiles,
    Target,
    describe,
    machine,
    new_histogram,
    print_targets,
    ratio_of,
    record_ns,
    write_results,
)
from bench.stores import (
    DEFAULT_POSTGRES_URL,
    Store,
    fresh_store,
    selected_stores,
    store_settings,
)
from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import Role
from gateway.cli.demo import GOVERNANCE_OFFICE, VILLAGES, synthetic_report
from gateway.store.eventstore import new_key_text, store_environment

Mode = Literal["plaintext", "encrypted"]

STREET: Final = "chengguan-street"
FOLLOW_UPS_PER_CASE: Final = 3
DEFAULT_EVENTS: Final = 3000
QUICK_EVENTS: Final = 300
DEFAULT_ROUNDS: Final = 5
# Operations per turn when the modes alternate: short enough to share bursts of disk latency.
BLOCK: Final = 50
MODES: Final[tuple[Mode, Mode]] = ("plaintext", "encrypted")
DEFAULT_SEED: Final = 20261129
SAVE_TARGET: Final = 1.10


# --- the workload ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    command: cmd.ReportClue
    actor: Actor


@dataclass(frozen=True)
class FollowUp:
    """A follow-up on the plan's `case`-th created case (its id is known only at run time)."""

    case: int
    command: cmd.RecordFollowUp
    actor: Actor

    def apply(self, case: Case) -> None:
        case.record_follow_up(self.command, by=self.actor.as_record())


Op = Report | FollowUp


def build_plan(events: int, seed: int) -> list[Op]:
    """`events` operations, one event each: creation i, then follow-ups on cases i-1..i-F."""
    faker = Faker("zh_CN")
    faker.seed_instance(seed)
    rng = random.Random(seed)
    today = date.today()
    coordinator = Actor("bench-coordinator", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)
    plan: list[Op] = []
    case = 0
    while len(plan) < events:
        village = VILLAGES[case % len(VILLAGES)]
        reporter = Actor(f"bench-reporter-{village}", Role.REPORTER, village, STREET)
        body = synthetic_report(faker, rng, village=village, today=today)
        plan.append(Report(cmd.ReportClue.model_validate(body), reporter))
        for back in range(1, FOLLOW_UPS_PER_CASE + 1):
            if case - back >= 0:
                notes = faker.sentence(nb_words=rng.randint(8, 24))
                command = cmd.RecordFollowUp(visited_on=today, notes=notes)
                plan.append(FollowUp(case - back, command, coordinator))
        case += 1
    return plan[:events]


# --- running one configuration ---------------------------------------------------------------


@dataclass
class Run:
    """One timed pass of the plan through one fresh store."""

    store: Store
    mode: Mode
    round: int
    events: int
    seconds: float = 0.0
    settings: dict[str, str] = field(default_factory=dict)
    all: HdrHistogram = field(default_factory=new_histogram, repr=False)
    create: HdrHistogram = field(default_factory=new_histogram, repr=False)
    append: HdrHistogram = field(default_factory=new_histogram, repr=False)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


def execute(app: CaseTrail, ops: Sequence[Op], ids: list[UUID], run: Run | None) -> None:
    """Apply operations, appending created case ids to `ids` (which follow-ups index), and time
    each one into `run` unless it is a warm-up (None)."""
    started = time.perf_counter_ns()
    for op in ops:
        t0 = time.perf_counter_ns()
        if isinstance(op, Report):
            ids.append(app.report_clue(op.command, op.actor))
        else:
            app.change_case(ids[op.case], op.actor, "record_follow_up", op.apply)
        elapsed = time.perf_counter_ns() - t0
        if run is not None:
            record_ns(run.all, elapsed)
            record_ns(run.create if isinstance(op, Report) else run.append, elapsed)
    if run is not None:
        run.seconds += (time.perf_counter_ns() - started) / 1e9


def run_round(
    store: Store, urls: dict[Mode, str], *, round_no: int, plan: Sequence[Op], warmup: Sequence[Op]
) -> list[Run]:
    """Both modes through the same plan, taking turns block by block (ABBA)."""
    with ExitStack() as stack:
        apps: dict[Mode, CaseTrail] = {}
        for mode in MODES:
            keys = [new_key_text()] if mode == "encrypted" else None
            apps[mode] = app = CaseTrail(env=store_environment(urls[mode], keys))
            stack.callback(app.close)
            execute(app, warmup, [], None)
        runs = {mode: Run(store, mode, round_no, len(plan)) for mode in MODES}
        ids: dict[Mode, list[UUID]] = {mode: [] for mode in MODES}
        for turn, start in enumerate(range(0, len(plan), BLOCK)):
            # Rounds start with alternate modes too, so that neither always goes first.
            order = MODES if (turn + round_no) % 2 else MODES[::-1]
            for mode in order:
                execute(apps[mode], plan[start : start + BLOCK], ids[mode], runs[mode])
        for mode, app in apps.items():
            runs[mode].settings = store_settings(app)
            stored = app.recorder.max_notification_id() or 0
            # One operation, one event: anything else would make events/s a wrong figure.
            assert stored == len(warmup) + len(plan), (mode, stored, len(warmup), len(plan))
        return [runs[mode] for mode in MODES]


# --- reporting -------------------------------------------------------------------------------

Kind = Literal["all", "create", "append"]
KINDS: Final[tuple[Kind, ...]] = ("all", "create", "append")


@dataclass
class Combined:
    """All rounds of one store and mode.

    Throughput is the median of the rounds' figures, so that one round that met a burst of
    someone else's work does not move the headline. Latency percentiles come from the rounds'
    histograms merged, so every operation counts once.
    """

    store: Store
    mode: Mode
    runs: list[Run]

    @property
    def rates(self) -> list[float]:
        return [r.events_per_second for r in self.runs]

    @property
    def events_per_second(self) -> float:
        return statistics.median(self.rates)

    def histogram(self, kind: Kind) -> HdrHistogram:
        merged = new_histogram()
        for run in self.runs:
            merged.add(getattr(run, kind))
        return merged

    def latency(self, kind: Kind = "all") -> Percentiles:
        return Percentiles.of(self.histogram(kind))

    @property
    def settings(self) -> dict[str, str]:
        return self.runs[-1].settings

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "mode": self.mode,
            "events_per_second_median": round(self.events_per_second, 1),
            "events_per_second_min": round(min(self.rates), 1),
            "events_per_second_max": round(max(self.rates), 1),
            "rounds": [
                {
                    "round": r.round,
                    "events": r.events,
                    "seconds": round(r.seconds, 3),
                    "events_per_second": round(r.events_per_second, 1),
                    "latency_ms": Percentiles.of(r.all).as_dict(),
                }
                for r in self.runs
            ],
            "latency_ms": {kind: self.latency(kind).as_dict() for kind in KINDS},
            "settings": self.settings,
        }


def print_run(run: Run, machine_line: str) -> None:
    settings = " ".join(f"{k}={v}" for k, v in run.settings.items())
    print(f"\n== {run.store} / {run.mode} / round {run.round} ==")
    print(f"  machine  {machine_line}")
    print(f"  store    {run.store}: {settings}")
    print(f"  events   {run.events} in {run.seconds:.2f} s = {run.events_per_second:,.0f} events/s")
    for kind in KINDS:
        print(f"  {kind:<7}  {Percentiles.of(getattr(run, kind)).line()}")


def ratio(encrypted: Combined, plaintext: Combined) -> dict[str, Any]:
    """Encrypted over plaintext: throughput paired within each round, where they interleaved."""
    plain_by_round = {r.round: r for r in plaintext.runs}
    pairs = [(e, plain_by_round[e.round]) for e in encrypted.runs if e.round in plain_by_round]
    paired = [e.events_per_second / p.events_per_second for e, p in pairs]
    # The same cost as time: a ratio alone hides that a faster store makes it look bigger.
    added_us = [1e6 * (e.seconds - p.seconds) / e.events for e, p in pairs]
    enc, plain = encrypted.latency(), plaintext.latency()
    return {
        "events_per_second": round(statistics.median(paired), 3),
        "events_per_second_per_round": [round(x, 3) for x in paired],
        "added_us_per_event": round(statistics.median(added_us), 1),
        "latency_p50": round(enc.p50_ms / plain.p50_ms, 3),
        "latency_p95": round(enc.p95_ms / plain.p95_ms, 3),
        "latency_p99": round(enc.p99_ms / plain.p99_ms, 3),
    }


def print_summary(
    combined: dict[tuple[Store, Mode], Combined], machine_line: str, rounds: int
) -> dict[str, dict[str, Any]]:
    print(f"\n== summary: events/s is the median of {rounds} round(s) (min-max); latency pooled ==")
    print(f"  machine  {machine_line}")
    print(
        f"  {'store':<9}{'mode':<10}{'events/s':>9} {'(min-max)':<14}"
        f"{'p50 ms':>7}{'p95 ms':>8}{'p99 ms':>8}{'create p50':>11}{'append p50':>11}  settings"
    )
    for (store, mode), c in combined.items():
        p = c.latency()
        spread = f"({min(c.rates):,.0f}-{max(c.rates):,.0f})"
        settings = " ".join(f"{k}={v}" for k, v in c.settings.items())
        print(
            f"  {store:<9}{mode:<10}{c.events_per_second:>9,.0f} {spread:<14}"
            f"{p.p50_ms:>7.3f}{p.p95_ms:>8.3f}{p.p99_ms:>8.3f}"
            f"{c.latency('create').p50_ms:>11.3f}{c.latency('append').p50_ms:>11.3f}  {settings}"
        )
    ratios: dict[str, dict[str, Any]] = {}
    for store in ("sqlite", "postgres"):
        enc, plain = combined.get((store, "encrypted")), combined.get((store, "plaintext"))
        if enc is None or plain is None:
            continue
        ratios[store] = r = ratio(enc, plain)
        per_round = ", ".join(f"{x:.3f}" for x in r["events_per_second_per_round"])
        print(
            f"  {store}: encrypted/plaintext events/s = {r['events_per_second']:.3f} "
            f"(median of rounds: {per_round}), {r['added_us_per_event']:+.1f} µs per event; "
            f"latency p50 x{r['latency_p50']:.3f}, p95 x{r['latency_p95']:.3f}, "
            f"p99 x{r['latency_p99']:.3f}"
        )
    return ratios


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.append", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--events", type=int, help=f"events per run (default {DEFAULT_EVENTS})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke test: {QUICK_EVENTS} events and 1 round unless given",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"fresh-store repetitions per store (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="database to create a throw-away schema in (no ?schema=)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = QUICK_EVENTS if args.quick else DEFAULT_EVENTS
    if args.rounds is None:
        args.rounds = 1 if args.quick else DEFAULT_ROUNDS
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    machine_line = describe(info)
    print(
        f"append benchmark: {args.events} events per run, {args.rounds} round(s), seed {args.seed}"
    )
    print(f"machine: {machine_line}")

    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)

    plan = build_plan(args.events, args.seed)
    warmup = build_plan(min(200, max(30, args.events // 20)), args.seed + 1)
    creations = sum(isinstance(op, Report) for op in plan)
    print(
        f"workload: {creations} creations (ClueReported) + {len(plan) - creations} appends "
        f"(FollowUpRecorded) per run, {len(warmup)} warm-up operations untimed"
    )

    combined = {(s, m): Combined(s, m, []) for s in stores for m in MODES}
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-") as tmp:
        for store in stores:
            for round_no in range(1, args.rounds + 1):
                with ExitStack() as stack:
                    urls = {
                        mode: stack.enter_context(
                            fresh_store(store, f"{mode}_{round_no}", Path(tmp), args.postgres_url)
                        )
                        for mode in MODES
                    }
                    runs = run_round(store, urls, round_no=round_no, plan=plan, warmup=warmup)
                for run in runs:
                    print_run(run, machine_line)
                    combined[(store, run.mode)].runs.append(run)

    ratios = print_summary(combined, machine_line, args.rounds)
    # The encryption target on save (at most 10% slower), as time per event.
    targets = [
        Target(
            "append",
            store,
            "encrypted/plaintext time per event",
            ratio_of(1.0, r["events_per_second"]),
            SAVE_TARGET,
            "max",
        )
        for store, r in ratios.items()
    ]
    print_targets(targets)
    path = write_results(
        "append",
        {
            "benchmark": "append",
            "unit": "events appended per second through CaseTrail (one event per operation)",
            "machine": info,
            "workload": {
                "events_per_run": args.events,
                "rounds": args.rounds,
                "seed": args.seed,
                "creations_per_run": creations,
                "appends_per_run": len(plan) - creations,
                "follow_ups_per_case": FOLLOW_UPS_PER_CASE,
                "warmup_operations": len(warmup),
                "block": BLOCK,
            },
            "results": [c.as_dict() for c in combined.values()],
            "ratios_encrypted_over_plaintext": ratios,
            "targets": [t.as_dict() for t in targets],
            "skipped": skipped,
        },
    )
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
