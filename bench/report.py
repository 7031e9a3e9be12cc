"""report: the investigation report of one case of 10,000 events, against decrypting and
decoding the same events (issue 13's benchmark, its report half).

Subject: what `GET /v1/investigations/{id}/report?format=html` computes after its access record:
the report document (`gateway.reports.document.build_document`: the case's stored stream read
once for the integrity statement, every event's inclusion proof checked against the signed
checkpoint, then issue 13's analyses: the history gathered, decrypted and replayed, its access
records from the access-log read model (issue 15, caught up before the rounds as the service's
follower keeps it), the timeline, knowledge matrix and deadline checks), rendered to HTML with
its SVG chart and signed (`gateway.reports.render.produce`); both with Python's cyclic garbage
collector paused, as the route has them (`gateway.reports.collector`; the baseline runs with
it on). The PDF adds Chromium's printing, a
constant of the page's size, not of the events: measured apart, once. Baseline: the same events
selected and turned into domain events by hand, nothing analysed. Target (issue 13): the subject
at most 1.5x the baseline.

The case (encrypted, the service's configuration) holds half changes, built through the
aggregate's methods (`bench/workload.py`), and half access events naming it (case reads,
ledger rows, lookups, break-glass reads and refusals). Variants take turns (ABBA) round by
round; each figure is the median of the rounds.

    .venv/bin/python -m bench.report            # 10,000 events, 5 rounds
    .venv/bin/python -m bench.report --quick    # 1,000 events, 3 rounds
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
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.harness import Target, describe, machine, print_targets, ratio_of, write_results
from bench.investigation import case_accesses
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, selected_stores, store_settings
from bench.workload import DEFAULT_SEED, CommandPool, new_case
from domain.application import CaseTrail
from domain.investigations import Investigation
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.reports.document import build_document
from gateway.reports.render import produce
from gateway.store import guard as store_guard
from gateway.store.eventstore import new_key_text, store_environment
from projections.compliance.access_log import CaseLog
from projections.investigation.history import ALL_TOPICS
from projections.readmodels import ReadModelConfig, ReadModels

TARGET: Final = 1.5
_BATCH: Final = 500
_BY: Final = {"user": "bench-inv", "role": "investigator", "unit": "county-inspection"}


def _investigation(case_id: UUID) -> Investigation:
    investigation = Investigation.open(
        kind="suicide",
        incident_on=date.today() - timedelta(days=3),
        id_number="110101201001010015",
        name="测试",
        case_ids=[case_id],
        by=_BY,
    )
    investigation.assign_investigators(["bench-inv"], reason="bench", by=_BY)
    return investigation


def variants(
    app: CaseTrail, evidence: Evidence, investigation: Investigation, key: Ed25519PrivateKey
) -> dict[str, Callable[[], int]]:
    def subject() -> int:
        document = build_document(app, evidence, investigation, generated_by=_BY)
        assert document["integrity"]["status"] == "intact", document["integrity"]
        return len(produce(document, "html", key, chromium="chromium"))

    def raw() -> int:
        return len([app.mapper.to_domain_event(n) for n in app.notifications(topics=ALL_TOPICS)])

    return {"report (html)": subject, "raw decrypt+decode": raw}


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with fresh_store(store, "report", tmp, args.postgres_url, prefix="bench_report") as url:
        app = CaseTrail(
            env={**store_environment(url, [new_key_text()]), "IS_SNAPSHOTTING_ENABLED": "n"}
        )
        # The evidence tables and the append-only triggers, as the service creates them.
        store_guard.install(app.recorder)
        key = Ed25519PrivateKey.generate()
        evidence = Evidence(app, key, EvidenceSettings())
        # The access-log read model, as the service keeps it (issue 15): `gather` takes the
        # case's access records from it instead of decrypting the store's access events.
        readmodel_env = store_environment(
            f"sqlite:///{tmp / 'report-readmodels.sqlite'}" if store == "sqlite" else url, None
        )
        readmodels = ReadModels(app, ReadModelConfig(env=readmodel_env, index_key=os.urandom(32)))
        try:
            rng = random.Random(args.seed)
            pool = CommandPool(args.seed, reports=20, notes=300)
            changes = args.events // 2
            case, _ = new_case(pool, rng, changes - 1)
            app.save(case)
            reads = case_accesses(case.id, args.events - changes, rng, case.version)
            for start in range(0, len(reads), _BATCH):
                app.store_events(reads[start : start + _BATCH])
            investigation = _investigation(case.id)
            app.save(investigation)
            evidence.checkpoint_now()  # the Merkle log over every event, signed
            # Followed before the figures, as the service's follower does as events arrive.
            readmodels.follower("accesses").catch_up()
            app.use_access_records(CaseLog(app, app.name, readmodels.accesses))
            settings = store_settings(app)
            print(
                f"\n== report / {store}: one case of {args.events} events "
                f"({changes} changes, {len(reads)} accesses) =="
            )
            print("  store    " + " ".join(f"{k}={v}" for k, v in settings.items()))
            runs = variants(app, evidence, investigation, key)
            for run in runs.values():  # warm-up: page cache, connections
                run()
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            # The process's CPU time too: on a shared machine it moves less with the others.
            cpu: dict[str, list[float]] = {name: [] for name in runs}
            for round_no in range(args.rounds):
                names = list(runs)
                for name in names if round_no % 2 == 0 else names[::-1]:
                    c0, t0 = time.process_time(), time.perf_counter()
                    runs[name]()
                    seconds[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
            pdf_seconds = None
            if args.pdf:
                document = build_document(app, evidence, investigation, generated_by=_BY)
                t0 = time.perf_counter()
                size = len(produce(document, "pdf", key, chromium="chromium"))
                pdf_seconds = time.perf_counter() - t0
                print(f"  pdf: printed in {pdf_seconds:.1f} s ({size:,} bytes)")
        finally:
            readmodels.close()
            evidence.close()
            app.close()
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    cpu_medians = {name: statistics.median(s) for name, s in cpu.items()}
    base = medians["raw decrypt+decode"]
    cpu_base = cpu_medians["raw decrypt+decode"]
    for name, median in medians.items():
        print(
            f"  {name:<22} {1000 * median:8.1f} ms  ({args.events / median:9,.0f} events/s)  "
            f"x{median / base:.3f} of raw; CPU {1000 * cpu_medians[name]:.0f} ms, "
            f"x{cpu_medians[name] / cpu_base:.3f}"
        )
    return {
        "store": store,
        "settings": settings,
        "events": args.events,
        "seconds_median": {k: round(v, 4) for k, v in medians.items()},
        "seconds_per_round": {k: [round(x, 4) for x in v] for k, v in seconds.items()},
        "cpu_seconds_median": {k: round(v, 4) for k, v in cpu_medians.items()},
        "cpu_ratio": ratio_of(cpu_medians["report (html)"], cpu_base),
        "pdf_seconds": round(pdf_seconds, 2) if pdf_seconds is not None else None,
        "ratio": ratio_of(medians["report (html)"], base),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--pdf", action="store_true", help="also time printing the PDF once")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.events = args.events or (1000 if args.quick else 10_000)
    args.rounds = args.rounds or (3 if args.quick else 5)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"report benchmark: one encrypted case of {args.events} events, {args.rounds} rounds")
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-report-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            metric = f"report html/raw decode, {args.events} ev"
            targets.append(Target("report", store, metric, found["ratio"], TARGET, "max"))
    print_targets(targets)
    path = write_results(
        "report",
        {
            "benchmark": "report",
            "unit": "seconds to build, render and sign one case's report",
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
