"""Shared by every benchmark: the machine's description, latency percentiles, JSON results.

Figures mean little without the machine and settings they were measured on, so every benchmark
prints `describe(machine())` with its results and stores `machine()` in its JSON file.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import platform
import random
import socket
import statistics
from collections.abc import Sequence
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
class Interval:
    """The median of per-block values and a distribution-free interval around it.

    The interval is a pair of order statistics of the blocks' values: ranks k and n+1-k, with
    the largest k whose coverage of the median, 1 - 2 P(Binomial(n, 1/2) < k), is at least
    95%. Below 6 blocks no pair reaches 95%: the interval is then the blocks' minimum and
    maximum, and `confidence` says what it covers (4 blocks: 87.5%). Nothing is assumed of the
    values' distribution, only that the blocks are alike and independent: what interleaving
    the subject and its baseline block by block on one machine is for.
    """

    median: float
    low: float
    high: float
    blocks: int
    confidence: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        found = sorted(v for v in values if math.isfinite(v))
        n = len(found)
        if n == 0:
            nan = float("nan")
            return cls(nan, nan, nan, 0, 0.0)
        k, coverage = 1, _median_coverage(n, 1)
        while k + 1 <= n // 2 and _median_coverage(n, k + 1) >= 0.95:
            k += 1
            coverage = _median_coverage(n, k)
        return cls(
            median=round(statistics.median(found), 4),
            low=round(found[k - 1], 4),
            high=round(found[n - k], 4),
            blocks=n,
            confidence=round(coverage, 4),
        )

    def text(self) -> str:
        return (
            f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"({self.confidence:.0%} over {self.blocks} blocks)"
        )


def _median_coverage(n: int, k: int) -> float:
    """P(X_(k) <= median <= X_(n+1-k)) for n independent draws of a continuous variable."""
    below: float = sum(math.comb(n, i) for i in range(k)) / float(2**n)
    return 1.0 - 2.0 * below


def paired_ratios(subject: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Block by block, subject / baseline (blocks where the baseline is 0 are left out)."""
    return [s / b for s, b in zip(subject, baseline, strict=True) if b]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, nearest rank (as HDR histograms report it)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class PooledBlocks:
    """Blocks' values, for the percentiles of resamples that draw blocks with replacement.

    Equal to pooling the drawn blocks' values (each as often as its block was drawn) and taking
    `percentile`, without building the pool: every value is sorted once, largest first, with its
    block, and a draw walks down from the top, counting each value as often as its block was
    drawn, until it reaches the nearest rank. A p99 is found within the top few per cent, so a
    draw costs about as many steps as the tail holds values, not the whole run's values (24
    blocks of 2,000 reads: 1,000 draws took 34 s pooled, under a second walked)."""

    def __init__(self, blocks: Sequence[Sequence[float]]) -> None:
        self.sizes = [len(b) for b in blocks]
        self.largest_first = sorted(
            ((v, i) for i, b in enumerate(blocks) for v in b), key=lambda vi: -vi[0]
        )

    def percentile(self, times_drawn: Sequence[int], q: float) -> float:
        total = sum(c * size for c, size in zip(times_drawn, self.sizes, strict=True))
        if not total:
            return float("nan")
        # `percentile`'s nearest rank, counted from the top.
        from_top = total - max(1, math.ceil(q / 100 * total)) + 1
        seen = 0
        for value, block in self.largest_first:
            seen += times_drawn[block]
            if seen >= from_top:
                return value
        raise AssertionError("unreachable: the counts add up to total")


def bootstrap_ratio(
    subject: Sequence[Sequence[float]],
    baseline: Sequence[Sequence[float]],
    q: float = 99.0,
    *,
    resamples: int = 1000,
    seed: int = 20261202,
) -> Interval:
    """The ratio of the q-th percentiles of two sides measured in the same blocks, and its 95%
    interval by a paired block bootstrap: blocks are drawn with replacement (the same draw for
    both sides, as they shared the machine's moods), the values of the drawn blocks pooled,
    and the ratio of their percentiles taken; the interval is the 2.5th and 97.5th percentile
    of those ratios. A p99 has no per-block median worth taking when a block holds a few
    dozen requests; pooling the blocks keeps its tail."""
    n = len(subject)
    if n == 0 or len(baseline) != n:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, 0.0)
    whole = percentile([v for b in subject for v in b], q) / percentile(
        [v for b in baseline for v in b], q
    )
    rng = random.Random(seed)
    sides = [PooledBlocks(subject), PooledBlocks(baseline)]
    ratios = []
    for _ in range(resamples):
        times_drawn = [0] * n
        for _ in range(n):
            times_drawn[rng.randrange(n)] += 1
        top, bottom = (one.percentile(times_drawn, q) for one in sides)
        if bottom:
            ratios.append(top / bottom)
    ratios.sort()
    return Interval(
        median=round(whole, 4),
        low=round(percentile(ratios, 2.5), 4),
        high=round(percentile(ratios, 97.5), 4),
        blocks=n,
        confidence=0.95,
    )


OK: Final = "ok"
MISS: Final = "MISS"
UNDECIDED: Final = "undecided"


@dataclass(frozen=True)
class Target:
    """One figure against its target: `value >= limit` (kind "min") or `value <= limit` ("max").

    With an interval (`low`, `high`: see `Interval`), the verdict is `ok` when the whole
    interval meets the target, `MISS` when none of it does, and `undecided` when it straddles
    the limit: a run too short or too noisy to tell says so rather than guess. Without one,
    the figure alone decides (`ok` or `MISS`). The suite prints every target with its verdict
    and keeps them in each result file under "targets"; a benchmark reports a miss, it does
    not fail.
    """

    scenario: str
    store: str
    metric: str
    value: float
    limit: float
    kind: str  # "min" or "max"
    unit: str = "x"
    note: str = ""
    low: float | None = None
    high: float | None = None
    confidence: float | None = None

    @classmethod
    def of_interval(
        cls,
        scenario: str,
        store: str,
        metric: str,
        interval: Interval,
        limit: float,
        kind: str,
        note: str = "",
    ) -> Target:
        """A target judged on the median of blocks and its interval."""
        return cls(
            scenario,
            store,
            metric,
            interval.median,
            limit,
            kind,
            note=note,
            low=interval.low,
            high=interval.high,
            confidence=interval.confidence,
        )

    def _meets(self, value: float) -> bool:
        return value >= self.limit if self.kind == "min" else value <= self.limit

    @property
    def met(self) -> bool:
        return self._meets(self.value)

    @property
    def verdict(self) -> str:
        if self.low is None or self.high is None:
            return OK if self.met else MISS
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return UNDECIDED
        low_ok, high_ok = self._meets(self.low), self._meets(self.high)
        if low_ok and high_ok:
            return OK
        if not low_ok and not high_ok:
            return MISS
        return UNDECIDED

    def line(self) -> str:
        return target_text(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "verdict": self.verdict}


def target_text(target: dict[str, Any]) -> str:
    """One target's line, from its dictionary (as a result file keeps it)."""
    sign = ">=" if target.get("kind") == "min" else "<="
    verdict = target.get("verdict") or (OK if target.get("met") else MISS)
    interval = ""
    if target.get("low") is not None and target.get("high") is not None:
        confidence = target.get("confidence") or 0.0
        interval = f" [{target['low']:.3f}, {target['high']:.3f}]{confidence:4.0%}"
    note = f"  ({target['note']})" if target.get("note") else ""
    return (
        f"{verdict:<9} {target.get('scenario', '?'):<14} {target.get('store', ''):<9}"
        f"{target.get('metric', '?'):<50}{float(target.get('value', float('nan'))):>8.3f}"
        f"{interval} {target.get('unit', ''):<3} target {sign} {target.get('limit'):g}{note}"
    )


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
