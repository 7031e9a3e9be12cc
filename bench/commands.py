"""commands: commands through the HTTP API against raw `Application.save`, same store and cipher.

Subject: a real server (`bench.server`, the service as it ships) takes a mix of commands from 32
concurrent clients over loopback HTTP: report a clue (`POST /v1/cases`, a new case file),
assign a unit (`POST /v1/cases/{id}/assignments`) and record an intervention
(`POST /v1/cases/{id}/interventions`), one third each, on case files drawn with a Zipf-skewed
hot set (s = 0.8); each command stores one event. Everything a command costs is in: HTTP,
authentication, validation, loading the case (decrypting its events), the rules, encryption,
the durable commit, the log line.

Baseline: the same kinds of events, built the same way but before timing, stored with
`Application.save` one aggregate per call from one thread, in the benchmark's process, on the
same store with the same cipher: what the event store itself sustains with a durable commit per
save. The two take turns in blocks (ABBA) on one store, so both see the same machine and the
same growing store.

    .venv/bin/python -m bench.commands            # 3000 cases, 24 blocks of 400 commands
    .venv/bin/python -m bench.commands --quick    # 200 cases, 6 blocks of 60
"""

from __future__ import annotations

import argparse
import base64
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench.harness import (
    RESULTS_DIR,
    Interval,
    Percentiles,
    Target,
    Zipf,
    describe,
    free_port,
    machine,
    new_histogram,
    paired_ratios,
    print_targets,
    ratio_of,
    record_ns,
    write_results,
)
from bench.loadgen import LoadClient, LoadResult, encode_request
from bench.profile import Profiler, summary
from bench.reads import Tokens
from bench.server import SAVE_PATH, Server, encode_events, service_env
from bench.stores import (
    DEFAULT_POSTGRES_URL,
    Store,
    fresh_store,
    selected_stores,
    store_settings,
)
from bench.workload import (
    COORDINATOR,
    DEFAULT_SEED,
    STREET,
    CommandPool,
    StoredCase,
    event_counts,
    populate,
    reporter_of,
)
from domain import commands as cmd
from domain.application import CaseTrail
from domain.case import Case
from domain.commands import MEASURES
from domain.taxonomy import ProtectionFunction
from domain.units import RegisterUnit, UnitKeys
from gateway import keyring
from gateway.cli.demo import MEMBER_UNITS
from gateway.settings import Settings

CONCURRENCY: Final = 32
TARGET: Final = 0.7
KINDS: Final = ("report", "assign", "intervention")
# Milder than the reads' 1.1: a busy case file gets a few changes a day, not a third of them.
ZIPF_S: Final = 0.8


class Plan:
    """One block's commands, as HTTP requests and as the equivalent raw operations: `raw` on the
    bare library's store, `same` on the API's own store (for `POST /_bench/save`)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.raw: list[tuple[str, Any]] = []
        self.same: list[tuple[str, Any]] = []


def register_units(application: CaseTrail, unit_ids: Sequence[str]) -> None:
    """Register member units with throwaway public keys (no credentials file, no broker):
    the API refuses an assignment to an unregistered unit."""
    for unit_id in unit_ids:
        public = (
            X25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        keys = UnitKeys(
            sealing_key=base64.b64encode(public).decode("ascii"),
            nats_user="u" + secrets.token_hex(8),
            street_token="s" + secrets.token_hex(8),
            tls_fingerprint=secrets.token_hex(32),
        )
        command = RegisterUnit(unit_id=unit_id, name="压测单位", type="school", street=STREET)
        application.register_unit(command, keys, {"user": "bench", "role": "admin"})


def build_plan(
    block: int,
    turn: int,
    cases: Sequence[StoredCase],
    raw_cases: Sequence[StoredCase],
    pool: CommandPool,
    tokens: Tokens,
    rng: random.Random,
    zipf: Zipf,
) -> Plan:
    """`cases` are the API's store's, `raw_cases` the same files in the baseline's store."""
    plan = Plan()
    today = pool.today
    for n in range(block):
        kind = KINDS[n % 3]
        if kind == "report":
            village, report = pool.report(rng)
            body = report.model_dump(mode="json")
            headers = tokens.headers(reporter_of(village), None)
            plan.requests.append(encode_request("POST", "/v1/cases", headers, body))
            plan.raw.append(("report", (village, report)))
            plan.same.append(("report", (village, report)))
            continue
        index = zipf.draw(rng)
        case, raw_case = cases[index], raw_cases[index]
        headers = tokens.headers(COORDINATOR, None)
        if kind == "assign":
            function, _ = rng.choice(list(MEMBER_UNITS.items()))
            # A unit of its own per command: an assignment is refused when the unit already
            # holds one under the same function.
            assign = cmd.AssignUnit(
                unit=f"bench-unit-{turn}-{n}",
                function=function,
                task=pool.assignment_task,
                due_on=today + timedelta(days=14),
            )
            path = f"/v1/cases/{case.id}/assignments"
            plan.requests.append(
                encode_request("POST", path, headers, assign.model_dump(mode="json"))
            )
            plan.raw.append(("assign", (raw_case, assign)))
            plan.same.append(("assign", (case, assign)))
        else:
            intervention = cmd.RecordIntervention(
                function=rng.choice(list(ProtectionFunction)),
                measure=rng.choice(MEASURES),
                notes=rng.choice(pool.intervention_notes),
                done_on=today,
            )
            path = f"/v1/cases/{case.id}/interventions"
            body = intervention.model_dump(mode="json", exclude_none=True)
            plan.requests.append(encode_request("POST", path, headers, body))
            plan.raw.append(("intervention", (raw_case, intervention)))
            plan.same.append(("intervention", (case, intervention)))
    return plan


class RawSaves:
    """The baseline: the plan's events, built before timing, stored by `Application.save`."""

    def __init__(self, app: CaseTrail) -> None:
        self.app = app
        self.seconds = 0.0
        self.saves = 0
        self.histogram = new_histogram()

    def run(self, plan: Plan) -> None:
        """Each change is built on a freshly loaded case (untimed) and saved at once (timed),
        so that a hot case's next change builds on this one, as the command's would."""
        by = COORDINATOR.as_record()
        for kind, item in plan.raw:
            if kind == "report":
                village, report = item
                by_reporter = reporter_of(village).as_record()
                self._save(Case.report(report, street=COORDINATOR.street, by=by_reporter))
                continue
            stored, command = item
            case: Case = self.app.repository.get(stored.id)
            if kind == "assign":
                # The API side assigned this unit already; the baseline's is its namesake.
                case.assign_unit(command.model_copy(update={"unit": f"{command.unit}-r"}), by=by)
            else:
                case.record_intervention(command, by=by)
            self._save(case)

    def _save(self, case: Case) -> None:
        t0 = time.perf_counter_ns()
        self.app.save(case)
        elapsed = time.perf_counter_ns() - t0
        record_ns(self.histogram, elapsed)
        self.seconds += elapsed / 1e9
        self.saves += 1


def save_requests(plan: Plan, app: CaseTrail, tokens: Tokens) -> list[bytes]:
    """The subject's events, built before timing on the API's own store, as the requests of
    the bench-only `POST /_bench/save` (bench.server): each command's event, built by the same
    aggregate method on the case as it stands now (loaded here, after the API's last block),
    sent by the same person the command was. Built just before the baseline's block, untimed:
    the server's CPU is measured only while it answers."""
    by = COORDINATOR.as_record()
    loaded: dict[Any, Case] = {}
    requests: list[bytes] = []
    for kind, item in plan.same:
        if kind == "report":
            village, report = item
            actor = reporter_of(village)
            case = Case.report(report, street=COORDINATOR.street, by=actor.as_record())
        else:
            actor = COORDINATOR
            stored, command = item
            case = loaded.get(stored.id) or app.repository.get(stored.id)
            loaded[stored.id] = case
            if kind == "assign":
                # The API assigned this unit already; the baseline's is its namesake.
                case.assign_unit(command.model_copy(update={"unit": f"{command.unit}-s"}), by=by)
            else:
                case.record_intervention(command, by=by)
        body = encode_events(app, case.collect_events())
        requests.append(encode_request("POST", SAVE_PATH, tokens.headers(actor, None), body))
    return requests


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:  # noqa: PLR0915
    home = tmp / f"{store}-home"
    keyring.init_keys(home / "keys")
    profiles: list[Path] = []
    with ExitStack() as stack:
        # The API and the baseline each have their own store, filled alike from the same seed:
        # the server follows its store (its evidence log follows every event), and must not
        # spend its time following the baseline's writes.
        pool = CommandPool(args.seed)
        counts = event_counts(args.cases, args.cases * 4, args.seed)
        filled: list[tuple[str, CaseTrail, list[StoredCase]]] = []
        for label in ("commands_api", "commands_raw"):
            url = stack.enter_context(
                fresh_store(store, label, home, args.postgres_url, prefix="bench_commands")
            )
            filled_app = CaseTrail(env=Settings.from_env(service_env(home, url)).application_env())
            stack.callback(filled_app.close)
            filled_cases = populate(filled_app, counts, args.seed, pool=pool)
            random.Random(args.seed).shuffle(filled_cases)
            filled.append((url, filled_app, filled_cases))
        (url, api_app, cases), (_, app, raw_cases) = filled
        # Only a registered unit can be assigned over the API (issue 14): register, before the
        # server starts, every unit the plans below will name.
        turns = (-1, -2, *range(args.blocks))
        register_units(
            api_app,
            [
                f"bench-unit-{turn}-{n}"
                for turn in turns
                for n in range(max(args.block, args.warmup))
                if KINDS[n % 3] == "assign"
            ],
        )
        # The server's workers mount POST /_bench/save (a setting; see bench.server).
        env = service_env(home, url, CASETRAIL_BENCH_SAVE_ENDPOINT="yes")
        durability = store_settings(app)
        # `api_app` stays open, to build the baseline's events on the server's store (reads
        # only: a SQLite writer's lock is taken per write transaction, gateway.store).
        print(
            f"\n== commands / {store}: {len(cases)} cases, {sum(counts)} events stored, "
            "one store for the API and one for the baseline =="
        )
        print("  store    " + " ".join(f"{k}={v}" for k, v in durability.items()))

        tokens = Tokens(home)
        rng = random.Random(args.seed + 3)
        zipf = Zipf(len(cases), ZIPF_S)
        server = Server(
            port=free_port(), variant="audited", env=env, log_path=tmp / f"{store}-commands.log"
        )
        stack.enter_context(server)
        client = LoadClient(server.port, args.concurrency)
        stack.callback(client.close)
        raw = RawSaves(app)
        created = frozenset({200, 201})
        client.run(
            build_plan(args.warmup, -1, cases, raw_cases, pool, tokens, rng, zipf).requests, created
        )
        RawSaves(app).run(build_plan(args.warmup, -2, cases, raw_cases, pool, tokens, rng, zipf))
        if args.profile:
            out = RESULTS_DIR / f"profile-commands-{store}.txt"
            stack.enter_context(Profiler(server.pid, out))
            profiles.append(out)
        client.run(
            save_requests(
                build_plan(args.warmup, -1, cases, raw_cases, pool, tokens, rng, zipf),
                api_app,
                tokens,
            ),
            created,
        )
        api, same = LoadResult(), LoadResult()
        per_block: list[tuple[float, float]] = []
        # Per block, the server's CPU per request (ms) and throughput, API and raw-save endpoint.
        blocks: dict[str, list[float]] = {
            "api_cpu": [],
            "save_cpu": [],
            "api_rate": [],
            "save_rate": [],
        }
        cpu = {"api": 0.0, "save": 0.0}
        for turn in range(args.blocks):
            plan = build_plan(args.block, turn, cases, raw_cases, pool, tokens, rng, zipf)
            saves_before, seconds_before = raw.saves, raw.seconds
            api_rate = 0.0
            order = ("api", "save", "raw") if turn % 2 == 0 else ("raw", "save", "api")
            for who in order:
                if who == "raw":
                    raw.run(plan)
                    continue
                requests = plan.requests if who == "api" else save_requests(plan, api_app, tokens)
                cpu_before = server.cpu_seconds()
                result = client.run(requests, created)
                used = server.settled_cpu_seconds() - cpu_before
                cpu[who] += used
                (api if who == "api" else same).add(result)
                blocks[f"{who}_cpu"].append(1000 * used / max(result.requests, 1))
                blocks[f"{who}_rate"].append(result.per_second)
                if who == "api":
                    api_rate = result.per_second
            raw_rate = (raw.saves - saves_before) / (raw.seconds - seconds_before)
            per_block.append((api_rate, raw_rate))
            print(
                f"  block {turn + 1:>2}/{args.blocks}: api {api_rate:7,.0f} commands/s "
                f"{blocks['api_cpu'][-1]:5.2f} ms CPU  "
                f"/_bench/save {blocks['save_rate'][-1]:7,.0f}/s "
                f"{blocks['save_cpu'][-1]:5.2f} ms CPU  bare save {raw_rate:7,.0f} saves/s"
            )
        errors_logged = server.logged_errors()
    for out in profiles:
        print(summary(out, top=30))
    p_api, p_raw = Percentiles.of(api.histogram), Percentiles.of(raw.histogram)
    raw_rate = raw.saves / raw.seconds
    statuses: Counter[int] = api.statuses
    found: dict[str, Any] = {
        "store": store,
        "settings": durability,
        "api": {
            "commands": api.requests,
            "seconds": round(api.seconds, 3),
            "commands_per_second": round(api.per_second, 1),
            "latency_ms": p_api.as_dict(),
            "statuses": dict(statuses),
            "unexpected": api.unexpected,
            "server_cpu_ms_per_command": round(1000 * cpu["api"] / api.requests, 3),
            "errors_logged": errors_logged,
        },
        "raw_save": {
            "saves": raw.saves,
            "seconds": round(raw.seconds, 3),
            "saves_per_second": round(raw_rate, 1),
            "latency_ms": p_raw.as_dict(),
        },
        "ratio": ratio_of(api.per_second, raw_rate),
        "ratio_per_block": [ratio_of(a, r) for a, r in per_block],
        "raw_save_endpoint": {
            "requests": same.requests,
            "per_second": round(same.per_second, 1),
            "latency_ms": Percentiles.of(same.histogram).as_dict(),
            "statuses": dict(same.statuses),
            "unexpected": same.unexpected,
            "server_cpu_ms_per_request": round(1000 * cpu["save"] / max(same.requests, 1), 3),
        },
        "per_block": {k: [round(x, 3) for x in v] for k, v in blocks.items()},
        # The targets: save endpoint / API, CPU per request and throughput, block by block.
        "intervals": {
            "cpu": asdict(Interval.of(paired_ratios(blocks["save_cpu"], blocks["api_cpu"]))),
            "throughput": asdict(
                Interval.of(paired_ratios(blocks["api_rate"], blocks["save_rate"]))
            ),
        },
    }
    print(
        f"  api       {api.per_second:7,.0f} commands/s  {p_api.line()}, server CPU "
        f"{found['api']['server_cpu_ms_per_command']:.2f} ms/command, statuses {dict(statuses)}"
    )
    print(f"  raw save  {raw_rate:7,.0f} saves/s     {p_raw.line()}")
    saved = found["raw_save_endpoint"]
    print(
        f"  /_bench/save {saved['per_second']:7,.0f} requests/s, server CPU "
        f"{saved['server_cpu_ms_per_request']:.2f} ms/request, statuses {saved['statuses']}"
    )
    print(
        f"  api/bare save (informative): x{found['ratio']:.3f} "
        f"(per block {found['ratio_per_block']})"
    )
    for name, interval in found["intervals"].items():
        print(f"  {name:<10} api vs /_bench/save, per block: {Interval(**interval).text()}")
    if same.unexpected:
        print(f"    unexpected answers of /_bench/save: {[u[:120] for u in same.unexpected]}")
    if api.unexpected:
        print(f"    unexpected answers: {[u[:80] for u in api.unexpected]}")
        print(f"    errors the server logged: {errors_logged}")
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.commands", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", type=int)
    parser.add_argument("--blocks", type=int)
    parser.add_argument("--block", type=int, help="commands per block and side")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy the server")
    args = parser.parse_args(argv)
    args.cases = args.cases or (200 if args.quick else 3000)
    # Quick: 6 short blocks, the fewest whose interval covers the median at 95% or more.
    # 24 blocks: on PostgreSQL a quarter of the blocks' CPU ratios fall below 0.7 (the API's
    # CPU per command is bimodal, 2.7 or 3.6 ms), and with 12 the interval's lower end is the
    # 3rd of 12, which they reach (bench/README.md, "sixteenth round"); 24 take 2 minutes more.
    args.blocks = args.blocks or (6 if args.quick else 24)
    args.block = args.block or (60 if args.quick else 400)
    args.warmup = args.warmup or (60 if args.quick else 300)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"commands benchmark: report / assign / intervention over HTTP at {args.concurrency} "
        f"concurrent clients vs raw Application.save, {args.blocks} blocks of {args.block}"
    )
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(
        args.postgres_url, sqlite=not args.no_sqlite, postgres=not args.no_postgres
    )
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-commands-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            intervals = {k: Interval(**v) for k, v in found["intervals"].items()}
            cpu_note = (
                f"server CPU {found['api']['server_cpu_ms_per_command']:.2f} vs "
                f"{found['raw_save_endpoint']['server_cpu_ms_per_request']:.2f} ms/request"
            )
            targets += [
                Target.of_interval(
                    "commands",
                    store,
                    "api/raw-save endpoint, server CPU per request",
                    intervals["cpu"],
                    TARGET,
                    "min",
                    note=f"/_bench/save / api; {cpu_note}",
                ),
                Target.of_interval(
                    "commands",
                    store,
                    "api/raw-save endpoint throughput",
                    intervals["throughput"],
                    TARGET,
                    "min",
                    note=f"informative: api/bare library save x{found['ratio']:.3f}",
                ),
            ]
    print_targets(targets)
    path = write_results(
        "commands",
        {
            "benchmark": "commands",
            "unit": "commands (one event each) per second",
            "machine": info,
            "workload": {
                "cases": args.cases,
                "concurrency": args.concurrency,
                "blocks": args.blocks,
                "commands_per_block": args.block,
                "mix": "report, assign unit, record intervention (1/3 each)",
                "zipf_s": ZIPF_S,
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
