"""Shared by every benchmark: the machine's description, latency percentiles, JSON results.

Figures mean little without the machine and settings they were measured on, so every benchmark
prints `describe(machine())` with its results and stores `machine()` in its JSON file.
"""

from __future__ import annotations

import json
import os
import platform
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
    }


def describe(info: dict[str, Any]) -> str:
    """`machine()` on one line."""
    libraries = " ".join(f"{k} {v}" for k, v in info["libraries"].items())
    return (
        f"{info['cpu_count']} CPUs ({info['cpu_model']}), {info['platform']}, "
        f"{info['python']}; {libraries}"
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
            max_ms=ms(histogram.get_max_value()),
        )

    def line(self) -> str:
        return (
            f"p50 {self.p50_ms:7.3f} ms  p95 {self.p95_ms:7.3f} ms  p99 {self.p99_ms:7.3f} ms  "
            f"max {self.max_ms:8.3f} ms  (n={self.count})"
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
