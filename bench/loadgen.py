"""A small HTTP/1.1 load generator: N concurrent keep-alive clients on asyncio streams.

The clients run in the benchmark's own process, the server in another (loopback only). A
general-purpose client such as httpx spends a few hundred microseconds of CPU per request; on a
2-core machine that CPU is taken from the server being measured, and a constant cost per request
on the client's side would also pull every ratio towards 1. Requests here are pre-encoded bytes
and a response is parsed only as far as its status and `Content-Length`, so the client costs a
few tens of microseconds per request.

Each client sends one request at a time on its own connection (closed-loop load): `concurrency`
requests are in flight at any moment. Latency is from writing the request to reading the last
byte of the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hdrh.histogram import HdrHistogram

from bench.harness import new_histogram, record_ns

K = TypeVar("K")


def encode_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: Any = None,
    *,
    port: int = 0,
) -> bytes:
    # bytes are sent as they are (an encoding of the caller's own); anything else as JSON.
    if body is None:
        payload = b""
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = json.dumps(body, ensure_ascii=False).encode()
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}" if port else "host: bench"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["content-type: application/json", f"content-length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    histogram: HdrHistogram = field(default_factory=new_histogram, repr=False)
    statuses: Counter[int] = field(default_factory=Counter)
    # A few answers that were not the expected status, to say what went wrong.
    unexpected: list[str] = field(default_factory=list)
    # Every latency (ms), for statistics that resample them (bench.harness.bootstrap_ratio).
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def add(self, other: LoadResult) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.histogram.add(other.histogram)
        self.statuses.update(other.statuses)
        self.unexpected.extend(other.unexpected[: max(0, 5 - len(self.unexpected))])
        self.latencies_ms.extend(other.latencies_ms)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


class LoadClient:
    """Keeps its event loop and connections between blocks, so a block measures requests only.

    Clients made with the same `runner` share an event loop and can be run side by side
    (`run_side_by_side`); each closes only a runner it made itself."""

    def __init__(self, port: int, concurrency: int, runner: asyncio.Runner | None = None) -> None:
        self.port = port
        self.concurrency = concurrency
        self._owns_runner = runner is None
        self._runner = runner or asyncio.Runner()
        self._connections: list[_Connection] = []

    def run(self, requests: Sequence[bytes], expect: frozenset[int]) -> LoadResult:
        return self._runner.run(self._run(requests, expect))

    def close(self) -> None:
        self._runner.run(self._close())
        if self._owns_runner:
            self._runner.close()

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return _Connection(reader, writer)

    async def _close(self) -> None:
        for conn in self._connections:
            conn.writer.close()
        self._connections.clear()

    async def _run(self, requests: Sequence[bytes], expect: frozenset[int]) -> LoadResult:
        # Fresh connections for every block, opened before the clock starts: between blocks a
        # server closes keep-alive connections that stay idle (uvicorn after 5 s).
        await self._close()
        self._connections = [await self._connect() for _ in range(self.concurrency)]
        result = LoadResult()
        cursor = iter(range(len(requests)))

        async def client(slot: int) -> None:
            for index in cursor:
                payload = requests[index]
                t0 = time.perf_counter_ns()
                status, body, close = await self._exchange(slot, payload)
                elapsed = time.perf_counter_ns() - t0
                record_ns(result.histogram, elapsed)
                result.latencies_ms.append(elapsed / 1e6)
                result.statuses[status] += 1
                if status not in expect and len(result.unexpected) < 5:
                    result.unexpected.append(f"{status}: {body[:300]!r}")
                if close:
                    self._connections[slot].writer.close()
                    self._connections[slot] = await self._connect()

        started = time.perf_counter_ns()
        await asyncio.gather(*(client(slot) for slot in range(self.concurrency)))
        result.seconds = (time.perf_counter_ns() - started) / 1e9
        result.requests = len(requests)
        return result

    async def _exchange(self, slot: int, payload: bytes) -> tuple[int, bytes, bool]:
        conn = self._connections[slot]
        conn.writer.write(payload)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked answers are not expected from the API")
        body = await conn.reader.readexactly(length) if length else b""
        return status, body, close


def run_side_by_side(
    runs: Mapping[K, tuple[LoadClient, Sequence[bytes]]], expect: frozenset[int]
) -> dict[K, LoadResult]:
    """Every client's requests at the same time, each client on its own server: a block of a
    duet (bench/README.md, "twelfth round"). Both sides of a comparison then see the same
    machine in the same seconds, so that what another tenant of the host takes from one it
    takes from the other, which blocks in turns cannot promise. The clients must share one
    event loop (`LoadClient(..., runner=)`); each result is timed from its own start to its own
    last answer."""
    clients = [client for client, _ in runs.values()]
    runner = clients[0]._runner
    if any(client._runner is not runner for client in clients):
        raise ValueError("clients run side by side must share one runner")

    async def together() -> list[LoadResult]:
        return list(
            await asyncio.gather(*(client._run(plan, expect) for client, plan in runs.values()))
        )

    return dict(zip(runs, runner.run(together()), strict=True))
