"""ledger_count: a ledger page's total as a street's ledger grows from 1,000 to 100,000 files
(issue 23: the 10k, 100k and 1M event stores of `bench/scale.py` hold about that many).

Subject: the total `ledger_page` answers (`projections.ledger.view`), kept in `ledger_counts`
(one row read), for the coordinator's page and for one filter each on village, risk and status.
Baseline, in the same turns: the `COUNT(*)` it answered before, over the same rows and indexes.
The tables are the ledger view's own (its DDL), filled with synthetic rows straight in SQL (no
events: the fold is proven equal to `COUNT(*)` by tests/projections/test_ledger_counts.py);
the counts are filled by `GROUP BY`, as that test compares them. SQLite, one file per size.
Target: p99 at the largest size at most 1.2x the smallest's, judged on the pooled p99s of the
turns with a 95% paired block-bootstrap interval (`bench.harness.bootstrap_ratio`, a turn is a
block): `ok`, `MISS` or `undecided`; in the suite (`bench/suite.py`) since the kept totals came.

    .venv/bin/python -m bench.ledger_count                    # 1k, 10k, 100k files
    .venv/bin/python -m bench.ledger_count --quick            # the same sizes, 400 rounds
    .venv/bin/python -m bench.ledger_count --files 1000,10000  # smaller
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from bench.harness import (
    Target,
    bootstrap_ratio,
    describe,
    load_average,
    machine,
    percentile,
    print_targets,
    write_results,
)
from domain.access import LedgerScope
from domain.taxonomy import CaseStatus, RiskLevel
from projections.blind_index import BlindIndex
from projections.follower import Db
from projections.ledger.view import COUNTED, LedgerQuery, LedgerView, _where, kept_total
from projections.sealed import KeyedDb, ReadModelKeys

STREET: Final = "chengguan-street"
VILLAGES: Final = tuple(f"village-{i}" for i in range(12))
TARGET: Final = 1.2


def _fill(path: Path, files: int, keys: ReadModelKeys, seed: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    db = Db(conn.cursor(), "sqlite")
    view = LedgerView(BlindIndex(bytes(32)), keys)
    conn.execute("BEGIN")
    for statement in view.create_statements("sqlite"):
        db.execute(statement)
    rng = random.Random(seed)
    rows = []
    for i in range(files):
        village = rng.choice(VILLAGES)
        rows.append(
            (
                str(UUID(int=rng.getrandbits(128))),
                STREET,
                keys.token("village", village),
                keys.token("unit", village),
                keys.token("school", "school"),
                f"name-{i}",
                f"id-{i}",
                "sealed",
                rng.choice(list(RiskLevel)).value,
                rng.choice(list(CaseStatus)).value,
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "child_director",
                "home_visit",
                "2026-01-01T00:00:00+00:00",
                "2026-01-01T00:00:00+00:00",
                1,
                0,
                0,
                0,
            )
        )
    conn.executemany(
        "INSERT INTO ledger_cases (case_id, street, village_index, reporting_unit_index, "
        "school_index, name_index, id_index, sealed, risk, status, found_on, found_by_role, "
        "method, reported_at, updated_at, version, follow_up_count, intervention_count, "
        "letter_count) VALUES (" + ",".join("?" * 19) + ")",
        rows,
    )
    conn.execute(
        "INSERT INTO ledger_counts SELECT street, '', '', COUNT(*) FROM ledger_cases "
        "GROUP BY street"
    )
    for column in COUNTED:
        conn.execute(
            f"INSERT INTO ledger_counts SELECT street, '{column}', {column}, COUNT(*) "
            f"FROM ledger_cases GROUP BY street, {column}"
        )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _timed(call: Callable[[], Any], rounds: int) -> list[float]:
    """`rounds` timings of `call`, after one untimed call (what ran before, a count's walk over
    the largest store above all, leaves the caches cold for the first)."""
    call()
    found = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        call()
        found.append((time.perf_counter_ns() - start) / 1e6)
    return found


def run(
    files: Sequence[int], rounds: int, seed: int, tmp: Path
) -> tuple[dict[int, dict[str, Any]], dict[int, list[list[float]]]]:
    """Each size's p50/p99 both ways, and the kept reads' timings turn by turn (the blocks)."""
    keys = ReadModelKeys(bytes(range(32)))
    scope = LedgerScope("ledger_street", STREET)
    queries = {
        "street": LedgerQuery(),
        "village": LedgerQuery(village=VILLAGES[3]),
        "risk": LedgerQuery(risk="high"),
        "status": LedgerQuery(status="intervening"),
    }
    # Each way reads through a connection of its own: the count's walk over the index would
    # otherwise push the counts' page out of the connection's page cache (as the page queries
    # of a server's connection may: the first run here measured that, x2.6 at p99).
    conns: dict[int, KeyedDb] = {}
    counting: dict[int, KeyedDb] = {}
    for size in files:
        path = tmp / f"ledger-{size}.sqlite"
        _fill(path, size, keys, seed)
        for into in (conns, counting):
            conn = sqlite3.connect(path, isolation_level=None)
            conn.row_factory = sqlite3.Row
            into[size] = KeyedDb(conn.cursor(), "sqlite", keys=keys)
    samples: dict[int, dict[str, list[float]]] = {s: {"kept": [], "count": []} for s in files}
    kept_turns: dict[int, list[list[float]]] = {s: [] for s in files}
    # In turns: every size and both ways in each round, so that load moves all alike. The
    # kept totals of every size are read before the counts of the round: right after a count's
    # walk over 100k index entries the CPU's caches are cold, and the kept read timed then
    # measured that walk, not itself (p99 x2.4 with each way's calls side by side).
    for turn in range(rounds // 20):
        order = files if turn % 2 == 0 else list(reversed(files))
        for size in files:
            kept_turns[size].append([])
        for way in ("kept", "count"):
            for size in order:
                for query in queries.values():
                    call: Callable[[], Any]
                    if way == "kept":
                        call = partial(kept_total, conns[size], scope, query)
                    else:
                        where, params = _where(keys, scope, query, None)
                        call = partial(
                            counting[size].execute,
                            f"SELECT COUNT(*) AS n FROM {{ledger_cases}} c WHERE {where}",
                            params,
                        )
                    timed = _timed(call, 10)
                    samples[size][way] += timed
                    if way == "kept":
                        kept_turns[size][-1] += timed
    for size, db in conns.items():
        for query in queries.values():
            where, params = _where(keys, scope, query, None)
            (total,) = db.execute(
                f"SELECT COUNT(*) AS n FROM {{ledger_cases}} c WHERE {where}", params
            )
            assert kept_total(db, scope, query) == total["n"], (size, query)
        db.cursor.connection.close()
        counting[size].cursor.connection.close()
    return {
        size: {
            way: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
            for way, v in found.items()
        }
        for size, found in samples.items()
    }, kept_turns


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_count", description=__doc__)
    parser.add_argument("--files", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, help="timings per size and way (10000; quick 400)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (400 if args.quick else 10000)
    files = [int(f) for f in args.files.split(",")]
    print(describe(machine()))
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="ledger-count-") as tmp:
        results, kept_turns = run(files, args.rounds, args.seed, Path(tmp))
    after = load_average()
    print(f"load average after: {after}")
    print("| files | kept p50 ms | kept p99 ms | COUNT(*) p50 ms | COUNT(*) p99 ms | samples |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, found in results.items():
        k, c = found["kept"], found["count"]
        print(
            f"| {size:,} | {k['p50']:.4f} | {k['p99']:.4f} | {c['p50']:.3f} | {c['p99']:.3f} "
            f"| {k['n']} |"
        )
    small, large = results[files[0]], results[files[-1]]
    growth = bootstrap_ratio(kept_turns[files[-1]], kept_turns[files[0]])
    before = large["count"]["p99"] / small["count"]["p99"]
    print(
        f"p99 growth {files[0]:,} -> {files[-1]:,} files: kept {growth.text()}, "
        f"COUNT(*) x{before:.1f} (informative)"
    )
    targets = [
        Target.of_interval(
            "ledger_count",
            "sqlite",
            f"ledger total p99 at {files[-1]:,} / at {files[0]:,} files",
            growth,
            TARGET,
            "max",
            note=f"COUNT(*) grew x{before:.1f} over the same sizes (informative)",
        )
    ]
    print_targets(targets)
    write_results(
        "ledger_count",
        {
            "machine": machine(),
            "load_after": after,
            "files": files,
            "rounds": args.rounds,
            "results": {str(size): found for size, found in results.items()},
            "growth_p99_kept": growth.median,
            "growth_p99_count": before,
            "targets": [t.as_dict() for t in targets],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
