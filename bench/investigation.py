"""investigation: the workbench's analyses of one case of 10,000 events, against decrypting and
decoding the same events.

Subject: what `GET /v1/cases/{id}/knowledge` and `/timeline` compute after their access record:
`gather(app, case_id)` (one scan of the store by topic, decrypt and decode, the file replayed
through its own events; the case's access records from the access-log read model, caught up
before the rounds as the service's follower keeps it, issue 15) then `knowledge(history)` and
`timeline(history)`
(`projections/investigation/`). Baseline: the same notifications selected and turned into
domain events by hand, `[mapper.to_domain_event(n) for n in app.notifications(topics=...)]`,
nothing analysed: the least any analysis of these events could cost. Target (issue 13): the
subject at most 1.5x the baseline.

The case (encrypted, the service's configuration) holds half changes, built through the
aggregate's methods (`bench/workload.py`: a consultation, an assignment and its signature,
follow-ups, interventions, risk assessments), and half access events naming it: case reads of
coordinators and of the assigned unit, ledger rows, lookups, exports and bundles, break-glass
reads and refusals, each with its fields as the rules grant them. The store holds nothing else,
so both sides decode the same events. Variants take turns (ABBA) round by round; each figure is
the median of the rounds, in wall time and in the process's CPU time (on a shared machine the
second moves less with the other processes; on PostgreSQL it leaves out the server's share,
the same work for both sides).

    .venv/bin/python -m bench.investigation            # 10,000 events, 7 rounds
    .venv/bin/python -m bench.investigation --quick    # 1,000 events, 3 rounds
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
from uuid import UUID

from bench.harness import Target, describe, machine, print_targets, ratio_of, write_results
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, selected_stores, store_settings
from bench.workload import COORDINATOR, DEFAULT_SEED, STREET, CommandPool, member_of, new_case
from domain.access import (
    ALL_FIELDS,
    BREAK_GLASS_FIELDS,
    UNIT_MEMBER_BASE,
    Actor,
    Channel,
    Client,
    Decision,
    access_event,
)
from domain.application import CaseTrail
from domain.taxonomy import Purpose, Role
from gateway.store.eventstore import new_key_text, store_environment
from projections.compliance.access_log import CaseLog
from projections.investigation import gather, knowledge, timeline
from projections.investigation.history import ALL_TOPICS
from projections.readmodels import ReadModelConfig, ReadModels

TARGET: Final = 1.5
_CLIENT: Final = Client(address="10.0.0.7", user_agent="bench")
_BATCH: Final = 500


def case_accesses(case_id: UUID, count: int, rng: random.Random, version: int) -> list[Any]:
    """`count` access events naming the case, in a seeded mix of readers and channels (the
    workbench's and the report's benchmarks both store these)."""
    unit = member_of("chengguan-police-station")
    stranger = Actor("bench-health", Role.UNIT_MEMBER, "chengguan-health-centre", STREET)
    kinds: list[tuple[float, Actor, Decision, Channel, Purpose]] = [
        (
            0.35,
            COORDINATOR,
            Decision(True, "coordinator_same_street", ALL_FIELDS),
            Channel.API,
            Purpose.CONSULTATION,
        ),
        (
            0.55,
            unit,
            Decision(True, "unit_member_assigned", UNIT_MEMBER_BASE),
            Channel.API,
            Purpose.INTERVENTION,
        ),
        (
            0.7,
            COORDINATOR,
            Decision(
                True, "ledger:coordinator_same_street", frozenset({"id", "risk", "minor.name"})
            ),
            Channel.LEDGER,
            Purpose.CONSULTATION,
        ),
        (
            0.78,
            COORDINATOR,
            Decision(
                True,
                "lookup:coordinator_same_street",
                frozenset({"id", "minor.name", "minor.id_number"}),
            ),
            Channel.LOOKUP,
            Purpose.CONSULTATION,
        ),
        (
            0.84,
            COORDINATOR,
            Decision(
                True,
                "export:coordinator_same_street",
                frozenset({"id", "minor.name", "minor.id_number"}),
            ),
            Channel.EXPORT,
            Purpose.CONSULTATION,
        ),
        (
            0.88,
            COORDINATOR,
            Decision(True, "coordinator_same_street", ALL_FIELDS),
            Channel.BUNDLE,
            Purpose.CONSULTATION,
        ),
        (
            0.92,
            stranger,
            Decision(True, "break_glass", BREAK_GLASS_FIELDS, break_glass=True),
            Channel.API,
            Purpose.EMERGENCY,
        ),
        (1.0, stranger, Decision(False, "out_of_scope"), Channel.API, Purpose.INTERVENTION),
    ]
    found = []
    for n in range(count):
        draw = rng.random()
        _, actor, decision, channel, purpose = next(k for k in kinds if draw < k[0])
        found.append(
            access_event(
                decision,
                case_id=case_id,
                actor=actor,
                purpose=purpose,
                request_id=f"bench-{n}",
                case_version=version,
                channel=channel,
                client=_CLIENT,
                break_glass_reason="紧急联系监护人" if decision.break_glass else None,
            )
        )
    return found


def variants(app: CaseTrail, case_id: UUID) -> dict[str, Callable[[], int]]:
    def subject() -> int:
        history = gather(app, case_id)
        matrix = knowledge(history)
        entries = timeline(history)["entries"]
        return len(entries) + 0 * len(matrix["facts"])

    def raw() -> int:
        return len([app.mapper.to_domain_event(n) for n in app.notifications(topics=ALL_TOPICS)])

    return {"knowledge + timeline": subject, "raw decrypt+decode": raw}


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with fresh_store(store, "investigation", tmp, args.postgres_url, prefix="bench_inv") as url:
        # Snapshots play no part in the analysis (it reads the log); off, as in bench.replay.
        app = CaseTrail(
            env={**store_environment(url, [new_key_text()]), "IS_SNAPSHOTTING_ENABLED": "n"}
        )
        # The access-log read model, as the service keeps it (issue 15): `gather` takes the
        # case's access records from it instead of decrypting the store's access events.
        readmodels = ReadModels(
            app,
            ReadModelConfig(
                env=store_environment(
                    f"sqlite:///{tmp / 'inv-readmodels.sqlite'}" if store == "sqlite" else url,
                    None,
                ),
                index_key=os.urandom(32),
            ),
        )
        try:
            rng = random.Random(args.seed)
            pool = CommandPool(args.seed, reports=20, notes=300)
            changes = args.events // 2
            case, _ = new_case(pool, rng, changes - 1)
            app.save(case)
            reads = case_accesses(case.id, args.events - changes, rng, case.version)
            for start in range(0, len(reads), _BATCH):
                app.store_events(reads[start : start + _BATCH])
            readmodels.follower("accesses").catch_up()
            app.use_access_records(CaseLog(app, app.name, readmodels.accesses))
            settings = store_settings(app)
            print(
                f"\n== investigation / {store}: one case of {args.events} events "
                f"({changes} changes, {len(reads)} accesses) =="
            )
            print("  store    " + " ".join(f"{k}={v}" for k, v in settings.items()))
            runs = variants(app, case.id)
            for run in runs.values():  # warm-up: page cache, connections
                assert run() == args.events
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            cpu: dict[str, list[float]] = {name: [] for name in runs}
            for round_no in range(args.rounds):
                names = list(runs)
                order = names if round_no % 2 == 0 else names[::-1]
                for name in order:
                    c0, t0 = time.process_time(), time.perf_counter()
                    runs[name]()
                    seconds[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
        finally:
            readmodels.close()
            app.close()
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    cpu_medians = {name: statistics.median(s) for name, s in cpu.items()}
    base = medians["raw decrypt+decode"]
    cpu_base = cpu_medians["raw decrypt+decode"]
    for name, median in medians.items():
        print(
            f"  {name:<22} {1000 * median:8.1f} ms  ({args.events / median:9,.0f} events/s)  "
            f"x{median / base:.3f} of raw; CPU {1000 * cpu_medians[name]:8.1f} ms  "
            f"x{cpu_medians[name] / cpu_base:.3f}"
        )
    # Per round, the subject against the baseline measured next to it: steadier than the ratio
    # of medians when other processes come and go on the machine.
    paired = statistics.median(
        a / b
        for a, b in zip(seconds["knowledge + timeline"], seconds["raw decrypt+decode"], strict=True)
    )
    return {
        "store": store,
        "settings": settings,
        "events": args.events,
        "seconds_median": {k: round(v, 4) for k, v in medians.items()},
        "seconds_per_round": {k: [round(x, 4) for x in v] for k, v in seconds.items()},
        "cpu_seconds_median": {k: round(v, 4) for k, v in cpu_medians.items()},
        "ratio": ratio_of(medians["knowledge + timeline"], base),
        "ratio_cpu": ratio_of(cpu_medians["knowledge + timeline"], cpu_base),
        "ratio_paired": round(paired, 3),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.investigation", description=__doc__)
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
        f"investigation benchmark: one encrypted case of {args.events} events, {args.rounds} rounds"
    )
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-investigation-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            metric = f"knowledge+timeline/raw decode, {args.events} ev"
            targets.append(Target("investigation", store, metric, found["ratio"], TARGET, "max"))
            metric = f"the same, process CPU time, {args.events} ev"
            cpu = found["ratio_cpu"]
            targets.append(Target("investigation", store, metric, cpu, TARGET, "max"))
    print_targets(targets)
    path = write_results(
        "investigation",
        {
            "benchmark": "investigation",
            "unit": "seconds to analyse one case",
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
