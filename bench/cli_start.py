"""cli_start: how long the command line takes to start and answer (issue 23).

Four commands, each run to completion as a user runs it (the `casetrail` script beside this
interpreter, a fresh process each time):

- `casetrail --help`, and `casetrail token issue --help` (the command's start without its work);
- `casetrail token issue` for a registered user of a real SQLite store (it opens the store to
  check that the user is admitted, then signs: the domain, the settings and the store's code);
- `casetrail verify-bundle` of the spec's positive bundle (docs/specs/vectors/bundle.json) with
  its public key;
- `casetrail proof check` of an inclusion proof made from that store, with the service's key;

against `python -c pass` (the interpreter's own start) in the same run: rounds in which every
command runs once, in a rotating order, so that all share the machine's moods. For each, the
median and minimum wall time and the median CPU time (user + system, from the OS) of the
process. Target (issue 23): each starts in under 0.5 s. It is judged on the process's CPU time,
the median: on this shared two-core machine (load average 10 and more while several sessions
work) the wall time is several times the CPU time for every process, `python -c pass` included,
and moves with the others' work; on an idle machine a start like these is CPU-bound, wall time
about CPU time. The wall times are printed beside it.

    .venv/bin/python -m bench.cli_start            # 25 rounds: about a minute here
    .venv/bin/python -m bench.cli_start --quick    # 5 rounds
    .venv/bin/python -m bench.cli_start --tree DIR # the CLI of another checkout (e.g. before)

`--tree DIR` puts DIR first on PYTHONPATH for the measured commands, so that the same run
measures an older checkout's command line (the store is still made with this one's). The
measured processes use cached bytecode, as an installed command does (PYTHONPYCACHEPREFIX, a
folder of the run's own), whatever PYTHONDONTWRITEBYTECODE says.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from faker import Faker

from bench.harness import Target, describe, load_average, machine, print_targets, write_results

ROOT: Final = Path(__file__).resolve().parents[1]
CASETRAIL: Final = str(Path(sys.executable).with_name("casetrail"))
VECTORS: Final = ROOT / "docs/specs/vectors/bundle.json"
TARGET_SECONDS: Final = 0.5
FULL_ROUNDS: Final = 25
QUICK_ROUNDS: Final = 5
USER: Final = "bench-coordinator"
UNIT: Final = "office"
STREET: Final = "chengguan-street"


@dataclass
class Runs:
    """One command's runs: wall and CPU seconds of each."""

    name: str
    argv: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "command": self.name,
            "runs": len(self.wall),
            "wall_median_s": round(statistics.median(self.wall), 4),
            "wall_min_s": round(min(self.wall), 4),
            "wall_max_s": round(max(self.wall), 4),
            "cpu_median_s": round(statistics.median(self.cpu), 4),
        }


def _environment(home: Path, tree: Path | None) -> dict[str, str]:
    environ = {**os.environ, "CASETRAIL_HOME": str(home), "COLUMNS": "80"}
    # As installed: compiled modules cached (the warm-up writes them), in a folder of the run's
    # own so that nothing lands in the checkout. Without it (PYTHONDONTWRITEBYTECODE, as the
    # sessions here have it) every start compiles the project's ~400 modules again.
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    environ["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    environ.pop("CASETRAIL_DATABASE_URL", None)
    environ.pop("CASETRAIL_EVENT_KEY", None)
    if tree is not None:
        environ["PYTHONPATH"] = str(tree)
    return environ


def _casetrail(home: Path, *args: str) -> str:
    """Run a setup command with this checkout; its stdout (it must succeed)."""
    completed = subprocess.run(  # noqa: S603 (the casetrail script beside this interpreter)
        [CASETRAIL, *args],
        env=_environment(home, None),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"setup failed: casetrail {' '.join(args)}: {completed.stderr.strip()}")
    return completed.stdout


def prepare(home: Path) -> dict[str, list[str]]:
    """A store with one registered user and a signed checkpoint, a proof, the spec's bundle:
    every measured command's arguments."""
    _casetrail(home, "keys", "init")
    fake = Faker("zh_CN")
    fake.seed_instance(23)
    _casetrail(
        home,
        *("user", "add", "--user", USER, "--name", str(fake.name()), "--unit", UNIT),
        *("--street", STREET, "--role", "coordinator", "--post", "governance_officer"),
        *("--reason", "bench: cli_start"),
    )
    _casetrail(home, "checkpoint", "create")
    proof = home / "proof.json"
    _casetrail(home, "proof", "inclusion", "--position", "1", "--out", str(proof))
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    bundle, bundle_key = home / "bundle.json", home / "bundle-service.pub"
    bundle.write_text(json.dumps(vectors["positive"][0]["bundle"]), encoding="utf-8")
    bundle_key.write_text(vectors["keys"]["service"]["public_key_pem"], encoding="utf-8")
    service_key = home / "keys" / "service-signing.pub"
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "casetrail --help": [CASETRAIL, "--help"],
        # The command's own start (parsing, its help) apart from its work (opening the store).
        "casetrail token issue --help": [CASETRAIL, "token", "issue", "--help"],
        "casetrail token issue": [
            *(CASETRAIL, "token", "issue", "--user", USER, "--role", "coordinator"),
            *("--unit", UNIT, "--street", STREET),
        ],
        "casetrail verify-bundle": [
            *(CASETRAIL, "verify-bundle", str(bundle), "--public-key", str(bundle_key)),
        ],
        "casetrail proof check": [
            *(CASETRAIL, "proof", "check", str(proof), "--public-key", str(service_key)),
        ],
    }


def run_once(argv: Sequence[str], environ: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process run to its end; it must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 (this interpreter, or the casetrail script)
        list(argv), env=environ, capture_output=True, timeout=300, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {completed.returncode}: {completed.stderr!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(commands: dict[str, list[str]], environ: dict[str, str], rounds: int) -> list[Runs]:
    runs = [Runs(name, argv) for name, argv in commands.items()]
    for name_runs in runs:  # one warm-up each: the page cache, .pyc files
        run_once(name_runs.argv, environ)
    for round_no in range(rounds):
        shift = round_no % len(runs)
        for item in runs[shift:] + runs[:shift]:  # a rotation: no command always first
            wall, cpu = run_once(item.argv, environ)
            item.wall.append(wall)
            item.cpu.append(cpu)
    return runs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_start", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {FULL_ROUNDS})")
    parser.add_argument("--tree", type=Path, help="measure the CLI of this checkout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    info = machine()
    print(f"cli_start: the command line's start, {rounds} rounds; machine: {describe(info)}")
    tree = args.tree.resolve() if args.tree else None
    if tree is not None:
        print(f"measuring the command line of {tree}")
    with tempfile.TemporaryDirectory(prefix="casetrail-cli-start-") as directory:
        home = Path(directory)
        commands = prepare(home)
        runs = measure(commands, _environment(home, tree), rounds)
    baseline = runs[0]
    base_wall = statistics.median(baseline.wall)
    print(f"\n{'command':<30}{'wall p50':>10}{'wall min':>10}{'wall max':>10}{'cpu p50':>10}")
    for item in runs:
        s = item.summary()
        print(
            f"{item.name:<30}{s['wall_median_s']:>9.3f}s{s['wall_min_s']:>9.3f}s"
            f"{s['wall_max_s']:>9.3f}s{s['cpu_median_s']:>9.3f}s"
        )
    base_cpu = statistics.median(baseline.cpu)
    targets = [
        Target(
            scenario="cli_start",
            store="sqlite",
            metric=f"{item.name} start, CPU p50",
            value=round(statistics.median(item.cpu), 3),
            limit=TARGET_SECONDS,
            kind="max",
            unit="s",
            note=(
                f"wall p50 {statistics.median(item.wall):.3f} s, min {min(item.wall):.3f} s; "
                f"python -c pass cpu {base_cpu:.3f} s, wall {base_wall:.3f} s"
            ),
        )
        for item in runs[1:]
    ]
    print_targets(targets)
    print(f"load average at the end: {load_average()}")
    path = write_results(
        "cli_start",
        {
            "benchmark": "cli_start",
            "machine": info,
            "rounds": rounds,
            "tree": str(tree) if tree else None,
            "commands": [{**item.summary(), "argv": item.argv[1:]} for item in runs],
            "targets": [t.as_dict() for t in targets] if tree is None else [],
            "load_average_at_end": load_average(),
        },
    )
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
