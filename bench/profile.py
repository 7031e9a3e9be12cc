"""Sampling profiles of a benchmark's server with py-spy, summarised as text.

`Profiler(pid, path)` records the process (all its threads, idle samples left out) into a
collapsed-stack file while a benchmark drives it; `summary(path)` prints the functions that
hold most samples, inclusive ("in it or below") and exclusive ("in it"). Use it as

    .venv/bin/python -m bench.reads --quick --profile      # or bench.commands
    .venv/bin/python -m bench.profile bench/results/profile-reads-sqlite-audited.txt
    .venv/bin/python -m bench.profile --process "projections run" FILE   # one kind of process
    .venv/bin/python -m bench.profile --audit AUDITED.txt [UNAUDITED.txt]   # the audit's parts

py-spy attaches with ptrace: it needs root or `kernel.yama.ptrace_scope` = 0.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final


class Profiler:
    def __init__(self, pid: int, path: Path, rate: int = 250) -> None:
        self.pid = pid
        self.path = path
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        command = [spy, "record", "--pid", str(self.pid), "--format", "raw"]
        # --gil: only the thread holding the interpreter lock is sampled, so a thread waiting
        # (for a lock, a batch, a socket) is never counted. Sampling every "active" thread
        # instead counted threads waiting in `Condition.wait` as busy (673 of 3,767 samples of
        # an audited read's server, 2026-12-02, on this loaded machine).
        command += ["--rate", str(self.rate), "--output", str(self.path), "--nonblocking", "--gil"]
        command += ["--subprocesses"]  # the API workers and the followers are children
        self.process = subprocess.Popen(  # noqa: S603 (py-spy of our own venv, our arguments)
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# This checkout's root: a profiled server's own files are named from it (domain/..., gateway/...).
_ROOT: Final = str(Path(__file__).resolve().parent.parent) + "/"


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; the line number varies.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", _ROOT, "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


# py-spy's frame of a process (with --subprocesses, each stack starts with the processes from
# the profiled one down to the sampled one): its id and command line, which may hold a ";"
# (`python -c "from gateway.cli.main import main; main()" projections run`), so these frames are
# taken out before a stack is split into its frames at ";".
_PROCESS_FRAME: Final = re.compile(r'process \d+:"[^"]*";?')


@dataclass(frozen=True)
class Stack:
    """One line of a raw py-spy profile: the sampled process's command lines (the profiled
    process first), its Python frames (outermost first, as `_frame_name` names them), and how
    many samples saw it."""

    processes: tuple[str, ...]
    frames: tuple[str, ...]
    count: int

    @property
    def process(self) -> str:
        """The sampled process's own frame ("" when py-spy recorded no process frames)."""
        return self.processes[-1] if self.processes else ""


def stacks(path: Path) -> Iterator[Stack]:
    """The stacks of a raw py-spy profile (`Profiler`) that hold at least one Python frame."""
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        processes = tuple(m.group(0).rstrip(";") for m in _PROCESS_FRAME.finditer(stack))
        rest = _PROCESS_FRAME.sub("", stack)
        frames = tuple(_frame_name(f) for f in rest.split(";") if f and not f.startswith("thread "))
        if frames:
            yield Stack(processes, frames, int(count_text))


def summary(path: Path, top: int = 25, process: str | None = None) -> str:
    """The functions holding most samples; with `process`, only the samples of processes whose
    command line holds that text (the followers' process: "projections run"; the API workers:
    "spawn_main")."""
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for stack in stacks(path):
        if process is not None and process not in stack.process:
            continue
        total += stack.count
        exclusive[stack.frames[-1]] += stack.count
        for frame in set(stack.frames):
            inclusive[frame] += stack.count
    where = f" of processes naming {process!r}" if process is not None else ""
    if not total:
        return f"{path}: no samples{where}"
    lines = [f"{path.name}: {total} samples{where} (busy threads only)", "  inclusive:"]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines.append("  exclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in exclusive.most_common(top)]
    return "\n".join(lines)


# --- the audit's parts (issue 23) -----------------------------------------------------------

# Where a sample of an audited read's server goes, in this order of precedence (the first
# that matches; frames as `_frame_name` gives them, "function (file)"):
# (function, file): a frame matches when its function (without its class: py-spy names methods
# "Class.method") is `function` and its file contains `file`; None matches any.
Marker = tuple[str | None, str | None]
_ANY: Final[Marker] = (None, None)

AUDIT_PARTS: Final[tuple[tuple[str, str, Marker], ...]] = (
    # The followers' process (`projections run`): the evidence (Merkle) log ...
    ("evidence log (followers' process)", "followers", (None, "evidence/")),
    # ... and the read models, which index the access events too (the access log).
    ("read models (followers' process)", "followers", _ANY),
    # The committer threads (`domain.group_commit`): mapping and encrypting the events ...
    ("access event encoded + encrypted", "committer", ("to_stored_event", None)),
    # ... the insert and the durable commit, and the `_notify` hook after it ...
    ("durable (group) commit", "committer", ("store_events", "domain/application.py")),
    # ... and the rest of the committer's loop: choosing a batch, waking the readers.
    ("hand-off (committer side)", "committer", _ANY),
    # The request's thread: waiting for the batch to be stored (queueing, waking) ...
    ("hand-off (reader side)", "api", ("record_all", "domain/group_commit.py")),
    # ... building the access event, and the need-to-know decision (both in the baseline too).
    ("access event built", "api", ("access_event", "domain/access.py")),
    ("access decision", "api", ("decide", "domain/access.py")),
    ("rest of the read (HTTP, token, loading the case, answer)", "api", _ANY),
)
_COMMITTER: Final[Marker] = ("_run", "domain/group_commit.py")


def _matches(frame: str, marker: Marker) -> bool:
    function, path = marker
    name, _, where = frame.partition(" (")
    return (function is None or name.rsplit(".", 1)[-1] == function) and (
        path is None or path in where
    )


def audit_parts(path: Path) -> tuple[Counter[str], int]:
    """The samples of a server profile (`Profiler`, all its processes) split into the audit's
    parts (`AUDIT_PARTS`) and the rest of the read; and the total."""
    parts: Counter[str] = Counter()
    total = 0
    for stack in stacks(path):
        frames = stack.frames
        total += stack.count
        # The followers' process is the one whose command names it.
        if "projections run" in stack.process:
            where = "followers"
        elif any(_matches(f, _COMMITTER) for f in frames):
            where = "committer"
        else:
            where = "api"
        for name, place, marker in AUDIT_PARTS:
            if place == where and any(_matches(f, marker) for f in frames):
                parts[name] += stack.count
                break
    return parts, total


def audit_table(audited: Path, baseline: Path | None = None) -> str:
    """`audit_parts` of an audited server's profile as shares of its samples, beside the same
    parts of the baseline's (the access write off) when given."""
    parts, total = audit_parts(audited)
    base, base_total = audit_parts(baseline) if baseline else (Counter[str](), 0)
    lines = [
        f"{audited.name}: {total} samples"
        + (f"; {baseline.name}: {base_total}" if baseline else "")
    ]
    for name, _, _ in AUDIT_PARTS:
        share = 100 * parts[name] / total if total else 0.0
        other = f"  {100 * base[name] / base_total:5.1f}%" if base_total else ""
        lines.append(f"  {share:5.1f}%{other}  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description="Summarise py-spy profiles written by a benchmark's --profile.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--process", metavar="TEXT", help="only the processes whose command line holds TEXT"
    )
    what.add_argument(
        "--audit",
        action="store_true",
        help="the audit's parts as shares of the samples: FILE is the audited server's "
        "profile, a second FILE the unaudited one's",
    )
    args = parser.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        parser.error(f"no such profile: {', '.join(missing)} (write one with --profile)")
    if args.audit:
        if len(args.files) > 2:
            parser.error("--audit takes one or two files: the audited profile, the baseline's")
        print(audit_table(args.files[0], args.files[1] if len(args.files) > 1 else None))
        return 0
    for path in args.files:
        print(summary(path, process=args.process))
    return 0


if __name__ == "__main__":
    sys.exit(main())
