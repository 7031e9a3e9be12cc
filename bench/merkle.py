"""merkle: what tamper evidence costs.

1. **append**: events per second through `CaseTrail` (encrypted, as the service stores them)
   without the Merkle log; with it maintained in lockstep (after every event, the follower's
   transaction that adds its leaf and nodes, and the checkpoint policy's check: the costliest
   way); and with the service's background maintainer (throughput counts until the tree has
   caught up). SQLite and PostgreSQL, a fresh store per mode, the modes taking turns in blocks
   of `BLOCK` operations (ABBA order) so that they share the machine's moods.
2. **verify**: full verification of N stored events (1,000,000 by default) against a signed
   checkpoint, `gateway.evidence.verification.verify_store` (read every record, encode its
   leaf, hash,
   rebuild the tree, compare with the checkpoint and the stored tree), against raw SHA-256 over
   the same leaf bytes read the same way, in the same run, alternating; and the same two in
   memory, without the database.
3. **follow**: building the persisted tree over those N events with the follower, batch by
   batch: the rate staying flat as the tree grows is the O(log n) per event.

    .venv/bin/python -m bench.merkle            # full: ~15 min here
    .venv/bin/python -m bench.merkle --quick    # ~20 s: SQLite only, small counts
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.harness import (
    Target,
    describe,
    load_average,
    machine,
    print_targets,
    ratio_of,
    turn_order,
    write_results,
)
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, postgres_unreachable
from bench.workload import COORDINATOR, DEFAULT_SEED, CommandPool, reporter_of
from domain.application import CaseTrail
from domain.case import Case
from gateway import logs
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.evidence.verification import verify_store
from gateway.store import guard as store_guard
from gateway.store.eventstore import new_key_text, store_environment
from projections.evidence.checkpoints import Checkpoint
from projections.evidence.log import StoredRecord, close_recorder, merkle_follower
from projections.evidence.merkle import Frontier, leaf_hash

MODES: Final = ("without", "lockstep", "background")
# Targets this benchmark sets itself (the issue asks for the ratios, not for limits): the
# service's background maintainer costs appends at most a quarter; verifying the log costs at
# most twice reading it and hashing each record once (a tree hashes about twice per leaf).
APPEND_TARGET: Final = 1.25
VERIFY_TARGET: Final = 2.0
MEMORY_TARGET: Final = 3.0
BLOCK: Final = 50
FOLLOW_UPS_PER_CASE: Final = 3
# Stored state sizes of the synthetic log (bytes, encrypted): reports ~1.3 KB, the rest small.
STATE_SIZES: Final = ((1300, 0.25), (360, 0.75))
TOPICS: Final = ("domain.case:Case.ClueReported", "domain.access:CaseAccessed")


# --- 1. append ------------------------------------------------------------------------------


@dataclass
class AppendRun:
    store: Store
    mode: str
    events: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class Appender:
    """One mode's store and application, driven block by block."""

    def __init__(self, url: str, mode: str, pool: CommandPool, seed: int) -> None:
        self.mode = mode
        self.pool = pool
        self.rng = random.Random(seed)
        self.app = CaseTrail(env=store_environment(url, [new_key_text()]))
        store_guard.install(self.app.recorder)
        self.evidence: Evidence | None = None
        if mode != "without":
            policy = EvidenceSettings(every_events=100, every_seconds=60, poll_seconds=0.05)
            self.evidence = Evidence(self.app, Ed25519PrivateKey.generate(), policy)
            if mode == "background":
                self.evidence.start()
        self.cases: list[Any] = []
        self.step = 0

    def operate(self, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            if self.step % (FOLLOW_UPS_PER_CASE + 1) == 0 or not self.cases:
                village, report = self.pool.report(self.rng)
                self.cases.append(self.app.report_clue(report, reporter_of(village)))
            else:
                follow_up = self.rng.choice(self.pool.follow_ups)
                case_id = self.cases[-1 - self.rng.randrange(min(3, len(self.cases)))]

                def apply(case: Case, command: Any = follow_up) -> None:
                    case.record_follow_up(command, by=COORDINATOR.as_record())

                self.app.change_case(case_id, COORDINATOR, "record_follow_up", apply)
            self.step += 1
            if self.mode == "lockstep" and self.evidence is not None:
                self.evidence.catch_up()
                self.evidence.checkpointer.maybe_checkpoint()
        return time.perf_counter() - started

    def drain(self) -> float:
        """Until the tree holds every event (the background maintainer's lag)."""
        if self.evidence is None:
            return 0.0
        started = time.perf_counter()
        self.evidence.stop()
        self.evidence.catch_up()
        return time.perf_counter() - started

    def close(self) -> None:
        if self.evidence is not None:
            self.evidence.close()
        self.app.close()


def run_append(
    store: Store, tmp: Path, postgres_url: str, events: int, round_no: int, pool: CommandPool
) -> list[AppendRun]:
    runs = {mode: AppendRun(store, mode) for mode in MODES}
    with ExitStack() as stack:
        appenders = {
            mode: Appender(
                stack.enter_context(
                    fresh_store(store, f"m_{mode}_{round_no}", tmp, postgres_url, "bench_merkle")
                ),
                mode,
                pool,
                seed=round_no,
            )
            for mode in MODES
        }
        try:
            for appender in appenders.values():
                appender.operate(30)  # warm-up, untimed
            turns = max(1, events // BLOCK)
            for turn in range(turns):
                # Each mode goes first, second and third in turn, forwards then backwards.
                order = list(MODES[turn % 3 :] + MODES[: turn % 3])
                if (turn // 3 + round_no) % 2:
                    order.reverse()
                for mode in order:
                    runs[mode].seconds += appenders[mode].operate(BLOCK)
                    runs[mode].events += BLOCK
            for mode, appender in appenders.items():
                runs[mode].seconds += appender.drain()
        finally:
            for appender in appenders.values():
                appender.close()
    return list(runs.values())


# --- 2 and 3. a big synthetic log, its tree, its verification -------------------------------


def build_log(url: str, events: int, seed: int) -> None:
    """`events` stored records with realistic sizes, written straight into the store's table
    (the application would take minutes; verification reads them the same either way)."""
    app = CaseTrail(env=store_environment(url, None))
    store_guard.install(app.recorder)
    app.close()
    rng = random.Random(seed)
    sizes = [size for size, _ in STATE_SIZES]
    weights = [weight for _, weight in STATE_SIZES]
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        batch: list[tuple[str, int, str, bytes]] = []
        for n in range(events):
            size = rng.choices(sizes, weights)[0]
            batch.append(
                (
                    uuid.UUID(int=rng.getrandbits(128)).hex,
                    1,
                    TOPICS[size == 360],
                    rng.randbytes(size),
                )
            )
            if len(batch) == 50_000 or n == events - 1:
                conn.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", batch)
                batch.clear()


@dataclass
class FollowFigures:
    seconds: float = 0.0
    samples: list[tuple[int, float]] = field(default_factory=list)  # (tree size, events/s)


def build_tree(url: str, events: int) -> FollowFigures:
    app = CaseTrail(env=store_environment(url, None))
    figures = FollowFigures()
    try:
        follower = merkle_follower(app, batch_size=5000)
        started = time.perf_counter()
        marks = sorted({m for m in (1_000, 10_000, 100_000, 1_000_000) if m <= events} | {events})
        done = 0
        while True:
            t0 = time.perf_counter()
            moved = follower.step()
            if moved == 0:
                break
            done += moved
            if marks and done >= marks[0]:
                figures.samples.append((done, moved / (time.perf_counter() - t0)))
                while marks and done >= marks[0]:
                    marks.pop(0)
        figures.seconds = time.perf_counter() - started
        close_recorder(follower.recorder)
    finally:
        app.close()
    return figures


def raw_pass(url: str) -> tuple[float, bytes]:
    """Read every record as the verifier does and SHA-256 its leaf bytes, nothing more."""
    app = CaseTrail(env=store_environment(url, None))
    try:
        started = time.perf_counter()
        last, start = b"", 0
        while True:
            page = app.recorder.select_notifications(
                start=start, limit=2000, inclusive_of_start=False
            )
            for n in page:
                last = hashlib.sha256(StoredRecord.of(n).leaf()).digest()
            if len(page) < 2000:
                break
            start = page[-1].id
        return time.perf_counter() - started, last
    finally:
        app.close()


def verify_pass(url: str, key: Ed25519PrivateKey, checkpoint: Checkpoint) -> float:
    app = CaseTrail(env=store_environment(url, None))
    try:
        started = time.perf_counter()
        report = verify_store(app.recorder, key.public_key(), [checkpoint])
        elapsed = time.perf_counter() - started
    finally:
        app.close()
    if not report.intact:
        raise RuntimeError(f"verification failed: {report.summary()}")
    return elapsed


def in_memory(url: str, limit: int) -> tuple[float, float]:
    """The same comparison without the database: leaves already in memory."""
    app = CaseTrail(env=store_environment(url, None))
    try:
        records = app.recorder.select_notifications(start=0, limit=limit, inclusive_of_start=False)
        leaves = [StoredRecord.of(n).leaf() for n in records]
    finally:
        app.close()
    t0 = time.perf_counter()
    frontier = Frontier()
    for leaf in leaves:
        frontier.add(leaf_hash(leaf))
    frontier.root()
    merkle = time.perf_counter() - t0
    t0 = time.perf_counter()
    for leaf in leaves:
        hashlib.sha256(leaf).digest()
    raw = time.perf_counter() - t0
    return merkle, raw


def alternate(
    runs: int, first: Callable[[], float], second: Callable[[], float]
) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    for turn in range(runs):
        for which in turn_order(turn):
            (a if which == 0 else b).append((first if which == 0 else second)())
    return a, b


# --- the run --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.merkle", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 20 s")
    parser.add_argument("--appends", type=int, help="appended events per mode and round")
    parser.add_argument("--rounds", type=int, help="fresh-store repetitions of the append part")
    parser.add_argument("--events", type=int, help="events in the log that is verified")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.appends = args.appends or (300 if args.quick else 3000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.events = args.events or (50_000 if args.quick else 1_000_000)
    args.no_postgres = args.no_postgres or args.quick
    return args


def report_append(store: Store, per_mode: dict[str, list[float]]) -> list[Target]:
    targets = []
    base = statistics.median(per_mode["without"])
    for mode in MODES[1:]:
        rate = statistics.median(per_mode[mode])
        ratios = [ratio_of(w, t) for w, t in zip(per_mode["without"], per_mode[mode], strict=True)]
        print(
            f"  {store}: {mode} {rate:.1f} vs {base:.1f} events/s without: without/with = "
            f"{statistics.median(ratios):.3f} (per round {ratios}); "
            f"{(1 / rate - 1 / base) * 1e6:+.0f} µs per event"
        )
        if mode == "background":
            targets.append(
                Target(
                    "merkle",
                    store,
                    "appends without/with the tree (background)",
                    statistics.median(ratios),
                    APPEND_TARGET,
                    "max",
                )
            )
    return targets


def run_log(tmp: Path, events: int, seed: int, quick: bool) -> dict[str, Any]:
    url = f"sqlite:///{tmp / 'log.sqlite'}"
    t0 = time.perf_counter()
    build_log(url, events, seed)
    size_mb = (tmp / "log.sqlite").stat().st_size / 1e6
    print(f"  log written in {time.perf_counter() - t0:.1f} s ({size_mb:.0f} MB)")
    follow = build_tree(url, events)
    print(
        f"  tree built by the follower in {follow.seconds:.1f} s "
        f"({events / follow.seconds:,.0f} events/s)"
    )
    for size, rate in follow.samples:
        print(f"    batch ending at tree size {size:>9,}: {rate:10,.0f} events/s")
    key = Ed25519PrivateKey.generate()
    app = CaseTrail(env=store_environment(url, None))
    evidence = Evidence(app, key, EvidenceSettings())
    try:
        checkpoint = evidence.checkpoint_now()
    finally:
        evidence.close()
        app.close()
    verify_times, raw_times = alternate(
        1 if quick else 2,
        lambda: verify_pass(url, key, checkpoint),
        lambda: raw_pass(url)[0],
    )
    verify_s, raw_s = min(verify_times), min(raw_times)
    print(
        f"  full verification (verify_store): {verify_s:.2f} s ({events / verify_s:,.0f} "
        f"events/s; runs {[round(t, 2) for t in verify_times]})"
    )
    print(
        f"  raw SHA-256 over the same leaf bytes, read the same way: {raw_s:.2f} s "
        f"(runs {[round(t, 2) for t in raw_times]})"
    )
    print(f"  ratio verify/raw: {ratio_of(verify_s, raw_s):.3f}")
    merkle_mem, raw_mem = in_memory(url, events)
    print(
        f"  in memory: tree {merkle_mem:.2f} s vs SHA-256 {raw_mem:.2f} s: "
        f"ratio {ratio_of(merkle_mem, raw_mem):.3f}"
    )
    return {
        "targets": [
            Target(
                "merkle",
                "sqlite",
                f"verify {events:,} events / raw SHA-256, from store",
                ratio_of(verify_s, raw_s),
                VERIFY_TARGET,
                "max",
            ),
            Target(
                "merkle",
                "memory",
                f"tree of {events:,} leaves / raw SHA-256",
                ratio_of(merkle_mem, raw_mem),
                MEMORY_TARGET,
                "max",
            ),
        ],
        "events": events,
        "log_mb": round(size_mb),
        "verify_seconds": verify_times,
        "raw_seconds": raw_times,
        "ratio": ratio_of(verify_s, raw_s),
        "in_memory": {"tree": merkle_mem, "raw": raw_mem, "ratio": ratio_of(merkle_mem, raw_mem)},
        "follow": {"seconds": follow.seconds, "samples": follow.samples},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("warning")  # the service's own log lines would interleave with the figures
    info = machine()
    print(
        f"merkle benchmark: {args.appends} appends x {len(MODES)} modes x {args.rounds} "
        f"round(s); {args.events:,} events verified; seed {args.seed}"
    )
    print(f"machine: {describe(info)}; load {load_average()}")
    stores: list[Store] = ["sqlite"]
    skipped = {}
    if args.no_postgres:
        skipped["postgres"] = "--no-postgres / --quick"
    elif (reason := postgres_unreachable(args.postgres_url)) is not None:
        skipped["postgres"] = f"unreachable: {reason}"
    else:
        stores.append("postgres")
    for store, reason in skipped.items():
        print(f"SKIPPED {store}: {reason}")
    pool = CommandPool(args.seed, reports=60, notes=60)
    result: dict[str, Any] = {"benchmark": "merkle", "machine": info, "skipped": skipped}
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-merkle-") as tmp_dir:
        tmp = Path(tmp_dir)
        print("\n== 1. append: events/s without the tree, with it in lockstep, in background ==")
        append: dict[str, dict[str, list[float]]] = {}
        targets: list[Target] = []
        for store in stores:
            per_mode: dict[str, list[float]] = {m: [] for m in MODES}
            for round_no in range(1, args.rounds + 1):
                for run in run_append(store, tmp, args.postgres_url, args.appends, round_no, pool):
                    per_mode[run.mode].append(run.rate)
                    print(f"  {store:<9}{run.mode:<11} round {round_no}: {run.rate:8.1f} events/s")
            targets += report_append(store, per_mode)
            append[store] = per_mode
        result["append"] = append
        print(f"\n== 2-3. a log of {args.events:,} events: tree build, verification ==")
        verify = run_log(tmp, args.events, args.seed, args.quick)
        targets += verify.pop("targets")
        result["verify"] = verify
    print_targets(targets)
    result["targets"] = [t.as_dict() for t in targets]
    result["load_average_after"] = load_average()
    path = write_results("merkle", result)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
