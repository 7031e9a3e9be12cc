"""scaling: audited reads with 1, 2 and 4 API processes on PostgreSQL, and where the time goes.

The scaling curve of issue 21 on this machine's cores. One real server (`bench.server`, the
service as it ships, `casetrail serve` laid out as in production: `CASETRAIL_WORKERS` API
processes on one port, the followers in one `projections run` child) per process count, all
running at once, each on a PostgreSQL database of its own (not a schema: PostgreSQL's
`NOTIFY`, which wakes the followers, is per database, and one server's followers must not be
woken by another's writes), filled alike from the same seed. The databases live in a
PostgreSQL cluster the benchmark starts for the run (`private_cluster`: this machine's
PostgreSQL programs, default durability settings, a free port; `--postgres-url` to use an
existing server instead): three servers hold more connections than a shared server's default
100, which other work needs too, and all of a private cluster's CPU is the benchmark's. The
load generator (`bench.loadgen`, in this process) sends the same audited `GET /v1/cases/{id}`
to each server in turn, block by block, the order rotating (as `bench.reads` does), so that
every process count sees the same machine.

Per block and process count it measures, besides throughput and latency, where the machine's
CPU went while the block ran, from `/proc` (ticks of 10 ms, user + system):

- `api`: the server's processes but the followers' (the uvicorn parent and its workers);
- `followers`: the `projections run` child (read models and the evidence log following the
  access events);
- `postgres`: the PostgreSQL backends serving this server's database (found by the database's
  name in their process titles, `postgres: ... <database> 127.0.0.1(port) ...`);
- `pg_shared`: the cluster's own background processes (postmaster, WAL writer, checkpointer,
  background writer), shared by the servers' databases;
- `loadgen`: this process (the load generator; nothing else runs here during a block);
- `others`: the rest of the machine's busy time (`/proc/stat`): other sessions' work;
- `idle`: the machine's idle and I/O-wait time.

The shares are of the machine's capacity during the block (2 cores x wall time here), so they
add up to 100%. With each count's figures, the ratio against one process of throughput, of
the service's CPU per request (API + followers + its PostgreSQL backends) and of p99, each with
its interval over the blocks (`bench.harness.Interval`; p99 by `bootstrap_ratio`). There is no
target: the issue asks for the curve and where the time goes. After the run every server's
database is counted: each `200` has its stored `CaseAccessed`.

    .venv/bin/python -m bench.scaling            # 1, 2, 4 processes, 16 blocks of 600 (4-8 min)
    .venv/bin/python -m bench.scaling --quick    # 1 and 2 processes, 6 blocks of 100 (~1 min)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse, urlunparse

import psycopg
from psycopg import sql

from bench.harness import (
    Interval,
    Percentiles,
    Zipf,
    bootstrap_ratio,
    describe,
    free_port,
    load_average,
    machine,
    paired_ratios,
    write_results,
)
from bench.loadgen import LoadClient, LoadResult
from bench.reads import Tokens, count_access_events, encode_plan, read_plan
from bench.server import Server, process_cpu_seconds, service_env
from bench.stores import DEFAULT_POSTGRES_URL, postgres_unreachable, store_settings
from bench.workload import DEFAULT_SEED, StoredCase, event_counts, populate
from domain.application import CaseTrail
from gateway import keyring
from gateway.settings import Settings

CONCURRENCY: Final = 32
PARTS: Final = ("api", "followers", "postgres", "pg_shared", "loadgen", "others", "idle")
# The parts that are the service's own work for the requests: its CPU per request.
SERVICE_PARTS: Final = ("api", "followers", "postgres")
_TICK: Final = os.sysconf("SC_CLK_TCK")


# --- where the CPU goes: /proc ----------------------------------------------------------------


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line with spaces for NULs)."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[int(entry.name)] = (int(stat[1]), cmdline)
    return found


def _tree(root: int, processes: dict[int, tuple[int, str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def machine_ticks() -> tuple[float, float, float]:
    """Seconds of all CPUs since boot from /proc/stat: (busy, idle + iowait, steal)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    # counted in user and nice.
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq
    return busy / _TICK, (idle + iowait) / _TICK, steal / _TICK


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds per process of interest, and the machine's, at one moment."""

    at: float
    by_pid: dict[int, tuple[str, float]]  # pid -> (part, seconds used so far)
    # This process's CPU before and after the sample's own reading of /proc (about 5 ms),
    # so that the load generator's figure leaves it out.
    loadgen_before: float
    loadgen: float
    busy: float
    idle: float
    steal: float


def sample(server_pid: int, database: str, postmaster: int | None) -> CpuSample:
    """Who used how much CPU so far: the server's processes split into API and followers, this
    database's PostgreSQL backends, and the background processes of the cluster whose
    postmaster is `postmaster` (None: a cluster not ours, whose background is left out)."""
    loadgen_before = time.process_time()
    processes = _processes()
    by_pid: dict[int, tuple[str, float]] = {}
    followers = {p for p in _tree(server_pid, processes) if "projections run" in processes[p][1]}
    follower_tree = {q for f in followers for q in _tree(f, processes)}
    for pid in _tree(server_pid, processes):
        by_pid[pid] = ("followers" if pid in follower_tree else "api", process_cpu_seconds(pid))
    marker = f" {database} "
    cluster = set(_tree(postmaster, processes)) if postmaster else set()
    for pid, (_, cmdline) in processes.items():
        if marker in cmdline and cmdline.startswith("postgres: "):
            by_pid[pid] = ("postgres", process_cpu_seconds(pid))
        elif pid in cluster and "(" not in cmdline:
            # No client address in the title: the postmaster, WAL writer, checkpointer,
            # background writer, launchers: shared by the cluster's databases.
            by_pid[pid] = ("pg_shared", process_cpu_seconds(pid))
    busy, idle, steal = machine_ticks()
    return CpuSample(
        time.monotonic(), by_pid, loadgen_before, time.process_time(), busy, idle, steal
    )


def cpu_between(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds of each part between two samples. A process that started in between counts
    from zero; one that ended in between is lost with what it used since `before` (backends
    live as long as the service's connection pool, so rarely)."""
    used = dict.fromkeys(PARTS, 0.0)
    for pid, (part, seconds) in after.by_pid.items():
        earlier = before.by_pid.get(pid)
        used[part] += seconds - (earlier[1] if earlier and earlier[0] == part else 0.0)
    used["loadgen"] = after.loadgen_before - before.loadgen
    ours = sum(used[p] for p in PARTS if p not in ("others", "idle"))
    used["others"] = max(0.0, (after.busy - before.busy) - ours) + (after.steal - before.steal)
    used["idle"] = after.idle - before.idle
    return used


# --- PostgreSQL: a cluster of the benchmark's own, one database per server ----------------------

# A server holds a few dozen connections (five per pool opened, in every process: the parent,
# each worker, the followers); three servers with 1, 2 and 4 workers need more than the 100 a
# default PostgreSQL allows, which a machine's shared server also gives to everyone else's
# tests. Its own cluster also makes all of PostgreSQL's CPU the benchmark's.
MAX_CONNECTIONS: Final = 400


def postgres_bindir() -> Path | None:
    """The PostgreSQL server's programs (initdb, pg_ctl): `pg_config --bindir`, else the
    newest /usr/lib/postgresql/<version>/bin (Debian)."""
    try:
        found = subprocess.run(
            ["pg_config", "--bindir"],  # noqa: S607 (the PATH's pg_config, as a user would)
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if (Path(found) / "initdb").exists():
            return Path(found)
    except (OSError, subprocess.CalledProcessError):
        pass
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    return versions[-1].parent if versions else None


@dataclass(frozen=True)
class Cluster:
    url: str  # the cluster's `postgres` database, to create others from
    postmaster: int | None  # its pid: its processes are the benchmark's PostgreSQL
    description: str


@contextmanager
def private_cluster(bindir: Path) -> Iterator[Cluster]:
    """A PostgreSQL cluster for this run (initdb, trust on loopback, default durability: fsync
    and synchronous_commit on), on a free port, stopped and deleted afterwards. As root, its
    programs run as the `postgres` user (initdb refuses root)."""
    top = Path(tempfile.mkdtemp(prefix="casetrail-bench-pg-"))
    top.chmod(0o755)
    data, sockets = top / "data", top / "sockets"
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        sockets.mkdir()
        shutil.chown(sockets, "postgres", "postgres")
        shutil.chown(top, "postgres", "postgres")
    else:
        sockets.mkdir()
    port = free_port()
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections={MAX_CONNECTIONS}"
    )

    def run(*argv: str) -> None:
        subprocess.run(  # noqa: S603 (PostgreSQL's own programs, our arguments)
            [*as_user, *argv], check=True, capture_output=True, timeout=300
        )

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(top / "log"), "-w", "-t", "240",
            "-o", options, "start")  # fmt: skip
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield Cluster(
            f"postgresql://postgres@127.0.0.1:{port}/postgres",
            postmaster,
            f"a cluster of its own ({bindir.parent.name}, port {port}, "
            f"max_connections {MAX_CONNECTIONS})",
        )
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(top, ignore_errors=True)


@contextmanager
def postgres_database(base_url: str, label: str) -> Iterator[tuple[str, str]]:
    """A fresh database for one server, dropped afterwards whatever happens: (url, name)."""
    name = f"bench_scaling_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunparse(urlparse(base_url)._replace(path=f"/{name}")), name
    finally:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
            # FORCE: a server stopped by a kill may have left a backend behind.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def settle(
    server: Server, *, quiet_cpu: float = 0.05, period: float = 1.0, most: float = 120.0
) -> float:
    """Wait until the server is idle (its followers have caught up with the store it was given:
    the evidence log and the read models of every stored event), at most `most` seconds; the
    seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < most:
        before = server.cpu_seconds()
        time.sleep(period)
        if server.cpu_seconds() - before <= quiet_cpu:
            break
    return time.monotonic() - started


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Side:
    """One process count: its server, store, client and figures per block."""

    workers: int
    database: str
    server: Server
    env: dict[str, str]
    cases: list[StoredCase]
    client: LoadClient | None = None

    def __post_init__(self) -> None:
        self.total = LoadResult()
        self.per_second: list[float] = []
        self.p99: list[float] = []
        self.latencies: list[list[float]] = []
        self.cpu: list[dict[str, float]] = []  # per block: seconds per part
        self.wall: list[float] = []
        self.batches: dict[str, Any] = {}  # group-commit counts, all workers

    def service_ms_per_request(self, block: int) -> float:
        used = sum(self.cpu[block][p] for p in SERVICE_PARTS)
        return 1000 * used / max(len(self.latencies[block]), 1)


def run(  # noqa: PLR0915 (one scenario, read top to bottom)
    args: argparse.Namespace, tmp: Path, cluster: Cluster
) -> dict[str, Any]:
    home = tmp / "home"
    keyring.init_keys(home / "keys")
    counts = event_counts(args.cases, args.cases * 4, args.seed)
    sides: dict[int, Side] = {}
    with ExitStack() as stack:
        for workers in args.workers:
            url, database = stack.enter_context(postgres_database(cluster.url, f"{workers}w"))
            env = service_env(
                home,
                url,
                CASETRAIL_WORKERS=str(workers),
                # Each server its own metrics directory: `serve` empties the one it is given.
                CASETRAIL_PROMETHEUS_MULTIPROC_DIR=str(tmp / f"metrics-{workers}"),
            )
            (tmp / f"metrics-{workers}").mkdir()
            # Filled, then closed: its connections are not left open while the servers run.
            app = CaseTrail(env=Settings.from_env(env).application_env())
            try:
                cases = populate(app, counts, args.seed)
                durability = store_settings(app)
            finally:
                app.close()
            random.Random(args.seed).shuffle(cases)  # the hot set: a seeded choice of cases
            server = Server(
                port=free_port(), variant="audited", env=env, log_path=tmp / f"{workers}w.log"
            )
            sides[workers] = Side(workers, database, server, env, cases)
        print(
            f"\n== scaling / postgres: {args.cases} cases, {sum(counts)} events in each of "
            f"{len(sides)} databases; API processes {', '.join(map(str, sides))} =="
        )
        print("  store    " + " ".join(f"{k}={v}" for k, v in durability.items()))
        print(f"  PostgreSQL: {cluster.description}")
        for side in sides.values():
            stack.callback(side.server.stop)
            side.server.start()
        for side in sides.values():
            side.server.wait_ready()
            side.client = LoadClient(side.server.port, args.concurrency)
            stack.callback(side.client.close)

        tokens = Tokens(home)
        rng = random.Random(args.seed + 2)
        zipf = Zipf(args.cases)
        ok = frozenset({200})
        warmup = read_plan(sides[args.workers[0]].cases, rng, zipf, args.warmup)
        for side in sides.values():
            assert side.client is not None
            side.client.run(encode_plan(warmup, side.cases, tokens), ok)
        for side in sides.values():
            waited = settle(side.server)
            print(f"  {side.workers} API process(es): idle after {waited:.1f} s")

        order_base = list(sides)
        for turn in range(args.blocks):
            plan = read_plan(sides[args.workers[0]].cases, rng, zipf, args.block)
            shift = turn % len(order_base)
            order = order_base[shift:] + order_base[:shift]
            if turn % 2:
                order.reverse()
            line = []
            for workers in order:
                side = sides[workers]
                assert side.client is not None
                encoded = encode_plan(plan, side.cases, tokens)
                before = sample(side.server.pid, side.database, cluster.postmaster)
                result = side.client.run(encoded, ok)
                after = sample(side.server.pid, side.database, cluster.postmaster)
                side.total.add(result)
                side.per_second.append(result.per_second)
                side.p99.append(Percentiles.of(result.histogram).p99_ms)
                side.latencies.append(result.latencies_ms)
                side.cpu.append(cpu_between(before, after))
                side.wall.append(after.at - before.at)
                line.append(
                    f"{workers}p {result.per_second:6,.0f}/s "
                    f"{side.service_ms_per_request(len(side.cpu) - 1):5.2f} ms"
                )
            print(f"  block {turn + 1:>2}/{args.blocks} (load {load_average()}): {'  '.join(line)}")

        for side in sides.values():
            side.server.stop()  # each worker leaves its group-commit counts as it stops
            side.batches = side.server.stats()
        for side in sides.values():
            app = CaseTrail(env=Settings.from_env(side.env).application_env())
            try:
                stored = count_access_events(app)
            finally:
                app.close()
            expected = side.total.statuses[200] + len(warmup)
            assert stored == expected, (side.workers, stored, expected)
    return summarise(args, sides, durability)


def summarise(
    args: argparse.Namespace, sides: dict[int, Side], durability: dict[str, str]
) -> dict[str, Any]:
    one = sides[min(sides)]
    figures: dict[str, Any] = {}
    print(
        f"\n  {'API processes':<14}{'reads/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/read':>12}{'batch':>7}  " + " ".join(f"{p:>9}" for p in PARTS)
    )
    for workers, side in sides.items():
        p = Percentiles.of(side.total.histogram)
        requests = side.total.requests
        seconds = {part: sum(c[part] for c in side.cpu) for part in PARTS}
        capacity = sum(seconds.values())
        ms_per_request = {part: 1000 * seconds[part] / requests for part in PARTS}
        share = {part: seconds[part] / capacity if capacity else 0.0 for part in PARTS}
        service_ms = sum(ms_per_request[part] for part in SERVICE_PARTS)
        wall = sum(side.wall)
        batches = side.batches.get("group_commit_batches", 0)
        mean_batch = side.batches.get("group_commit_events", 0) / batches if batches else None
        figures[str(workers)] = {
            "workers": workers,
            "requests": requests,
            "seconds": round(side.total.seconds, 3),
            "requests_per_second": round(side.total.per_second, 1),
            "per_block": [round(x, 1) for x in side.per_second],
            "latency_ms": p.as_dict(),
            "statuses": dict(side.total.statuses),
            "unexpected": side.total.unexpected,
            # Access events per durable commit: each worker commits its own batches.
            "group_commit_mean_batch": round(mean_batch, 2) if mean_batch else None,
            "service_cpu_ms_per_request": round(service_ms, 3),
            "cpu_ms_per_request": {k: round(v, 3) for k, v in ms_per_request.items()},
            "share_of_machine": {k: round(v, 4) for k, v in share.items()},
            # Cores the service (API, followers, its backends) kept busy, on average.
            "service_cores": round(sum(seconds[x] for x in SERVICE_PARTS) / wall, 3) if wall else 0,
            "service_cpu_ms_per_block": [
                round(side.service_ms_per_request(b), 3) for b in range(len(side.cpu))
            ],
            "p99_ms_per_block": [round(x, 3) for x in side.p99],
        }
        print(
            f"  {workers:<14}{side.total.per_second:>9,.0f}{p.p50_ms:>9.1f}{p.p99_ms:>9.1f}"
            f"{service_ms:>12.2f}{mean_batch or 0:>7.1f}  "
            + " ".join(f"{100 * share[x]:>8.1f}%" for x in PARTS)
        )
        if side.total.unexpected:
            print(f"    unexpected answers: {side.total.unexpected}")
    print("  (shares: of the machine's CPU capacity during that count's blocks, see the docstring)")
    ratios: dict[str, Any] = {}
    for workers, side in sides.items():
        if side is one:
            continue
        cpu_one = [one.service_ms_per_request(b) for b in range(len(one.cpu))]
        cpu_n = [side.service_ms_per_request(b) for b in range(len(side.cpu))]
        intervals = {
            "throughput": Interval.of(paired_ratios(side.per_second, one.per_second)),
            "service_cpu_per_request": Interval.of(paired_ratios(cpu_n, cpu_one)),
            "p99": bootstrap_ratio(side.latencies, one.latencies),
        }
        ratios[str(workers)] = {k: asdict(v) for k, v in intervals.items()}
        for name, interval in intervals.items():
            print(f"  {workers} / {one.workers} API processes, {name:<24} {interval.text()}")
    return {
        "store": "postgres",
        "settings": durability,
        "by_workers": figures,
        "ratios_against_one": ratios,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", help="API process counts, comma-separated (1,2,4)")
    parser.add_argument("--cases", type=int)
    parser.add_argument("--blocks", type=int)
    parser.add_argument("--block", type=int, help="requests per block and process count")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--postgres-url",
        help="an existing PostgreSQL server to create the databases in (e.g. "
        f"{DEFAULT_POSTGRES_URL}); by default the benchmark starts a cluster of its own",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.workers = [int(x) for x in (args.workers or ("1,2" if quick else "1,2,4")).split(",")]
    args.cases = args.cases or (200 if quick else 1000)
    args.blocks = args.blocks or (6 if quick else 16)
    args.block = args.block or (100 if quick else 600)
    args.warmup = args.warmup or (100 if quick else 400)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"scaling benchmark: audited GET /v1/cases/{{id}} at {args.concurrency} concurrent "
        f"clients on PostgreSQL, API processes {args.workers}, {args.blocks} blocks of "
        f"{args.block} requests per count, seed {args.seed}"
    )
    print(f"machine: {describe(info)}")
    with ExitStack() as stack:
        if args.postgres_url:
            cluster = Cluster(args.postgres_url, None, f"the server at {args.postgres_url}")
            reason = postgres_unreachable(args.postgres_url)
        else:
            bindir = postgres_bindir()
            reason = None if bindir else "no PostgreSQL server programs (initdb, pg_ctl) found"
            if bindir:
                cluster = stack.enter_context(private_cluster(bindir))
        if reason is not None:
            print(f"SKIPPED postgres: {reason}")
            write_results(
                "scaling",
                {"benchmark": "scaling", "machine": info, "skipped": {"postgres": reason}},
            )
            return 0
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="casetrail-bench-scaling-"))
        results = run(args, Path(tmp), cluster)
        results["postgres"] = cluster.description
    path = write_results(
        "scaling",
        {
            "benchmark": "scaling",
            "unit": "audited GET /v1/cases/{id} answered per second over HTTP (loopback)",
            "machine": info,
            "load_average_at_end": load_average(),
            "workload": {
                "cases": args.cases,
                "events": args.cases * 4,
                "concurrency": args.concurrency,
                "workers": args.workers,
                "blocks": args.blocks,
                "requests_per_block": args.block,
                "warmup_requests": args.warmup,
                "seed": args.seed,
            },
            "results": results,
        },
    )
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
