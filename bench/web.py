"""web: the server time of a case page against the JSON read of the same case, in the same run
(issue 18's benchmark).

Subject: `GET /cases/{id}?purpose=intervention`, the case page (`gateway/web/routes/cases.py`:
the page's audited reader, `page_reader`, records the read with channel `web`, then the
template renders the fields the reader returned). Baseline: `GET /v1/cases/{id}` with
`X-Purpose-Of-Use: intervention`, the API's read of the same case by the same person (the same
`AuditedReader`, the same access record, answered as JSON). Target (issue 18): the page at most
1.5x the JSON read, per request, median of the rounds.

Both are asked in-process (Starlette's TestClient over the real app, its lifespan and service
started as `casetrail serve` does) by one coordinator signed in through the sign-in page's form
(the same session cookie for both, so that authentication costs the same). "Server time" is
measured inside the ASGI app, from the request's arrival to the last byte of the answer handed
back (`ServerTime`), so the test client's own work is not counted; the process's CPU time per
request is reported too (on a shared machine it moves less with the other work). The store
holds the demo's street (`gateway.cli.demo.fill_demo`: cases at every stage, the service's
encryption). Variants take turns (ABBA) case by case; each figure is the median of the rounds'
medians.

A case page that is not there (a branch without it: 404) is reported as such, with no target:
the figure is measured after the page is merged.

    .venv/bin/python -m bench.web            # 60 cases, 7 rounds, SQLite and PostgreSQL
    .venv/bin/python -m bench.web --quick    # 12 cases, 3 rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient
from httpx import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.harness import Target, describe, machine, print_targets, ratio_of, write_results
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, selected_stores
from domain.case import Case
from domain.taxonomy import Role
from gateway import bootstrap, keyring
from gateway.cli.demo import demo_passwords, fill_demo
from gateway.cli.main import DEFAULT_STREET
from gateway.http.app import create_app
from gateway.settings import Settings

TARGET: Final = 1.5
PURPOSE: Final = "intervention"
PAGE: Final = "case page"
JSON: Final = "JSON read"


class ServerTime:
    """An ASGI wrapper timing each HTTP request inside the server: from its arrival to the
    answer's last body message (`last` seconds, of the latest request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - started
            await send(message)

        await self.app(scope, receive, timed)


def _case_ids(settings: Settings) -> list[str]:
    application = bootstrap.open_application(settings)
    try:
        reported = (get_topic(Case.ClueReported),)  # type: ignore[attr-defined]
        return [str(n.originator_id) for n in application.notifications(topics=reported)]
    finally:
        application.close()


def _fill(settings: Settings, cases: int, seed: int) -> tuple[str, str]:
    """The demo's street in the store; the coordinator's user id and a new password."""
    application = bootstrap.open_application(settings)
    try:
        summary = fill_demo(application, cases=cases, seed=seed, street=DEFAULT_STREET)
        (coordinator,) = [p for p in summary.people if p.role == Role.COORDINATOR]
        password = demo_passwords(application, [coordinator])[coordinator.user]
    finally:
        application.close()
    return coordinator.user, password


def run_store(store: Store, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with fresh_store(store, "web", tmp, args.postgres_url, prefix="bench_web") as url:
        home = tmp / f"home-{store}"
        keyring.init_keys(home / "keys")
        settings = Settings.from_env({"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": url})
        user, password = _fill(settings, args.cases, args.seed)
        case_ids = _case_ids(settings)
        timer = ServerTime(create_app(settings))
        with TestClient(timer, raise_server_exceptions=False) as client:
            signed_in = client.post(
                "/signin", data={"user_id": user, "password": password}, follow_redirects=False
            )
            if signed_in.status_code != 303:
                raise SystemExit(f"the coordinator could not sign in: {signed_in.status_code}")

            def json_read(case: str) -> Response:
                answer: Response = client.get(
                    f"/v1/cases/{case}", headers={"X-Purpose-Of-Use": PURPOSE}
                )
                return answer

            def page_read(case: str) -> Response:
                answer: Response = client.get(f"/cases/{case}", params={"purpose": PURPOSE})
                return answer

            requests: dict[str, Callable[[str], Response]] = {JSON: json_read, PAGE: page_read}
            # Warm-up (and the check that both answer): each case once, both ways.
            statuses: dict[str, set[int]] = {name: set() for name in requests}
            for case in case_ids:
                for name, ask in requests.items():
                    statuses[name].add(ask(case).status_code)
            print(f"\n== web / {store}: {len(case_ids)} cases, {args.rounds} rounds ==")
            print("  answers: " + ", ".join(f"{n} {sorted(s)}" for n, s in statuses.items()))
            if statuses[JSON] != {200}:
                raise SystemExit(f"the JSON read did not answer 200: {statuses[JSON]}")
            page_there = statuses[PAGE] == {200}
            if not page_there:
                print(
                    f"  the case page answers {sorted(statuses[PAGE])}: not there on this "
                    "branch; its time below is that answer's, no target (measured after merge)"
                )
            seconds: dict[str, list[float]] = {name: [] for name in requests}
            cpu: dict[str, list[float]] = {name: [] for name in requests}
            for round_no in range(args.rounds):
                per_request: dict[str, list[float]] = {name: [] for name in requests}
                per_cpu: dict[str, list[float]] = {name: [] for name in requests}
                for turn, case in enumerate(case_ids):
                    names = list(requests)
                    for name in names if (turn + round_no) % 2 == 0 else names[::-1]:
                        c0 = time.process_time()
                        requests[name](case)
                        per_cpu[name].append(time.process_time() - c0)
                        per_request[name].append(timer.last)
                for name in requests:
                    seconds[name].append(statistics.median(per_request[name]))
                    cpu[name].append(statistics.median(per_cpu[name]))
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    cpu_medians = {name: statistics.median(s) for name, s in cpu.items()}
    for name, median in medians.items():
        print(
            f"  {name:<10} server {1000 * median:7.2f} ms/request  "
            f"x{median / medians[JSON]:.3f} of JSON; CPU {1000 * cpu_medians[name]:.2f} ms, "
            f"x{cpu_medians[name] / cpu_medians[JSON]:.3f}"
        )
    return {
        "store": store,
        "cases": len(case_ids),
        "page_there": page_there,
        "page_statuses": sorted(statuses[PAGE]),
        "seconds_median": {k: round(v, 6) for k, v in medians.items()},
        "seconds_per_round": {k: [round(x, 6) for x in v] for k, v in seconds.items()},
        "cpu_seconds_median": {k: round(v, 6) for k, v in cpu_medians.items()},
        "ratio": ratio_of(medians[PAGE], medians[JSON]),
        "cpu_ratio": ratio_of(cpu_medians[PAGE], cpu_medians[JSON]),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.cases = args.cases or (12 if args.quick else 60)
    args.rounds = args.rounds or (3 if args.quick else 7)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"web benchmark: case page vs JSON read, {args.cases} cases, {args.rounds} rounds")
    print(f"machine: {describe(info)}")
    stores, skipped = selected_stores(args.postgres_url, sqlite=True, postgres=not args.no_postgres)
    results = []
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-web-") as tmp:
        for store in stores:
            found = run_store(store, args, Path(tmp))
            results.append(found)
            if found["page_there"]:
                metric = "case page/JSON read, server time"
                targets.append(Target("web", store, metric, found["ratio"], TARGET, "max"))
            else:
                skipped[f"target-{store}"] = "the case page is not there yet (measured after merge)"
    print_targets(targets)
    path = write_results(
        "web",
        {
            "benchmark": "web",
            "unit": "server seconds per request (median of the rounds' medians)",
            "machine": info,
            "workload": {
                "cases": args.cases,
                "rounds": args.rounds,
                "seed": args.seed,
                "purpose": PURPOSE,
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
