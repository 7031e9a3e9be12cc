"""access_log: the per-case access log (`GET /v1/cases/{id}/accesses`) as the store grows from
10,000 to 1,000,000 access events (issue 15: "flat from 10k").

Subject: `CaseTrail.access_log(case_id)` as the service answers it, through the access-log read
model (`projections.compliance.access_log.CaseLog`: the view's rows of the case, then the tail
of the store past the view's position), for one case with a fixed number of accesses (50 by
default, all among the first 10,000 events) while the store fills with the accesses of other
cases (5,000 of them, readers, channels and refusals mixed). At each size the view is caught up
first (its following rate is reported), then the log is read `--rounds` times: median and p95.
Baseline, for contrast and at the smaller sizes only: the same log from a scan of every access
event of the store (what the endpoint did before the read model). Target: at the largest size,
the median at most 1.5x the 10,000-event store's in the same turns.

    .venv/bin/python -m bench.access_log            # 10k, 100k, 1M events (make bench)
    .venv/bin/python -m bench.access_log --quick    # 10k, 100k (make bench-quick)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

from bench.harness import Target, describe, machine, print_targets, ratio_of, write_results
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, selected_stores, store_settings
from domain.access import Actor, Channel, Client, Decision, access_event, command_refused
from domain.application import CaseTrail
from domain.taxonomy import Purpose, Role
from gateway.store.eventstore import new_key_text, store_environment
from projections.compliance.access_log import CaseLog
from projections.readmodels import ReadModelConfig, ReadModels

TARGET: Final = 1.5
_BATCH: Final = 1000
_OTHER_CASES: Final = 5000
_STREET: Final = "chengguan-street"
# The full scan is timed up to this size only: at 1M events it takes minutes per call.
_SCAN_UP_TO: Final = 100_000


class Filler:
    """Access events in a seeded mix: the subject case's among the first `within`, the rest of
    other cases'."""

    def __init__(self, seed: int, subject: UUID, subject_accesses: int, within: int) -> None:
        self.rng = random.Random(seed)
        self.subject = subject
        self.others = [uuid4() for _ in range(_OTHER_CASES)]
        self.people = [
            Actor(f"bench-user-{i}", role, f"bench-unit-{i % 40}", _STREET)
            for i, role in enumerate(
                [Role.COORDINATOR, Role.UNIT_MEMBER, Role.REPORTER, Role.SUPERVISOR] * 50
            )
        ]
        self.clients = [Client(f"10.0.{i}.7", "bench") for i in range(20)]
        # Which of the first `within` events (the reference size) are the subject case's.
        self.subject_at = set(self.rng.sample(range(within), min(subject_accesses, within)))
        self.stored = 0

    def event(self) -> Any:
        rng = self.rng
        case_id = self.subject if self.stored in self.subject_at else rng.choice(self.others)
        self.stored += 1
        actor = rng.choice(self.people)
        client = rng.choice(self.clients)
        what = rng.random()
        if what < 0.05:
            return command_refused(
                case_id=case_id,
                actor=actor,
                command="close",
                rule="not_permitted",
                request_id=f"bench-{self.stored}",
                channel=Channel.API,
                client=client,
            )
        granted = what < 0.85
        return access_event(
            Decision(
                granted,
                "coordinator_same_street" if granted else "out_of_scope",
                frozenset({"risk", "status"}) if granted else frozenset(),
            ),
            case_id=case_id,
            actor=actor,
            purpose=Purpose.CONSULTATION,
            request_id=f"bench-{self.stored}",
            case_version=rng.randint(1, 40),
            channel=rng.choice((Channel.API, Channel.LEDGER, Channel.LOOKUP)),
            client=client,
        )

    def fill(self, app: CaseTrail, up_to: int) -> float:
        """Store events until `up_to` are stored; the seconds it took."""
        t0 = time.perf_counter()
        while self.stored < up_to:
            count = min(_BATCH, up_to - self.stored)
            app.store_events([self.event() for _ in range(count)])
        return time.perf_counter() - t0


def _timed(call: Callable[[], Any], rounds: int) -> list[float]:
    found = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        found.append(time.perf_counter() - t0)
    return found


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class Side:
    """One store with its read model and the subject case's log."""

    def __init__(
        self, url: str, readmodel_url: str, seed: int, case_accesses: int, within: int
    ) -> None:
        self.app = CaseTrail(env=store_environment(url, [new_key_text()]))
        self.readmodels = ReadModels(
            self.app,
            ReadModelConfig(env=store_environment(readmodel_url, None), index_key=os.urandom(32)),
        )
        self.subject = uuid4()
        self.filler = Filler(seed, self.subject, case_accesses, within)
        self.log = CaseLog(self.app, self.app.name, self.readmodels.accesses)

    def grow(self, size: int) -> tuple[float, int, float]:
        """Fill to `size` events and catch the view up: (fill s, events followed, follow s)."""
        fill_seconds = self.filler.fill(self.app, size)
        t0 = time.perf_counter()
        moved = self.readmodels.follower("accesses").catch_up()
        return fill_seconds, moved, time.perf_counter() - t0

    def read(self) -> list[dict[str, Any]]:
        self.app.use_access_records(self.log)
        return self.app.access_log(self.subject)

    def scan(self) -> list[dict[str, Any]]:
        self.app.use_access_records(None)
        return self.app.access_log(self.subject)

    def close(self) -> None:
        self.readmodels.close()
        self.app.close()


def _readmodel_url(store: Store, url: str, tmp: Path, label: str) -> str:
    return f"sqlite:///{tmp / f'{label}-readmodels.sqlite'}" if store == "sqlite" else url


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """A reference store of the first size and a store grown through every size; at each size
    the two logs are read in turns (ABBA), so that the machine's load weighs on both alike."""
    sizes: list[dict[str, Any]] = []
    pg = args.postgres_url
    with (
        fresh_store(store, "access_ref", tmp, pg, prefix="bench_access") as ref_url,
        fresh_store(store, "access_log", tmp, pg, prefix="bench_access") as url,
    ):
        first = args.sizes[0]
        reference = Side(
            ref_url,
            _readmodel_url(store, ref_url, tmp, "ref"),
            args.seed,
            args.case_accesses,
            first,
        )
        grown = Side(
            url, _readmodel_url(store, url, tmp, "grown"), args.seed, args.case_accesses, first
        )
        try:
            reference.grow(args.sizes[0])
            settings = store_settings(grown.app)
            print(f"\n== access_log / {store}: sizes {args.sizes} ==")
            print("  store    " + " ".join(f"{k}={v}" for k, v in settings.items()))
            for size in args.sizes:
                fill_seconds, moved, follow_seconds = grown.grow(size)
                found = grown.read()
                assert len(found) == len(reference.read()), "both logs hold the same entries"
                times: dict[str, list[float]] = {"reference": [], "grown": []}
                for round_no in range(args.rounds):
                    sides = [("reference", reference), ("grown", grown)]
                    for name, side in sides if round_no % 2 == 0 else sides[::-1]:
                        t0 = time.perf_counter()
                        side.read()
                        times[name].append(time.perf_counter() - t0)
                row: dict[str, Any] = {
                    "events": size,
                    "entries": len(found),
                    "fill_seconds": round(fill_seconds, 2),
                    "follow_seconds": round(follow_seconds, 2),
                    "followed_per_second": round(moved / follow_seconds) if moved else None,
                    "log_ms_median": round(1000 * statistics.median(times["grown"]), 3),
                    "log_ms_p95": round(1000 * _p95(times["grown"]), 3),
                    "reference_ms_median": round(1000 * statistics.median(times["reference"]), 3),
                    "ratio_to_reference": ratio_of(
                        statistics.median(times["grown"]), statistics.median(times["reference"])
                    ),
                    "scan_ms_median": None,
                }
                if size <= _SCAN_UP_TO:
                    scanned = _timed(grown.scan, max(3, args.rounds // 10))
                    assert grown.scan() == found, "the scan answers the same"
                    row["scan_ms_median"] = round(1000 * statistics.median(scanned), 1)
                sizes.append(row)
                scan = f"{row['scan_ms_median']:>9} ms" if row["scan_ms_median"] else "  (not run)"
                print(
                    f"  {size:>9,} events: log {row['log_ms_median']:8.2f} ms "
                    f"(p95 {row['log_ms_p95']:.2f}, {len(found)} entries), "
                    f"{args.sizes[0]:,}-event store meanwhile {row['reference_ms_median']:.2f} ms: "
                    f"x{row['ratio_to_reference']:.2f}; full scan {scan}; "
                    f"view followed {moved:,} in {follow_seconds:.1f} s"
                )
        finally:
            grown.close()
            reference.close()
    return {
        "store": store,
        "settings": settings,
        "sizes": sizes,
        "ratio": sizes[-1]["ratio_to_reference"],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.access_log", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", help="comma-separated store sizes, the first the reference")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--case-accesses", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1515)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args(argv)
    default = "10000,100000" if args.quick else "10000,100000,1000000"
    args.sizes = [int(s) for s in (args.sizes or default).split(",")]
    args.rounds = args.rounds or (30 if args.quick else 50)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"access_log benchmark: one case of {args.case_accesses} accesses in a store of "
        f"{', '.join(f'{s:,}' for s in args.sizes)} access events, {args.rounds} reads per size"
    )
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(
        args.postgres_url, sqlite=not args.no_sqlite, postgres=not args.no_postgres
    )
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-access-log-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            metric = f"case log at {args.sizes[-1]:,}/{args.sizes[0]:,} events"
            targets.append(Target("access_log", store, metric, found["ratio"], TARGET, "max"))
    print_targets(targets)
    path = write_results(
        "access_log",
        {
            "benchmark": "access_log",
            "unit": "milliseconds to answer one case's access log",
            "machine": info,
            "workload": {
                "sizes": args.sizes,
                "rounds": args.rounds,
                "case_accesses": args.case_accesses,
                "seed": args.seed,
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
