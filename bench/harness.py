"""Shared by every benchmark: the machine's description, latency percentiles, JSON results.

Figures mean little without the machine and settings they were measured on, so every benchmark
prints `describe(machine())` with its results and stores `machine()` in its JSON file.
"""

from __future__ import annotations

import bisect
import json
import os
import platform
import random
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from hdrh.histogram import HdrHistogram

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"

# Latencies are recorded in microseconds, from 1 µs to 60 s, to 3 significant digits.
_LOWEST_US: Final = 1
_HIGHEST_US: Final = 60_000_000
_SIGNIFICANT_DIGITS: Final = 3

# Libraries whose versions change the figures; recorded with every result.
_LIBRARIES: Final = ("eventsourcing", "cryptography", "psycopg", "pydantic")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    versions: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": versions,
        "load_average": load_average(),
    }


def describe(info: dict[str, Any]) -> str:
    """`machine()` on one line."""
    libraries = " ".join(f"{k} {v}" for k, v in info["libraries"].items())
    return (
        f"{info['cpu_count']} CPUs ({info['cpu_model']}), {info['platform']}, "
        f"{info['python']}; {libraries}; load average {info.get('load_average', '?')}"
    )


def filesystem_of(path: str | Path) -> str:
    """The file system holding `path`, e.g. "ext4 /dev/vda on /": fsync costs depend on it."""
    target = str(Path(path).resolve())
    best: tuple[str, str, str] | None = None
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                source, point, fstype = line.split()[:3]
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and (best is None or len(point) > len(best[1])):
                    best = (source, point, fstype)
    except OSError:
        return "unknown"
    return f"{best[2]} {best[0]} on {best[1]}" if best else "unknown"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGNIFICANT_DIGITS)


def record_ns(histogram: HdrHistogram, elapsed_ns: int) -> None:
    # Clamped so that a sub-microsecond or pathological value is counted, not rejected.
    histogram.record_value(min(max(elapsed_ns // 1000, _LOWEST_US), _HIGHEST_US))


@dataclass(frozen=True)
class Percentiles:
    """A latency distribution in milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Percentiles:
        def ms(us: float) -> float:
            return round(us / 1000, 3)

        return cls(
            count=int(histogram.get_total_count()),
            mean_ms=ms(histogram.get_mean_value()),
            p50_ms=ms(histogram.get_value_at_percentile(50)),
            p95_ms=ms(histogram.get_value_at_percentile(95)),
            p99_ms=ms(histogram.get_value_at_percentile(99)),
            p999_ms=ms(histogram.get_value_at_percentile(99.9)),
            max_ms=ms(histogram.get_max_value()),
        )

    def line(self) -> str:
        return (
            f"p50 {self.p50_ms:7.3f} ms  p95 {self.p95_ms:7.3f} ms  p99 {self.p99_ms:7.3f} ms  "
            f"p99.9 {self.p999_ms:8.3f} ms  max {self.max_ms:8.3f} ms  (n={self.count})"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def utc_stamp(moment: datetime | None = None) -> str:
    """A timestamp that sorts and is safe in a file name: 20261129T101500Z."""
    return (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def write_results(benchmark: str, payload: dict[str, Any]) -> Path:
    """Store one run's results as bench/results/<benchmark>-<UTC timestamp>.json."""
    now = datetime.now(UTC)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}-{utc_stamp(now)}.json"
    document = {"written_at": now.isoformat(timespec="seconds"), **payload}
    path.write_text(
        json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
    )
    return path


# --- targets: every scenario states its figures against the targets -----------------


@dataclass(frozen=True)
class Target:
    """One figure against its target: `value >= limit` (kind "min") or `value <= limit` ("max").

    The suite prints every target with `ok` or `MISS` and keeps them in each result file under
    "targets"; a benchmark reports a miss, it does not fail.
    """

    scenario: str
    store: str
    metric: str
    value: float
    limit: float
    kind: str  # "min" or "max"
    unit: str = "x"
    note: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.kind == "min" else self.value <= self.limit

    def line(self) -> str:
        sign = ">=" if self.kind == "min" else "<="
        verdict = "ok  " if self.met else "MISS"
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{verdict} {self.scenario:<11}{self.store:<9}{self.metric:<46}"
            f"{self.value:>9.3f} {self.unit:<3} target {sign} {self.limit:g}{note}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def print_targets(targets: list[Target]) -> None:
    print("\n== targets ==")
    for target in targets:
        print("  " + target.line())


def ratio_of(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("nan")


def turn_order(turn: int, round_no: int = 0) -> tuple[int, int]:
    """ABBA: which of two variants goes first in this turn (0 then 1, or 1 then 0)."""
    return (0, 1) if (turn + round_no) % 2 == 0 else (1, 0)


class Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1/(rank+1)^s: a skewed hot set.

    With s = 1.1 and n = 3000, the 30 hottest cases take about 45% of the draws.
    """

    def __init__(self, n: int, s: float = 1.1) -> None:
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = sum(weights)
        running = 0.0
        self._cumulative: list[float] = []
        for w in weights:
            running += w / total
            self._cumulative.append(running)
        self.n = n

    def draw(self, rng: random.Random) -> int:
        return min(bisect.bisect_left(self._cumulative, rng.random()), self.n - 1)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on a shared machine shows here."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
