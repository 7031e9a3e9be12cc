"""datakeys: what a data key per case file (issue 19) costs on reads and replays, against the
single service key.

Two fresh stores per store kind take the same case files (1 to 7 events each, built through the
aggregate's methods before timing), in blocks, in turns (ABBA):

- `service key`: format 1 for every event (the cipher before issue 19; a bench-only mapper,
  `ServiceKeyMapper`, that never picks a data key);
- `data keys`: the service's mapper: each case file's events under its own data key, wrapped
  by the service key in the key table.

Measured per block:
- save, new files: the block's case files saved, each a new stream (with data keys its key is
  made first: one small transaction, unsynced on SQLite in WAL mode, `gateway.store.datakeys`);
then, after saving it:
- replay, warm: each case file of the block loaded (`repository.get` with casetrail's projector)
  by the application that saved it (its data keys cached, as in a running service);
- read, warm: the audited read (`read_case`: decision, access event stored durably, answer);
- replay, cold: the same case files loaded by a fresh application (no key cached: one lookup of
  the key table per case file, and its unwrap).

Figures are data-key time over service-key time for the same work (target ≤ 1.10 for the warm
replay and read, ≤ 1.25 for the save of new files, which makes a key per file; the cold replay,
which includes loading every key once, is informative).

    .venv/bin/python -m bench.datakeys            # 2000 case files, blocks of 200
    .venv/bin/python -m bench.datakeys --quick    # 400 case files
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import get_topic

from bench.harness import Target, describe, machine, print_targets, ratio_of, write_results
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, selected_stores
from bench.workload import DEFAULT_SEED, CommandPool, new_case
from domain.access import Actor
from domain.application import CaseTrail, replay
from domain.case import Case
from domain.retention import KeyScope
from domain.taxonomy import Purpose, Role
from gateway.store.eventstore import BoundMapper, new_key_text, store_environment

MODES: Final = ("service key", "data keys")
TARGET: Final = 1.10
# Saving a new file also makes its key (a row pair in the key table, in a transaction of its own).
SAVE_TARGET: Final = 1.25
BLOCK: Final = 200
COORDINATOR: Final = Actor(
    "bench-coordinator", Role.COORDINATOR, "chengguan-governance-office", "chengguan-street"
)


class ServiceKeyMapper(BoundMapper):
    """The baseline: every event under the service's key (format 1), as before issue 19."""

    def scope_of(self, domain_event: DomainEventProtocol[Any]) -> KeyScope | None:
        return None


def environment(url: str, key: str, mode: str) -> dict[str, str]:
    env = store_environment(url, [key])
    if mode == "service key":
        env["MAPPER_TOPIC"] = get_topic(ServiceKeyMapper)
    return env


def build(pool: CommandPool, seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    return [new_case(pool, rng, rng.randint(0, 6))[0] for _ in range(count)]


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    pool = CommandPool(args.seed, reports=200)
    measures = ("save_new", "replay_warm", "read_warm", "replay_cold")
    seconds = {m: dict.fromkeys(MODES, 0.0) for m in measures}
    events = 0
    key = new_key_text()
    with ExitStack() as stack:
        apps: dict[str, CaseTrail] = {}
        urls: dict[str, str] = {}
        for mode in MODES:
            tag = mode.replace(" ", "_")
            urls[mode] = url = stack.enter_context(
                fresh_store(store, f"dk_{tag}", tmp, args.postgres_url, prefix="bench_dk")
            )
            apps[mode] = app = CaseTrail(env=environment(url, key, mode))
            stack.callback(app.close)
            for case in build(pool, args.seed + 9, 50):  # warm-up
                app.save(case)
        print(f"\n== datakeys / {store}: {args.cases} case files per mode ==")
        for turn, start in enumerate(range(0, args.cases, BLOCK)):
            count = min(BLOCK, args.cases - start)
            cases = {mode: build(pool, args.seed + turn, count) for mode in MODES}
            events += sum(c.version for c in cases[MODES[0]])
            order = MODES if turn % 2 == 0 else MODES[::-1]
            for mode in order:
                t0 = time.perf_counter()
                for case in cases[mode]:
                    apps[mode].save(case)
                seconds["save_new"][mode] += time.perf_counter() - t0
            for mode in order:
                t0 = time.perf_counter()
                for case in cases[mode]:
                    apps[mode].repository.get(case.id, projector_func=replay)
                seconds["replay_warm"][mode] += time.perf_counter() - t0
            for mode in order[::-1]:
                t0 = time.perf_counter()
                for n, case in enumerate(cases[mode]):
                    apps[mode].read_case(case.id, COORDINATOR, Purpose.CONSULTATION, f"b{n}")
                seconds["read_warm"][mode] += time.perf_counter() - t0
            for mode in order:
                cold = CaseTrail(env=environment(urls[mode], key, mode))
                try:
                    t0 = time.perf_counter()
                    for case in cases[mode]:
                        cold.repository.get(case.id, projector_func=replay)
                    seconds["replay_cold"][mode] += time.perf_counter() - t0
                finally:
                    cold.close()
    ratios = {m: ratio_of(seconds[m]["data keys"], seconds[m]["service key"]) for m in measures}
    for m in measures:
        print(
            f"  {m:<12} "
            + "   ".join(f"{mode} {events / seconds[m][mode]:9,.0f} events/s" for mode in MODES)
            + f"   ratio x{ratios[m]:.3f}"
        )
    return {
        "store": store,
        "case_files": args.cases,
        "events": events,
        "events_per_second": {
            m: {mode: round(events / seconds[m][mode], 1) for mode in MODES} for m in measures
        },
        "ratios": ratios,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.datakeys", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", type=int)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.cases = args.cases or (400 if args.quick else 2000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"datakeys benchmark: {args.cases} case files per mode, blocks of {BLOCK}, ABBA")
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-datakeys-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            # The cold replay (a fresh process: its first miss loads every key of the store) is
            # informative: a service pays it once per start, not per read.
            for measure, label, target in (
                ("save_new", "data keys/service key save time, new files", SAVE_TARGET),
                ("replay_warm", "data keys/service key replay time", TARGET),
                ("read_warm", "data keys/service key audited read time", TARGET),
            ):
                targets.append(
                    Target("datakeys", store, label, found["ratios"][measure], target, "max")
                )
    print_targets(targets)
    path = write_results(
        "datakeys",
        {
            "benchmark": "datakeys",
            "unit": "events per second; ratios are data-key time over service-key time",
            "machine": info,
            "workload": {"case_files": args.cases, "block": BLOCK, "seed": args.seed},
            "results": results,
            "targets": [t.as_dict() for t in targets],
            "skipped": skipped,
        },
    )
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
