"""scale: case reads and ledger pages as the store grows, from 10k to 1M events.

For each size a store of N events over N/10 case files (event counts per file skewed: most
have a handful, a few have hundreds; `bench.workload.event_counts`) is built through the
aggregate's methods and saved many case files per transaction, and the read models are caught
up (`ReadModels.catch_up`). Then a real server (`bench.server`, the service as it ships, its
read models followed as in production) answers 8 concurrent clients over loopback:

- `GET /v1/cases/{id}`, case files drawn with a Zipf-skewed hot set (s = 1.1), by the street's
  coordinator and the reporting villages; each read stores its access event first;
- `GET /v1/ledger`, the coordinator's ledger (台账): pages 1-20 of the street (Zipf), or the
  first pages filtered by village, risk or status; each page records an access event per row
  that shows identity.

The targets are absolute on this machine (case read p99 under 20 ms, ledger page p99 under
50 ms, at 1M events) and the growth is the p99 at each size over the p99 at the smallest.

Building a store takes time (about 5,000 events/s here), so SQLite stores are built once and
kept under `$CASETRAIL_BENCH_CACHE` (default /tmp/casetrail-bench-cache), keyed by size, seed
and workload version; each run works on a copy, so that its access events never accumulate in
the cached store. PostgreSQL stores are built afresh in a throw-away schema, and only up to
100k events in the full run (1M would take longer than the whole suite should).

    .venv/bin/python -m bench.scale                 # SQLite 10k, 100k, 1M; PostgreSQL 10k, 100k
    .venv/bin/python -m bench.scale --quick         # SQLite 10k only
    .venv/bin/python -m bench.scale --sizes 10000,100000 --no-postgres
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from bench.harness import (
    RESULTS_DIR,
    Percentiles,
    Target,
    Zipf,
    describe,
    free_port,
    machine,
    print_targets,
    ratio_of,
    write_results,
)
from bench.loadgen import LoadClient, LoadResult, encode_request
from bench.profile import Profiler, summary
from bench.reads import PURPOSE_OF, Tokens
from bench.server import Server, service_env
from bench.stores import (
    DEFAULT_POSTGRES_URL,
    Store,
    postgres_store,
    selected_stores,
    store_settings,
)
from bench.workload import (
    COORDINATOR,
    DEFAULT_SEED,
    StoredCase,
    event_counts,
    populate,
    readers_of,
)
from domain.application import CaseTrail
from gateway import keyring
from gateway.bootstrap import open_application, open_evidence, open_read_models
from gateway.cli.demo import VILLAGES
from gateway.settings import Settings

CONCURRENCY: Final = 8
READ_P99_TARGET_MS: Final = 20.0
LEDGER_P99_TARGET_MS: Final = 50.0
EVENTS_PER_CASE: Final = 10
# Bump when the workload changes, so that cached stores built by an older one are not used.
WORKLOAD_VERSION: Final = 1
FULL_SIZES: Final = {"sqlite": (10_000, 100_000, 1_000_000), "postgres": (10_000, 100_000)}
QUICK_SIZES: Final = {"sqlite": (10_000,), "postgres": ()}


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


def build(home: Path, url: str, events: int, seed: int) -> list[StoredCase]:
    """Keys, events and caught-up read models for one size; the case files it stored."""
    keyring.init_keys(home / "keys")
    settings = Settings.from_env(service_env(home, url))
    app = CaseTrail(env=settings.application_env())
    try:
        counts = event_counts(events // EVENTS_PER_CASE, events, seed)
        t0 = time.perf_counter()
        cases = populate(app, counts, seed, progress=_progress(f"building {events:,}"))
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        readmodels = open_read_models(settings, app)
        try:
            readmodels.catch_up()
        finally:
            readmodels.close()
        print(
            f"    built {events:,} events in {built:.0f} s; read models caught up in "
            f"{time.perf_counter() - t0:.0f} s"
        )
    finally:
        app.close()
    catch_up_evidence(settings)
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
    print(f"    evidence log caught up in {time.perf_counter() - t0:.0f} s")


def _save_cases(path: Path, cases: Sequence[StoredCase]) -> None:
    path.write_text(json.dumps([[str(c.id), c.village, c.events] for c in cases]))


def _load_cases(path: Path) -> list[StoredCase]:
    return [StoredCase(UUID(i), v, n) for i, v, n in json.loads(path.read_text())]


@contextmanager
def sqlite_home(events: int, seed: int, work: Path) -> Iterator[tuple[Path, str, list[StoredCase]]]:
    """A working copy of the cached store of this size (built first if missing)."""
    cached = cache_root() / f"scale-sqlite-{events}-s{seed}-v{WORKLOAD_VERSION}"
    if not (cached / "complete").exists():
        shutil.rmtree(cached, ignore_errors=True)
        cached.mkdir(parents=True)
        cases = build(cached, f"sqlite:///{cached / 'casetrail.sqlite'}", events, seed)
        _save_cases(cached / "cases.json", cases)
        (cached / "complete").write_text("ok\n")
        (cached / "evidence").write_text("ok\n")
    else:
        print(f"    using the store cached in {cached}")
    if not (cached / "evidence").exists():
        env = service_env(
            cached,
            f"sqlite:///{cached / 'casetrail.sqlite'}",
            CASETRAIL_READMODEL_URL=f"sqlite:///{cached / 'readmodels.sqlite'}",
        )
        catch_up_evidence(Settings.from_env(env))
        (cached / "evidence").write_text("ok\n")
    home = work / f"sqlite-{events}"
    t0 = time.perf_counter()
    shutil.copytree(cached, home)
    print(f"    working copy in {time.perf_counter() - t0:.1f} s")
    try:
        yield home, f"sqlite:///{home / 'casetrail.sqlite'}", _load_cases(cached / "cases.json")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def postgres_home(
    events: int, seed: int, work: Path, base_url: str
) -> Iterator[tuple[Path, str, list[StoredCase]]]:
    home = work / f"postgres-{events}"
    with postgres_store(base_url, f"{events}", prefix="bench_scale") as url:
        cases = build(home, url, events, seed)
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


def measure(store: Store, events: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    print(f"\n== scale / {store}: {events:,} events over {events // EVENTS_PER_CASE:,} cases ==")
    with ExitStack() as stack:
        if store == "sqlite":
            home, url, cases = stack.enter_context(sqlite_home(events, args.seed, work))
        else:
            home, url, cases = stack.enter_context(
                postgres_home(events, args.seed, work, args.postgres_url)
            )
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
        print("  store    " + " ".join(f"{k}={v}" for k, v in settings.items()))
        server = stack.enter_context(
            Server(port=free_port(), variant="audited", env=env, log_path=work / "scale.log")
        )
        client = LoadClient(server.port, args.concurrency)
        stack.callback(client.close)
        tokens = Tokens(home)
        rng = random.Random(args.seed + events)
        ok = frozenset({200})
        client.run(read_plan(cases, tokens, rng, args.warmup), ok)
        with ExitStack() as profiling:
            if args.profile:
                out = RESULTS_DIR / f"profile-scale-{store}-{events}-reads.txt"
                profiling.enter_context(Profiler(server.pid, out))
            reads = client.run(read_plan(cases, tokens, rng, args.reads), ok)
        if args.profile:
            print(summary(out, top=40))
        ledger = LoadResult()
        if args.ledger:
            client.run(ledger_plan(tokens, rng, max(8, args.warmup // 10)), ok)
            ledger = client.run(ledger_plan(tokens, rng, args.pages), ok)
    found: dict[str, Any] = {"store": store, "events": events, "settings": settings}
    for name, result in (("case_read", reads), ("ledger_page", ledger)):
        if not result.requests:
            continue
        p = Percentiles.of(result.histogram)
        found[name] = {
            "requests": result.requests,
            "per_second": round(result.per_second, 1),
            "latency_ms": p.as_dict(),
            "statuses": dict(result.statuses),
            "unexpected": result.unexpected,
        }
        print(f"  {name:<12} {result.per_second:7,.0f}/s  {p.line()}")
        if result.unexpected:
            print(f"    unexpected answers: {[u[:120] for u in result.unexpected]}")
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", help="comma-separated event counts (for every store)")
    parser.add_argument("--reads", type=int)
    parser.add_argument("--pages", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-ledger", dest="ledger", action="store_false")
    parser.add_argument("--profile", action="store_true", help="py-spy the server's case reads")
    args = parser.parse_args(argv)
    args.reads = args.reads or (400 if args.quick else 2000)
    args.pages = args.pages or (40 if args.quick else 120)
    args.warmup = args.warmup or (50 if args.quick else 300)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.sizes:
        given = tuple(int(s) for s in args.sizes.split(","))
        sizes = {"sqlite": given, "postgres": given}
    args.size_plan = sizes
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"scale benchmark: case reads and ledger pages at {args.concurrency} concurrent clients, "
        f"sizes {args.size_plan}"
    )
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(
        args.postgres_url,
        postgres=bool(args.size_plan["postgres"]) and not args.no_postgres,
        postgres_off_reason=(
            "--no-postgres" if args.no_postgres else "no PostgreSQL sizes in this mode"
        ),
    )
    results: list[dict[str, Any]] = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-scale-") as tmp:
        for store in stores:
            for events in args.size_plan[store]:
                results.append(measure(store, events, args, Path(tmp)))
    for store in stores:
        mine = [r for r in results if r["store"] == store]
        if not mine:
            continue
        smallest, largest = mine[0], mine[-1]
        size = f"{largest['events'] // 1000:,}k events"
        for name, limit in (
            ("case_read", READ_P99_TARGET_MS),
            ("ledger_page", LEDGER_P99_TARGET_MS),
        ):
            if name not in largest:
                continue
            p99 = largest[name]["latency_ms"]["p99_ms"]
            growth = {
                f"{r['events']}": ratio_of(
                    r[name]["latency_ms"]["p99_ms"], smallest[name]["latency_ms"]["p99_ms"]
                )
                for r in mine
            }
            largest[f"{name}_p99_growth"] = growth
            print(f"  {store} {name} p99 over the {smallest['events']:,}-event store: {growth}")
            note = "" if largest["events"] >= 1_000_000 else "target is for 1M events"
            targets.append(
                Target("scale", store, f"{name} p99 at {size}", p99, limit, "max", "ms", note)
            )
    print_targets(targets)
    path = write_results(
        "scale",
        {
            "benchmark": "scale",
            "unit": "latency of case reads and ledger pages at 8 concurrent clients",
            "machine": info,
            "workload": {
                "sizes": args.size_plan,
                "events_per_case": EVENTS_PER_CASE,
                "concurrency": args.concurrency,
                "reads": args.reads,
                "ledger_pages": args.pages if args.ledger else 0,
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
