"""The benchmark suite: every scenario in one run, each against its target.

    .venv/bin/python -m bench.suite            # the full suite (make bench), over an hour
    .venv/bin/python -m bench.suite --quick    # a short run of each (make bench-quick)
    .venv/bin/python -m bench.suite --only reads,replay

Each scenario is a module `bench/<name>.py` listed in `SCENARIOS`, run as its own process
(`python -m bench.<name> [--quick]`), so that one scenario's threads, servers and memory never
weigh on the next. A listed module that is not there (yet) is skipped with a note. A scenario
writes its figures to `bench/results/<name>-<UTC time>.json`; the targets it measured against
are in that file's "targets" list (see `bench.harness.Target`), and the suite prints them all at
the end, marking each `ok` or `MISS`, and writes `bench/results/suite-<UTC time>.json`.

The suite reports; it does not judge the build: it exits 0 whatever the figures, and also when
a scenario fails (marked FAILED with its exit status).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.harness import (
    MISS,
    OK,
    RESULTS_DIR,
    UNDECIDED,
    describe,
    load_average,
    machine,
    target_text,
    write_results,
)

BENCH_DIR: Final = Path(__file__).resolve().parent

# (module, what it measures). Modules of other issues join the suite by being listed here.
SCENARIOS: Final = (
    ("append", "events appended per second through the domain, plaintext vs encrypted"),
    ("reads", "audited GET /v1/cases/{id} over HTTP at 32 clients vs the access write off"),
    ("commands", "commands through the HTTP API vs raw Application.save"),
    ("encryption", "encrypted vs plaintext: save and replay"),
    ("datakeys", "a data key per case file vs one service key: reads and replays (issue 19)"),
    ("replay", "loading a case file of 10,000 events vs raw decrypt-and-decode"),
    ("scale", "case reads, ledger pages, lookups, worklists, access logs: 10k to 1M events"),
    ("ledger_count", "a ledger page's kept total from 1k to 100k files vs COUNT(*) (issue 23)"),
    ("scaling", "audited reads with 1, 2, 4 API processes on PostgreSQL; where the CPU goes"),
    ("rebuild", "rebuilding the read models (issue 5)"),
    ("merkle", "the Merkle log (issue 6)"),
    ("relay", "relaying events over NATS (issue 4)"),
    ("notice_latency", "a notice end to end against raw JetStream publish-to-fetch (issue 20)"),
    ("report", "the investigation report of a case of 10,000 events vs raw decode (issue 13)"),
    ("compliance", "the compliance rules over 1M access events vs a raw scan (issue 15)"),
    ("access_log", "one case's access log from 10k to 1M access events, flat (issue 15)"),
    ("web", "server time of a case page vs the JSON read of the same case (issue 18)"),
    ("cli_start", "casetrail --help, token issue, verify-bundle, proof check vs python -c pass"),
)


def run_scenario(name: str, quick: bool) -> dict[str, Any]:
    """Run one scenario module as a process; its exit status, time and result files."""
    root = BENCH_DIR.parent
    command = [sys.executable, "-m", f"bench.{name}"] + (["--quick"] if quick else [])
    print(f"\n{'=' * 100}\n== {name}: {' '.join(command[1:])}\n{'=' * 100}", flush=True)
    started_wall = time.time()
    t0 = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 (this interpreter, a module of ours)
        command,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    seconds = time.perf_counter() - t0
    files = sorted(
        p
        for p in RESULTS_DIR.glob(f"{name}-*.json")
        if p.stat().st_mtime >= started_wall - 1 and not p.name.startswith("suite-")
    )
    targets: list[dict[str, Any]] = []
    for path in files:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        targets += document.get("targets", []) if isinstance(document, dict) else []
    return {
        "scenario": name,
        "exit_status": completed.returncode,
        "seconds": round(seconds, 1),
        "result_files": [str(p.relative_to(root)) for p in files],
        "targets": targets,
    }


def target_line(target: dict[str, Any]) -> str:
    return target_text(target)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="each scenario's quick mode")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--skip", help="comma-separated scenario names")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    skip = set(args.skip.split(",")) if args.skip else set()
    info = machine()
    mode = "quick" if args.quick else "full"
    print(f"casetrail benchmark suite ({mode}); machine: {describe(info)}")
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    for name, what in SCENARIOS:
        if (only is not None and name not in only) or name in skip:
            continue
        if not (BENCH_DIR / f"{name}.py").exists():
            note = f"SKIPPED {name} ({what}): bench/{name}.py is not there yet"
            print(note)
            notes.append(note)
            continue
        runs.append(run_scenario(name, args.quick))
    total = time.perf_counter() - t0

    print(
        f"\n{'=' * 100}\n== summary ({mode}, {total:.0f} s): every target, ok, MISS or undecided\n"
    )
    print(f"  machine: {describe(info)}; load average at the end {load_average()}")
    verdicts: dict[str, int] = {OK: 0, MISS: 0, UNDECIDED: 0}
    for run in runs:
        status = "" if run["exit_status"] == 0 else f"  FAILED (exit {run['exit_status']})"
        print(f"\n  {run['scenario']} ({run['seconds']:.0f} s){status}")
        if not run["targets"]:
            print("    (no targets declared: figures in its output above)")
        for target in run["targets"]:
            verdict = target.get("verdict") or (OK if target.get("met") else MISS)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            print("    " + target_line(target))
    for note in notes:
        print(f"\n  {note}")
    counted = sum(len(r["targets"]) for r in runs)
    print(
        f"\n  {counted} targets: {verdicts[OK]} ok, {verdicts[MISS]} MISS, "
        f"{verdicts[UNDECIDED]} undecided (the interval straddles the target: more blocks)"
    )
    path = write_results(
        "suite",
        {
            "benchmark": "suite",
            "mode": mode,
            "machine": info,
            "seconds": round(total, 1),
            "scenarios": runs,
            "skipped": notes,
            "load_average_at_end": load_average(),
        },
    )
    print(f"\nsuite results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
