"""replay: loading one case file of 10,000 events, against decrypting and decoding its records.

Subject: `repository.get(case_id, projector_func=replay)`, what `CaseTrail` does to load a case
before every read and every command: select the stream, decrypt and decode each event, apply it
to the aggregate. Baseline: the same records selected and turned into domain events by hand,
`[mapper.to_domain_event(r) for r in recorder.select_events(case_id)]`, with nothing applied:
the least any load could cost. The third figure, informational, is the library's own projector
(`repository.get(case_id)`), which checks every event against a runtime-checkable Protocol
first: what casetrail did before the replay fix.

The case file is encrypted (the service's configuration), built through the aggregate's methods
(follow-ups, interventions, risk assessments after the consultation and assignment) and stored
in one transaction. The variants take turns, round by round, so that each sees the same
machine; each figure is the median of the rounds.

    .venv/bin/python -m bench.replay            # 10,000 events, 7 rounds
    .venv/bin/python -m bench.replay --quick    # 1,000 events, 3 rounds
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from bench.harness import Target, describe, machine, print_targets, ratio_of, write_results
from bench.stores import (
    DEFAULT_POSTGRES_URL,
    Store,
    fresh_store,
    selected_stores,
    store_settings,
)
from bench.workload import DEFAULT_SEED, CommandPool, new_case
from domain.application import CaseTrail, replay
from domain.case import Case
from gateway.store.eventstore import new_key_text, store_environment

TARGET: Final = 1.3


def variants(
    app: CaseTrail, snapshotting: CaseTrail, case_id: UUID
) -> dict[str, Callable[[], int]]:
    def subject() -> int:
        case: Case = app.repository.get(case_id, projector_func=replay)
        return case.version

    def raw() -> int:
        events = [app.mapper.to_domain_event(r) for r in app.recorder.select_events(case_id)]
        return len(events)

    def library() -> int:
        case: Case = app.repository.get(case_id)
        return case.version

    def from_snapshot() -> int:
        case: Case = snapshotting.repository.get(case_id, projector_func=replay)
        return case.version

    return {
        "casetrail load": subject,
        "raw decrypt+decode": raw,
        "library projector": library,
        "load from snapshot": from_snapshot,
    }


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with fresh_store(store, "replay", tmp, args.postgres_url, prefix="bench_replay") as url:
        env = store_environment(url, [new_key_text()])
        # What is measured is replaying events: snapshots (every 20 events in the service,
        # domain/application.py) are off here, and measured on their own as "load from
        # snapshot" by a second application on the same store, with one snapshot taken.
        app = CaseTrail(env={**env, "IS_SNAPSHOTTING_ENABLED": "n"})
        snapshotting = CaseTrail(env=env)
        try:
            pool = CommandPool(args.seed, reports=20, notes=300)
            case, _ = new_case(pool, random.Random(args.seed), args.events - 1)
            app.save(case)
            snapshotting.take_snapshot(case.id, projector_func=replay)
            settings = store_settings(app)
            print(f"\n== replay / {store}: one case file of {case.version} events ==")
            print("  store    " + " ".join(f"{k}={v}" for k, v in settings.items()))
            runs = variants(app, snapshotting, case.id)
            for run in runs.values():  # warm-up: page cache, connections
                assert run() == args.events
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            for round_no in range(args.rounds):
                names = list(runs)
                order = names if round_no % 2 == 0 else names[::-1]
                for name in order:
                    t0 = time.perf_counter()
                    runs[name]()
                    seconds[name].append(time.perf_counter() - t0)
        finally:
            app.close()
            snapshotting.close()
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    base = medians["raw decrypt+decode"]
    for name, median in medians.items():
        print(
            f"  {name:<20} {1000 * median:8.1f} ms  ({args.events / median:9,.0f} events/s)  "
            f"x{median / base:.3f} of raw"
        )
    return {
        "store": store,
        "settings": settings,
        "events": args.events,
        "seconds_median": {k: round(v, 4) for k, v in medians.items()},
        "seconds_per_round": {k: [round(x, 4) for x in v] for k, v in seconds.items()},
        "ratio": ratio_of(medians["casetrail load"], base),
        "ratio_library_projector": ratio_of(medians["library projector"], base),
        "ratio_load_from_snapshot": ratio_of(medians["load from snapshot"], base),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.events = args.events or (1000 if args.quick else 10_000)
    args.rounds = args.rounds or (3 if args.quick else 7)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"replay benchmark: one encrypted case file of {args.events} events, {args.rounds} rounds"
    )
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-replay-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            metric = f"load/raw decrypt+decode, {args.events} events"
            targets.append(Target("replay", store, metric, found["ratio"], TARGET, "max"))
    print_targets(targets)
    path = write_results(
        "replay",
        {
            "benchmark": "replay",
            "unit": "seconds to load one case file",
            "machine": info,
            "workload": {"events": args.events, "rounds": args.rounds, "seed": args.seed},
            "results": results,
            "targets": [t.as_dict() for t in targets],
            "skipped": skipped,
        },
    )
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
