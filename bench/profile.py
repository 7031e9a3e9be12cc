"""Sampling profiles of a benchmark's server with py-spy, summarised as text.

`Profiler(pid, path)` records the process (all its threads, idle samples left out) into a
collapsed-stack file while a benchmark drives it; `summary(path)` prints the functions that
hold most samples, inclusive ("in it or below") and exclusive ("in it"). Use it as

    .venv/bin/python -m bench.reads --quick --profile      # or bench.commands
    .venv/bin/python -m bench.profile bench/results/profile-reads-sqlite-audited.txt
    .venv/bin/python -m bench.profile --audit AUDITED.txt [UNAUDITED.txt]   # the audit's parts

py-spy attaches with ptrace: it needs root or `kernel.yama.ptrace_scope` = 0.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
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


def summary(path: Path, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        # Thread names come first in raw output ("process ...", "thread ...").
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        exclusive[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"{path.name}: {total} samples (busy threads only)", "  inclusive:"]
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
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = [f for f in stack.split(";") if f]
        frames = [_frame_name(f) for f in raw if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        # A child's stack starts with its parents' process frames, each with its command line
        # (which may hold a ";" too): the followers' process is the one that names its command.
        if "projections run" in stack:
            where = "followers"
        elif any(_matches(f, _COMMITTER) for f in frames):
            where = "committer"
        else:
            where = "api"
        for name, place, marker in AUDIT_PARTS:
            if place == where and any(_matches(f, marker) for f in frames):
                parts[name] += count
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
    names = list(argv if argv is not None else sys.argv[1:])
    if names[:1] == ["--audit"]:
        # --audit AUDITED [BASELINE]: the audit's parts as shares of the samples.
        print(audit_table(Path(names[1]), Path(names[2]) if len(names) > 2 else None))
        return 0
    for name in names:
        print(summary(Path(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
