"""Sampling profiles of a benchmark's server with py-spy, summarised as text.

`Profiler(pid, path)` records the process (all its threads, idle samples left out) into a
collapsed-stack file while a benchmark drives it; `summary(path)` prints the functions that
hold most samples, inclusive ("in it or below") and exclusive ("in it"). Use it as

    .venv/bin/python -m bench.reads --quick --profile      # or bench.commands
    .venv/bin/python -m bench.profile bench/results/profile-reads-sqlite-audited.txt

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


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; the line number varies.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
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


def main(argv: list[str] | None = None) -> int:
    for name in argv if argv is not None else sys.argv[1:]:
        print(summary(Path(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
