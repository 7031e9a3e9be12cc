"""compliance: the compliance rules over 1M access events, against a raw scan of the same events.

Subject: the evaluator's view rebuilt from position 0 (`ComplianceEvaluator.follower.rebuild()`,
what `casetrail compliance rerun` does): select the events the rules read, decrypt and decode
them, fold each into the rules' state (`domain.compliance.rules.RuleEngine`), and write the
state's changed keys and the findings completed, with the view's position, batch by batch.
Baseline: the same notifications selected and decrypted and decoded, nothing else
(`[mapper.to_domain_event(n) for n in notifications(topics=RULE_TOPICS)]`): the least any
evaluation could cost. Target (issue 15): the subject's rate at least 0.5 of the raw scan's.
Informational: the rules alone on the decoded events (no I/O), and the findings raised.

The workload: encrypted access events of 2,000 staff over 20,000 files, two weeks of
timestamps, mixed as the service stores them: reads (84 %), refused reads (10 %), refused
commands (2 %), break-glass reads (1 %, half of them reviewed), export disclosures with
identity fields (3 %). The variants take turns, round by round; figures are medians.

    .venv/bin/python -m bench.compliance              # 1,000,000 events, 3 rounds
    .venv/bin/python -m bench.compliance --quick      # 100,000 events, 2 rounds
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

from eventsourcing.domain import DomainEvent

from bench.harness import Target, describe, machine, print_targets, write_results
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, selected_stores, store_settings
from domain.access import (
    Actor,
    Channel,
    Client,
    Decision,
    access_event,
    command_refused,
    review_event,
)
from domain.application import CaseTrail
from domain.compliance.config import RulesConfig
from domain.compliance.rules import RULE_TOPICS, RuleEngine
from domain.taxonomy import Purpose, Role
from gateway.compliance.evaluator import ComplianceEvaluator
from gateway.store.eventstore import new_key_text, store_environment

TARGET: Final = 0.5
START: Final = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
CLIENT: Final = Client(address="10.1.2.3", user_agent="bench/1")


def workload(events: int, seed: int) -> list[DomainEvent]:
    rng = random.Random(seed)
    users = [
        Actor(
            f"user-{i}",
            Role.UNIT_MEMBER if i % 4 else Role.COORDINATOR,
            f"unit-{i % 50}",
            "street-1",
        )
        for i in range(2000)
    ]
    cases = [uuid4() for _ in range(20_000)]
    step = timedelta(days=14) / events
    found: list[DomainEvent] = []
    pending_glass: list[UUID] = []
    for i in range(events):
        at = START + step * i
        actor = users[int(rng.paretovariate(1.2)) % len(users)]
        case_id = cases[int(rng.paretovariate(1.1)) % len(cases)]
        roll = rng.random()
        event: DomainEvent
        if roll < 0.84:
            event = access_event(
                Decision(True, "unit_member_assigned", frozenset({"id", "status", "risk"})),
                case_id=case_id, actor=actor, purpose=Purpose.INTERVENTION, request_id=f"r{i}",
                case_version=3, channel=Channel.API, client=CLIENT,
            )  # fmt: skip
        elif roll < 0.94:
            event = access_event(
                Decision(False, "out_of_scope"), case_id=case_id, actor=actor,
                purpose=Purpose.INTERVENTION, request_id=f"r{i}", case_version=None,
                channel=Channel.API, client=CLIENT,
            )  # fmt: skip
        elif roll < 0.96:
            event = command_refused(
                case_id=case_id, actor=actor, command="close", rule="not_permitted",
                request_id=f"r{i}", channel=Channel.API, client=CLIENT,
            )  # fmt: skip
        elif roll < 0.97:
            event = access_event(
                Decision(True, "break_glass", frozenset({"id", "minor.name"}), True),
                case_id=case_id, actor=actor, purpose=Purpose.EMERGENCY, request_id=f"r{i}",
                case_version=3, channel=Channel.API, client=CLIENT,
                break_glass_reason="孩子失联,需要紧急联系监护人。",
            )  # fmt: skip
            pending_glass.append(event.originator_id)
        else:
            event = access_event(
                Decision(True, "ledger_street", frozenset({"id", "minor.name", "minor.id_number"})),
                case_id=case_id, actor=actor, purpose=Purpose.FOLLOW_UP,
                request_id=f"export-{i // 200}", case_version=3, channel=Channel.EXPORT,
                client=CLIENT,
            )  # fmt: skip
        object.__setattr__(event, "timestamp", at)
        found.append(event)
        if pending_glass and rng.random() < 0.005:
            review = review_event(pending_glass.pop(0), "justified", "属实。", users[0])
            object.__setattr__(review, "timestamp", at)
            found.append(review)
    return found


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with fresh_store(store, "compliance", tmp, args.postgres_url, prefix="bench_rules") as url:
        app = CaseTrail(env=store_environment(url, [new_key_text()]))
        try:
            t0 = time.perf_counter()
            events = workload(args.events, args.seed)
            for start in range(0, len(events), 5000):
                app.store_events(events[start : start + 5000])
            print(f"  stored {len(events):,} events in {time.perf_counter() - t0:.0f} s")
            settings = store_settings(app)
            evaluator = ComplianceEvaluator(app, RulesConfig(), batch_size=args.batch)
            decoded: list[Any] = []

            def raw() -> int:
                decoded.clear()
                decoded.extend(
                    app.mapper.to_domain_event(n) for n in app.notifications(topics=RULE_TOPICS)
                )
                return len(decoded)

            def subject() -> int:
                evaluator.view.engine, evaluator.view.engine_at = None, None
                return evaluator.follower.rebuild()

            def rules_only() -> int:
                engine = RuleEngine(RulesConfig())
                raised = 0
                for position, event in enumerate(decoded, 1):
                    raised += len(engine.feed(position, event))
                return raised

            runs: dict[str, Callable[[], int]] = {"raw decrypt+decode": raw, "evaluator": subject}
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            for round_no in range(args.rounds):
                order = list(runs) if round_no % 2 == 0 else list(runs)[::-1]
                for name in order:
                    t0 = time.perf_counter()
                    runs[name]()
                    seconds[name].append(time.perf_counter() - t0)
            raw()
            t0 = time.perf_counter()
            raised = rules_only()
            alone = time.perf_counter() - t0
            with evaluator.follower.recorder.reading() as db:
                produced = len(evaluator.view.produced(db))
        finally:
            app.close()
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    count = len(events)
    rates = {name: count / m for name, m in medians.items()}
    ratio = round(rates["evaluator"] / rates["raw decrypt+decode"], 3)
    for name, median in medians.items():
        print(f"  {name:<20} {median:8.2f} s  ({rates[name]:9,.0f} events/s)")
    print(
        f"  rules alone          {alone:8.2f} s  ({count / alone:9,.0f} events/s), {raised} raised"
    )
    print(f"  evaluator / raw rate: {ratio}; findings produced: {produced}")
    return {
        "store": store,
        "settings": settings,
        "events": count,
        "seconds_median": {k: round(v, 3) for k, v in medians.items()},
        "seconds_per_round": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        "events_per_second": {k: round(v) for k, v in rates.items()},
        "rules_alone_events_per_second": round(count / alone),
        "findings_produced": produced,
        "ratio": ratio,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compliance", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--batch", type=int, default=2000, help="the evaluator's batch size")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.events = args.events or (100_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (2 if args.quick else 3)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"compliance benchmark: {args.events:,} access events, {args.rounds} rounds")
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-compliance-") as tmp:
        for store in stores:
            print(f"\n== compliance / {store} ==")
            found = run_store(store, args, Path(tmp))
            results.append(found)
            metric = f"rules rate/raw scan rate, {args.events:,} events"
            targets.append(Target("compliance", store, metric, found["ratio"], TARGET, "min"))
    print_targets(targets)
    path = write_results(
        "compliance",
        {
            "benchmark": "compliance",
            "unit": "access events per second",
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
