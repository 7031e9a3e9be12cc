"""encryption: what AES-256-GCM costs on save and on replay, against plaintext.

Two fresh stores per store kind, one plaintext and one encrypted (the service's cipher, bound to
each event's place), take the same workload in blocks, in turns (ABBA):

- save: new case files with their histories (1 to 7 events each: report, consultation,
  assignment, acknowledgement, interventions, follow-ups), built through the aggregate's
  methods before timing, stored with `Application.save`, one case file per transaction;
- replay: each case file saved so far loaded again (`repository.get` with casetrail's
  projector, as every read and command does).

The figure is encrypted time over plaintext time for the same work (1.10 means 10% slower).
`bench/append.py` measures the same cost through the domain's commands (events/s).

    .venv/bin/python -m bench.encryption            # 2400 case files, blocks of 200
    .venv/bin/python -m bench.encryption --quick    # 400 case files
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

MODES: Final = ("plaintext", "encrypted")
SAVE_TARGET: Final = 1.10
REPLAY_TARGET: Final = 1.25
BLOCK: Final = 200


def build(pool: CommandPool, seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    return [new_case(pool, rng, rng.randint(0, 6))[0] for _ in range(count)]


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    pool = CommandPool(args.seed, reports=200)
    save_seconds = dict.fromkeys(MODES, 0.0)
    replay_seconds = dict.fromkeys(MODES, 0.0)
    events = 0
    with ExitStack() as stack:
        apps: dict[str, CaseTrail] = {}
        for mode in MODES:
            url = stack.enter_context(
                fresh_store(store, f"enc_{mode}", tmp, args.postgres_url, prefix="bench_enc")
            )
            keys = [new_key_text()] if mode == "encrypted" else None
            apps[mode] = app = CaseTrail(env=store_environment(url, keys))
            stack.callback(app.close)
            for case in build(pool, args.seed + 9, 50):  # warm-up
                app.save(case)
        settings = store_settings(apps["encrypted"])
        print(f"\n== encryption / {store}: {args.cases} case files per mode ==")
        print("  store    " + " ".join(f"{k}={v}" for k, v in settings.items()))
        saved: dict[str, list[Case]] = {mode: [] for mode in MODES}
        for turn, start in enumerate(range(0, args.cases, BLOCK)):
            count = min(BLOCK, args.cases - start)
            # Each mode gets its own objects, built alike from the same seed.
            cases = {mode: build(pool, args.seed + turn, count) for mode in MODES}
            events += sum(c.version for c in cases["plaintext"])
            order = MODES if turn % 2 == 0 else MODES[::-1]
            for mode in order:
                t0 = time.perf_counter()
                for case in cases[mode]:
                    apps[mode].save(case)
                save_seconds[mode] += time.perf_counter() - t0
                saved[mode].extend(cases[mode])
            for mode in order[::-1]:
                t0 = time.perf_counter()
                for case in saved[mode][start : start + count]:
                    apps[mode].repository.get(case.id, projector_func=replay)
                replay_seconds[mode] += time.perf_counter() - t0
    save_ratio = ratio_of(save_seconds["encrypted"], save_seconds["plaintext"])
    replay_ratio = ratio_of(replay_seconds["encrypted"], replay_seconds["plaintext"])
    for mode in MODES:
        print(
            f"  {mode:<10} save {events / save_seconds[mode]:8,.0f} events/s   "
            f"replay {events / replay_seconds[mode]:8,.0f} events/s"
        )
    print(f"  encrypted/plaintext time: save x{save_ratio:.3f}, replay x{replay_ratio:.3f}")
    return {
        "store": store,
        "settings": settings,
        "case_files": args.cases,
        "events": events,
        "save_events_per_second": {m: round(events / save_seconds[m], 1) for m in MODES},
        "replay_events_per_second": {m: round(events / replay_seconds[m], 1) for m in MODES},
        "ratio_save_time": save_ratio,
        "ratio_replay_time": replay_ratio,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.encryption", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", type=int)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.cases = args.cases or (400 if args.quick else 2400)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"encryption benchmark: {args.cases} case files per mode, blocks of {BLOCK}, ABBA")
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-encryption-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            targets += [
                Target(
                    "encryption",
                    store,
                    "encrypted/plaintext save time",
                    found["ratio_save_time"],
                    SAVE_TARGET,
                    "max",
                ),
                Target(
                    "encryption",
                    store,
                    "encrypted/plaintext replay time",
                    found["ratio_replay_time"],
                    REPLAY_TARGET,
                    "max",
                ),
            ]
    print_targets(targets)
    path = write_results(
        "encryption",
        {
            "benchmark": "encryption",
            "unit": "events per second; ratios are encrypted time over plaintext time",
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
