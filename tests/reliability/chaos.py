"""The chaos run's harness (issue 21, "What it must show"): the production layout as real
processes on loopback, loaded through both API processes while one process of each kind is
SIGKILLed and started again, then held to every answer it gave.

The layout, each part a process of its own:
- PostgreSQL: a database of the run's own, the `casetrail` schema made by the owner's
  `casetrail store init`, every process under its least-privilege role (`ops/postgres-roles.sql`,
  as in tests/integration/test_least_privilege.py): the two APIs as `api`, the relay as `relay`,
  `casetrail projections run` as `projections`;
- the broker: a three-node JetStream cluster (`Brokers`), the stream at three replicas;
- two `casetrail serve --no-messaging` API processes (`CASETRAIL_PROJECTIONS=off`);
- the relay (`casetrail relay run`) and the followers (`casetrail projections run`);
- two unit clients (`casetrail unit listen`), running throughout, each reporting its receipts to
  another API process.

The load (`chaos_load`): client threads send reports, follow-ups, case reads, ledger pages and
assignments to either API at random (`tests.reliability.campaign.Client`, whose tally keeps
every answer); a request that the kill of its API cut is not known to have happened, the next
one goes to either API again.

The faults (`Chaos.run`), spread over the load: SIGKILL of a broker node (one of the three, at
random), of one API process, of the relay and of the projections process, each started again.
In the middle (`Plan.rotate`, `Plan.backup`): `keys rotate --event`, `--token` and `--service`,
then the rolling restart `docs/operations.md` prescribes (every process, so that each reads the
new keys); and `casetrail backup` while the load goes on.

What `Chaos.check` proves afterwards (the campaign's checks, `tests.reliability.campaign`):
- every command answered with success is in the store exactly once; every read answered with
  data has its access event (by request id); every read model equals a rebuild from zero;
- every assignment the store holds (each `NoticePublished` fact) reached its unit's inbox
  exactly once (by assignment id and by message id), every acknowledged one among them;
- `casetrail verify --checkpoint` passes against a unit's checkpoint file (the checkpoints
  the relay broadcast to it during the run);
- after the rotation: every event still reads, the events written after the rolling restart
  carry the new event key id, the unit's checkpoints span the signing-key change and verify;
- the backup restores into an empty PostgreSQL database, verifies against the unit's
  checkpoint file as it stood when the backup was taken, and holds the same events and
  rebuilds the same read models as the source up to the backup's position.

Used by test_chaos.py; the figures are in the README ("The chaos run").
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse
from uuid import UUID

import httpx
import psycopg
import pytest

from domain.application import CaseTrail
from domain.clock import local_today
from domain.notices import NoticePublished
from gateway import keyring
from gateway.bootstrap import open_application, readmodel_config
from gateway.messaging.broker import EmbeddedCluster, NatsSettings
from gateway.messaging.broker_config import ClusterNode, NatsLayout
from gateway.messaging.registry import write_cluster
from gateway.settings import Settings
from gateway.store.backup import read_manifest
from gateway.store.eventstore import store_environment
from projections.evidence.checkpoints import Checkpoint, checkpoints_document, load_checkpoints
from projections.readmodels import VIEW_NAMES, ReadModelConfig, ReadModels
from tests.conftest import PG_DSN, require_postgres
from tests.integration.test_least_privilege import roles_script
from tests.messaging.stack import (
    CASETRAIL,
    Listener,
    Process,
    Stack,
    free_port,
    require_nats_server,
    wait_for,
)
from tests.messaging.test_outage import facts
from tests.reliability.campaign import (
    RETRYABLE,
    Bodies,
    Client,
    Store,
    Tally,
    Tokens,
    check_read_models,
    check_store,
    descendants,
    prepare,
    run_threads,
    wait_gone,
)

POLICE: Final = "chengguan-police-station"
SCHOOL: Final = "chengguan-school-district-office"
UNITS: Final = (
    (POLICE, "城关派出所", "police_station"),
    (SCHOOL, "城关学区办", "school_district_office"),
)
SCHEMA: Final = "casetrail"
# Checkpoints during the run, so that the units' files hold several, across the key change.
CHECKPOINT_EVERY_EVENTS: Final = "200"
CHECKPOINT_EVERY_SECONDS: Final = "3"
POOL_SIZE: Final = "1"
POOL_OVERFLOW: Final = "4"


# --- PostgreSQL: a database of the run's own, a role per process ------------------------------


@dataclass(frozen=True)
class Database:
    """The run's database, its roles (owner, api, relay, projections) and their URLs."""

    name: str
    roles: dict[str, str]

    def dsn(self, role: str | None = None, database: str | None = None) -> str:
        """A libpq URL to this (or another) database, as `role` (the superuser of PG_DSN when
        none)."""
        parsed = urlparse(PG_DSN)
        netloc = parsed.netloc
        if role is not None:
            netloc = f"{self.roles[role]}@{parsed.hostname}:{parsed.port or 5432}"
        return parsed._replace(netloc=netloc, path=f"/{database or self.name}").geturl()

    def url(self, role: str | None = None, database: str | None = None) -> str:
        """The store URL the service reads (`?schema=`)."""
        return f"{self.dsn(role, database)}?schema={SCHEMA}"

    def env(self, role: str) -> dict[str, str]:
        return {"CASETRAIL_DATABASE_URL": self.url(role), "CASETRAIL_CREATE_TABLE": "no"}


@contextmanager
def database() -> Iterator[Database]:
    """A new database with the roles of `ops/postgres-roles.sql` in it; dropped afterwards,
    with the roles. PostgreSQL or psql missing: a skip, a failure when CI=true."""
    require_postgres()
    tag = uuid.uuid4().hex[:8]
    db = Database(
        f"ct_chaos_{tag}",
        {
            "owner": f"ct_owner_{tag}",
            "api": f"ct_api_{tag}",
            "relay": f"ct_relay_{tag}",
            "projections": f"ct_proj_{tag}",
        },
    )
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db.name}")
    try:
        yield db
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")
            for role in db.roles.values():
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (role,)).fetchone():
                    conn.execute(f"DROP ROLE {role}")


# --- the broker ---------------------------------------------------------------------------------


class Brokers:
    """The broker the run kills a node of: a three-node JetStream cluster (`EmbeddedCluster`,
    `write_cluster`), the stream at three replicas, every process given every node's URL. A
    node killed is an outage for nobody: the relay and the units fail over to another."""

    nodes: Final = 3

    def __init__(self, layout: NatsLayout) -> None:
        ports: list[int] = []
        while len(ports) < 2 * self.nodes:
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.cluster_nodes = [
            ClusterNode(f"n{i + 1}", "127.0.0.1", ports[2 * i], ports[2 * i + 1])
            for i in range(self.nodes)
        ]
        self._cluster = EmbeddedCluster(layout, self.cluster_nodes)
        self.nats = NatsSettings(
            url=self._cluster.url, port=self.cluster_nodes[0].port, replicas=self.nodes
        )

    @property
    def broker(self) -> EmbeddedCluster:
        """What `tests.messaging.stack.Stack` stops at the end."""
        return self._cluster

    @property
    def env(self) -> dict[str, str]:
        """What every process is given to find the broker."""
        return {
            "CASETRAIL_NATS_URL": self._cluster.url,
            "CASETRAIL_NATS_PORT": str(self.nats.port),
            "CASETRAIL_NATS_REPLICAS": str(self.nodes),
        }

    def write_config(self, stack: Stack) -> None:
        """Every node's config for the units registered (before `start`)."""
        with stack.application() as application:
            write_cluster(stack.settings, application, self.cluster_nodes)

    def start(self) -> None:
        self._cluster.start(timeout=90)

    def kill(self, node: int) -> None:
        self._cluster.kill(node)

    def restart(self, node: int) -> None:
        self._cluster.restart(node, timeout=30)

    def stop(self) -> None:
        self._cluster.stop()


# --- the load -----------------------------------------------------------------------------------


@dataclass
class Assignments:
    """The assignments the clients asked for: acknowledged (201) by id, with their unit; and
    the (case, unit) pairs asked already (a unit holds one open assignment per function and
    case: asking twice is a conflict, not a fault)."""

    acknowledged: dict[str, str] = field(default_factory=dict)
    asked: set[tuple[UUID, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, case_id: UUID, unit: str) -> bool:
        with self.lock:
            if (case_id, unit) in self.asked:
                return False
            self.asked.add((case_id, unit))
            return True


def assign(client: Client, assignments: Assignments, case_id: UUID, unit: str) -> None:
    """The coordinator assigns the case to `unit` (family function, due in ten days)."""
    if not assignments.claim(case_id, unit):
        return
    body = {
        "unit": unit,
        "function": "family",
        "task": "家访,了解家庭情况。",
        "due_on": (local_today() + timedelta(days=10)).isoformat(),
    }
    answer, request_id = client._send(
        "assign", "POST", f"/v1/cases/{case_id}/assignments", client.tokens.coordinator, json=body
    )
    if answer is None:
        return
    if answer.status_code == 201:
        with assignments.lock:
            assignments.acknowledged[str(answer.json()["assignment_id"])] = unit
    elif answer.status_code not in RETRYABLE:
        client._fault(f"assign {request_id}: {answer.status_code} {answer.text}")


def chaos_load(
    bases: list[str],
    tokens: Tokens,
    tally: Tally,
    bodies: Bodies,
    assignments: Assignments,
    *,
    tag: int,
    thread: int,
    seed: int,
    stop: threading.Event,
) -> None:
    """One client thread: reports, follow-ups, case reads, ledger pages and assignments, each
    to either API process at random, until `stop`. A request without an answer (its API was
    killed) is counted and the next goes on: that API is back soon, the other is up."""
    rng = random.Random(seed)
    # Request ids are unique per (tag, thread): one thread number per API client.
    clients = [
        Client(base, tokens, tally, tag, thread * len(bases) + n) for n, base in enumerate(bases)
    ]
    try:
        while not stop.is_set():
            client = rng.choice(clients)
            if client.cut:
                client.cut = False
                time.sleep(0.2)  # its API is gone: not a busy loop while it starts again
                continue
            case_id = tally.any_case(rng)
            roll = rng.random()
            if case_id is None or roll < 0.25:
                client.report(bodies, rng)
            elif roll < 0.45:
                note = f"回访记录 {tag:x}-{client.thread}-{client.count}"
                client.follow_up(case_id, note, retry=False)
            elif roll < 0.7:
                client.read(case_id)
            elif roll < 0.8:
                client.ledger_page()
            else:
                assign(client, assignments, case_id, rng.choice((POLICE, SCHOOL)))
    finally:
        for client in clients:
            client.close()


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How long and how hard: `rounds` of the four kills (broker node, API, relay, projections),
    `pause` seconds of load between two faults, `clients` threads."""

    rounds: int
    pause: float
    clients: int
    rotate: bool = True
    backup: bool = True


@dataclass
class Figures:
    operations: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Chaos:
    """The layout of the module docstring, started by `start`, faulted by `run`, checked by
    `check`, stopped by `close`."""

    root: Path
    db: Database
    seed: int
    stack: Stack = field(init=False)
    brokers: Brokers = field(init=False)
    tokens: Tokens = field(init=False)
    api_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    apis: list[Process] = field(default_factory=list)
    projections: Process | None = None
    tally: Tally = field(default_factory=Tally)
    assignments: Assignments = field(default_factory=Assignments)
    figures: Figures = field(default_factory=Figures)
    backup_file: Path | None = None
    backup_checkpoints: Path | None = None
    old_event_key: str = ""
    new_event_key: str = ""
    head_after_restart: int = 0

    # --- the processes ---

    def role_env(self, role: str) -> dict[str, str]:
        return {
            **self.db.env(role),
            **self.brokers.env,
            "CASETRAIL_CHECKPOINT_EVERY_EVENTS": CHECKPOINT_EVERY_EVENTS,
            "CASETRAIL_CHECKPOINT_EVERY_SECONDS": CHECKPOINT_EVERY_SECONDS,
            # The library's pools (eventsourcing reads these from the environment): one
            # connection kept per pool, a few more under load. Six processes with their
            # default pools (5 kept, 15 at most, several pools each) fill a PostgreSQL that
            # other test runs share (max_connections 100).
            "POSTGRES_POOL_SIZE": POOL_SIZE,
            "POSTGRES_MAX_OVERFLOW": POOL_OVERFLOW,
        }

    def cli(self, role: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`casetrail ARGS` as `role`, its exit status not checked here."""
        return subprocess.run(
            [CASETRAIL, *args],
            env={**self.stack.env, **self.role_env(role), "CASETRAIL_LOG_LEVEL": "warning"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, role: str, *args: str) -> str:
        result = self.cli(role, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def start(self) -> None:
        require_nats_server()
        home = self.root / "home"
        owner_env = {**self.db.env("owner"), "CASETRAIL_CREATE_TABLE": "yes"}
        roles_script(SCHEMA, self.db.roles, dsn=self.db.dsn())
        keyring.init_keys(home / "keys")
        init = subprocess.run(
            [CASETRAIL, "store", "init"],
            env={"PATH": "/usr/bin:/bin", "CASETRAIL_HOME": str(home), **owner_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert init.returncode == 0, init.stderr
        roles_script(SCHEMA, self.db.roles, dsn=self.db.dsn())  # grants on the new tables
        layout = NatsLayout(home)
        self.brokers = Brokers(layout)
        settings = Settings.from_env({"CASETRAIL_HOME": str(home), **self.db.env("api")})
        self.stack = Stack(
            root=self.root,
            home=home,
            settings=settings,
            nats=self.brokers.nats,
            layout=layout,
            broker=self.brokers.broker,
            api_port=self.api_ports[0],
        )
        # The people the clients act as, registered as an administrator would, and the units.
        self.tokens = prepare(home, self.db.env("api"))
        for unit_id, name, kind in UNITS:
            self.stack.register(unit_id, name, kind)
        self.brokers.write_config(self.stack)
        self.brokers.start()
        for n in range(2):
            self.start_api(n)
        self.start_projections()
        self.start_relay()
        for n, (unit_id, _, _) in enumerate(UNITS):
            # Each unit reports its receipts to another API (both are killed in turn).
            self.stack.api_port = self.api_ports[n % 2]
            self.stack.listeners[unit_id] = self.stack.start_listener(unit_id)
        for n in range(2):
            self.wait_api(n)
        for listener in self.stack.listeners.values():
            wait_for(partial(connected, listener), 90, "the unit clients")

    def start_api(self, n: int) -> None:
        process = self.stack.spawn(
            f"api{n}",
            "serve",
            "--no-messaging",
            "--port",
            str(self.api_ports[n]),
            env={**self.role_env("api"), "CASETRAIL_PROJECTIONS": "off", "CASETRAIL_WORKERS": "1"},
        )
        if n < len(self.apis):
            self.apis[n] = process
        else:
            self.apis.append(process)

    def wait_api(self, n: int) -> None:
        process, base = self.apis[n], self.bases[n]

        def up() -> bool:
            if process.popen.poll() is not None:
                pytest.fail(f"API {n} exited: {process.text()[-3000:]}")
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 120, f"API {n} to answer")

    def start_projections(self) -> None:
        self.projections = self.stack.spawn(
            "projections", "projections", "run", env=self.role_env("projections")
        )

    def start_relay(self) -> None:
        self.stack.relay = self.stack.spawn(
            "relay", "relay", "run", "--reminder-interval", "0", env=self.role_env("relay")
        )

    @property
    def bases(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    def close(self) -> None:
        if hasattr(self, "stack"):
            self.stack.close()
        elif hasattr(self, "brokers"):
            self.brokers.stop()

    # --- the faults ---

    def sigkill(self, process: Process, what: str) -> None:
        """SIGKILL to the process alone (a crash, the OOM killer); whatever it had started
        must end by itself."""
        children = descendants(process.popen.pid)
        process.popen.send_signal(signal.SIGKILL)
        assert process.popen.wait(30) == -signal.SIGKILL, f"{what} was not killed"
        process.stop()  # closes its log
        wait_gone(children, 60, f"after the kill of {what}")
        self.figures.kills[what] += 1

    def kill_broker_node(self, rng: random.Random) -> None:
        node = rng.randrange(self.brokers.nodes)
        self.brokers.kill(node)
        self.figures.kills["nats node"] += 1
        time.sleep(rng.uniform(1.0, 3.0))
        self.brokers.restart(node)

    def kill_api(self, rng: random.Random) -> None:
        n = rng.randrange(2)
        self.sigkill(self.apis[n], "api")
        self.start_api(n)
        self.wait_api(n)

    def kill_relay(self) -> None:
        assert self.stack.relay is not None
        self.sigkill(self.stack.relay, "relay")
        self.start_relay()

    def kill_projections(self) -> None:
        assert self.projections is not None
        self.sigkill(self.projections, "projections")
        self.start_projections()

    def rotate_keys(self) -> None:
        """The three rotations, by the real command, under load; then the rolling restart the
        operations guide asks for (each process reads the keys at start): the APIs one at a
        time (the other serves meanwhile), the followers, the relay, each unit's client with
        the new service key given to it."""
        keys_dir = self.stack.settings.keys_dir
        self.old_event_key = keyring.event_key_ids(keys_dir)[0]
        self.ok("api", "keys", "rotate", "--event")
        self.ok("api", "keys", "rotate", "--token", "--grace-hours", "1")
        announced = self.ok("api", "keys", "rotate", "--service")
        assert "announced key" in announced, announced
        self.new_event_key = keyring.event_key_ids(keys_dir)[0]
        assert self.new_event_key != self.old_event_key
        for n in range(2):
            self.apis[n].stop()
            self.start_api(n)
            self.wait_api(n)
        assert self.projections is not None and self.stack.relay is not None
        self.projections.stop()
        self.start_projections()
        # The relay signs with the key it loaded; a unit's client verifies with the one key it
        # is given (`unit listen --service-key`). So: the relay stops, each unit takes what the
        # old key signed, then the units are given the new key, then the relay starts again.
        self.stack.relay.stop()
        for unit, listener in self.stack.listeners.items():
            wait_for(
                partial(self.holds, listener, self.published, unit),
                120,
                f"{unit} to take what the old service key signed",
            )
        time.sleep(1.0)  # a checkpoint broadcast last, after the last assignment
        for unit in list(self.stack.listeners):
            self.restart_listener(unit, service_key=keys_dir / keyring.SERVICE_PUB)
        self.start_relay()
        self.head_after_restart = self.head()

    @staticmethod
    def holds(listener: Listener, wanted: Callable[[str], set[str]], unit: str) -> bool:
        return wanted(unit) <= delivered(listener)

    def published(self, unit: str) -> set[str]:
        """The assignments to `unit` the relay has published (its `NoticePublished` facts)."""
        return {
            str(f.assignment_id)
            for f in facts(self.stack, NoticePublished)
            if f.assignment_id and f.unit == unit
        }

    def head(self) -> int:
        with self.stack.application() as application:
            return application.recorder.max_notification_id() or 0

    def restart_listener(self, unit: str, *, service_key: Path | None = None) -> None:
        listener = self.stack.listeners[unit]
        listener.process.stop()
        port = self.api_ports[list(self.stack.listeners).index(unit) % 2]
        args = [
            "unit",
            "listen",
            "--unit",
            unit,
            "--key",
            str(self.stack.credentials[unit]),
            "--inbox",
            str(listener.inbox),
            "--api",
            f"http://127.0.0.1:{port}",
            "--token-file",
            str(self.root / f"{unit}.token"),
        ]
        if service_key is not None:
            args += ["--service-key", str(service_key)]
        process = self.stack.spawn(f"listen-{unit}", *args)
        self.stack.listeners[unit] = Listener(unit, process, listener.inbox)
        wait_for(lambda: bool(process.events("unit_connected")), 90, f"{unit} to connect again")

    def take_backup(self) -> None:
        """`casetrail backup` as the owner while the load goes on; the unit's checkpoint file as
        it stands just before, for the restore's verification."""
        held = self.checkpoint_file(POLICE)
        assert held.exists(), "the unit holds no checkpoint yet"
        self.backup_checkpoints = self.root / "unit-checkpoints-at-backup.json"
        shutil.copyfile(held, self.backup_checkpoints)
        self.backup_file = self.root / "casetrail.backup"
        self.ok("owner", "backup", "--out", str(self.backup_file))

    def checkpoint_file(self, unit: str) -> Path:
        inbox = self.stack.listeners[unit].inbox
        return inbox.with_name(inbox.name + ".checkpoints.json")

    # --- the run ---

    def run(self, plan: Plan) -> Figures:
        """The load through both APIs, the faults spread over it (the rotation and the backup
        in the middle), then the load's end; the figures."""
        rng = random.Random(self.seed)
        bodies = Bodies(self.seed)
        stop = threading.Event()
        started = time.monotonic()
        steps: list[tuple[str, Callable[[], None]]] = []
        for _ in range(plan.rounds):
            faults: list[tuple[str, Callable[[], None]]] = [
                ("nats node", partial(self.kill_broker_node, rng)),
                ("api", partial(self.kill_api, rng)),
                ("relay", self.kill_relay),
                ("projections", self.kill_projections),
            ]
            rng.shuffle(faults)
            steps += faults
        middle = len(steps) // 2
        if plan.backup:
            steps.insert(middle, ("backup", self.take_backup))
        if plan.rotate:
            steps.insert(middle, ("rotation", self.rotate_keys))

        def faults_under_load() -> None:
            try:
                deadline = time.monotonic() + 120
                while sum(self.tally.answers.values()) < 20:
                    assert time.monotonic() < deadline, "no load reached the APIs"
                    time.sleep(0.05)
                for what, step in steps:
                    time.sleep(rng.uniform(0.5, 1.5) * plan.pause)
                    began = time.monotonic()
                    step()
                    self.figures.notes.append(
                        f"{what} at {began - started:.0f} s ({time.monotonic() - began:.1f} s)"
                    )
                time.sleep(plan.pause)
            finally:
                stop.set()

        clients = [
            partial(
                chaos_load,
                self.bases,
                self.tokens,
                self.tally,
                bodies,
                self.assignments,
                tag=self.seed & 0xFFFFFFFF,
                thread=n,
                seed=rng.randrange(1 << 30),
                stop=stop,
            )
            for n in range(plan.clients)
        ]
        run_threads([*clients, faults_under_load], timeout=60 * (10 + plan.rounds * 5))
        self.figures.seconds = time.monotonic() - started
        self.figures.operations = sum(self.tally.answers.values()) + self.tally.unanswered
        return self.figures

    # --- the checks ---

    def check(self, plan: Plan) -> list[str]:
        """Every check of the module docstring; a line per check, with its figures."""
        lines: list[str] = []
        tally = self.tally
        assert not tally.faults, f"answers no client should get: {tally.faults[:5]}"
        assert tally.unanswered >= 1, "no request was cut: the API kills did not land under load"
        lines.append(self.check_deliveries())
        # The checks read as the owner: a rebuild from zero without the service's settled
        # horizon (`gateway.store.horizon`) waits out a gap in the ids (a SIGKILLed insert)
        # with a table lock, which only the owner may take.
        owner = Settings.from_env({"CASETRAIL_HOME": str(self.stack.home), **self.db.env("owner")})
        application = open_application(owner)
        try:
            commands = check_store(application, tally, "chaos")
            rebuild = self.db.dsn() + "?schema=rebuild"
            with psycopg.connect(self.db.dsn(), autocommit=True) as conn:
                conn.execute("CREATE SCHEMA IF NOT EXISTS rebuild")
            store = Store("postgres", self.db.env("api"), rebuild)
            reads = check_read_models(application, owner, store, tally, "chaos")
            events = application.recorder.max_notification_id() or 0
            lines.append(
                f"store: {commands} acknowledged commands stored once; {reads} disclosures "
                f"({len(tally.reads)} reads) have their access events; the read models equal "
                f"a rebuild; {events} events"
            )
            if plan.rotate:
                lines.append(self.check_event_keys(application))
        finally:
            application.close()
        lines.append(self.check_verify(plan))
        if plan.backup:
            lines.append(self.check_backup())
        self.checks_can_fail()
        return lines

    def checks_can_fail(self) -> None:
        """The checks are able to fail: a follow-up never sent, an assignment never made (both
        as if acknowledged) and a unit's checkpoint file with one root changed are each
        caught."""
        case_id = self.tally.cases[0]
        never_sent = Tally(cases=[case_id], follow_ups={"从未发送的回访": case_id})
        with self.stack.application() as application, pytest.raises(AssertionError):
            check_store(application, never_sent, "a forged follow-up")
        never_made = Assignments(acknowledged={uuid.uuid4().hex: POLICE})
        with pytest.raises(pytest.fail.Exception, match="every acknowledged assignment"):
            self.check_deliveries(never_made, patience=1.0)
        # A checkpoint signed with the service's own key, over a tree the store never had.
        held = load_checkpoints(self.checkpoint_file(POLICE))
        key = keyring.load_private_key(
            self.stack.settings.keys_dir / keyring.SERVICE_KEY, "service signing key"
        )
        last = held[-1]
        other = Checkpoint.sign(key, seq=last.seq, size=last.size, root=bytes(32), time=last.time)
        forged = self.root / "forged-checkpoints.json"
        forged.write_text(json.dumps(checkpoints_document([*held[:-1], other])), encoding="utf-8")
        refused = self.cli("api", "verify", "--checkpoint", str(forged))
        assert refused.returncode == 1 and "intact" not in refused.stdout, (
            refused.stdout,
            refused.stderr,
        )

    def check_deliveries(
        self, assignments: Assignments | None = None, patience: float = 180
    ) -> str:
        """Every acknowledged assignment at its unit; every published one there exactly once."""
        expected: dict[str, set[str]] = {unit: set() for unit, _, _ in UNITS}
        for assignment_id, unit in (assignments or self.assignments).acknowledged.items():
            expected[unit].add(assignment_id)
        for unit, listener in self.stack.listeners.items():
            wait_for(
                partial(self.holds, listener, lambda u: expected[u], unit),
                patience,
                f"every acknowledged assignment at {unit}",
            )
        time.sleep(2.0)  # time for any copy to show up
        total = 0
        for unit, listener in self.stack.listeners.items():
            counts = Counter(a["id"] for a in listener.assignments())
            doubled = [k for k, n in counts.items() if n > 1]
            assert not doubled, f"assignments delivered twice to {unit}: {doubled[:5]}"
            messages = Counter(e["message_id"] for e in listener.entries())
            assert max(messages.values(), default=1) == 1, f"a message id twice at {unit}"
            published = self.published(unit)
            assert set(counts) == published, (
                f"{unit}: delivered and published differ: "
                f"{sorted(set(counts) ^ published)[:5]}"
            )
            total += len(counts)
        acknowledged = len(self.assignments.acknowledged)
        assert acknowledged > 0, "no assignment was acknowledged: nothing was checked"
        return (
            f"deliveries: {total} assignments published, each at its unit once "
            f"({acknowledged} acknowledged)"
        )

    def check_event_keys(self, application: CaseTrail) -> str:
        """Every stored event reads; the format-1 events written after the rolling restart
        name the new event key."""
        start, read, old, new = 0, 0, 0, 0
        while True:
            page = application.recorder.select_notifications(
                start=start, limit=2000, inclusive_of_start=False
            )
            for notification in page:
                application.mapper.to_domain_event(notification)  # raises if it cannot
                read += 1
                state = bytes(notification.state)
                if state[:1] == b"\x01" and notification.id > self.head_after_restart:
                    assert state[1:5].hex() == self.new_event_key, (
                        f"event {notification.id}, written after every process restarted, names "
                        f"key {state[1:5].hex()}, not the new {self.new_event_key}"
                    )
                    new += 1
                elif state[:1] == b"\x01" and state[1:5].hex() == self.old_event_key:
                    old += 1
            if len(page) < 2000:
                break
            start = page[-1].id
        assert old and new, (old, new)
        return (
            f"keys: all {read} events read; {new} written after the restart under the new "
            f"event key {self.new_event_key}, {old} under the old {self.old_event_key}"
        )

    def check_verify(self, plan: Plan) -> str:
        """`casetrail verify` against each unit's checkpoint file."""
        found = []
        for unit in self.stack.listeners:
            held = load_checkpoints(self.checkpoint_file(unit))
            signers = {c.key_id for c in held}
            if plan.rotate:
                assert len(signers) == 2, (
                    f"{unit}'s checkpoints are signed by {signers}: they do not span the "
                    "signing-key change"
                )
            out = self.ok("api", "verify", "--checkpoint", str(self.checkpoint_file(unit)))
            assert out.startswith("intact"), out
            found.append(f"{unit}: {len(held)} checkpoints, {len(signers)} signing keys")
        return "verify: intact against " + "; ".join(found)

    def check_backup(self) -> str:
        """Restore the backup into an empty database; verify; the same events and read models
        as the source up to the backup's position."""
        assert self.backup_file is not None and self.backup_checkpoints is not None
        manifest = read_manifest(self.backup_file)
        target_db = f"{self.db.name}_restored"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {target_db}")
        try:
            restored_home = self.root / "restored"
            shutil.copytree(self.stack.settings.keys_dir, restored_home / "keys")
            target = self.db.url(database=target_db)
            restored_env = {
                **self.stack.env,
                "CASETRAIL_HOME": str(restored_home),
                "CASETRAIL_DATABASE_URL": target,
                "CASETRAIL_LOG_LEVEL": "warning",
            }

            def run(*args: str) -> str:
                result = subprocess.run(
                    [CASETRAIL, *args],
                    env=restored_env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                assert result.returncode == 0, (args, result.stdout, result.stderr)
                return result.stdout

            run("restore", str(self.backup_file))
            verified = run("verify", "--checkpoint", str(self.backup_checkpoints))
            assert verified.startswith("intact"), verified
            settings = Settings.from_env(
                {"CASETRAIL_HOME": str(restored_home), "CASETRAIL_DATABASE_URL": target}
            )
            copy = open_application(settings)
            try:
                with self.stack.application() as source:
                    assert copy.recorder.max_notification_id() == manifest.position
                    assert rows(copy, manifest.position) == rows(source, manifest.position)
                    with psycopg.connect(self.db.dsn(), autocommit=True) as conn:
                        conn.execute("CREATE SCHEMA IF NOT EXISTS at_backup")
                    config = readmodel_config(self.stack.settings)
                    at_backup = ReadModels(
                        source,
                        ReadModelConfig(
                            env=store_environment(self.db.dsn() + "?schema=at_backup", None),
                            index_key=config.index_key,
                            consultation_deadline=config.consultation_deadline,
                        ),
                        horizon=lambda _p: manifest.position,
                    )
                    restored = ReadModels(copy, readmodel_config(settings))
                    try:
                        for name in VIEW_NAMES:
                            at_backup.rebuild(name)
                        expected, found = tables(at_backup), tables(restored)
                        assert expected["ledger_cases"], "an empty ledger: nothing compared"
                        for table, table_rows in expected.items():
                            assert found[table] == table_rows, f"{table} differs after restore"
                    finally:
                        at_backup.close()
                        restored.close()
            finally:
                copy.close()
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {target_db} WITH (FORCE)")
        return (
            f"backup: taken under load at position {manifest.position} of "
            f"{self.head()}; restored into an empty database, verified against the unit's "
            "file of then, the same events and read models"
        )


def connected(listener: Listener) -> bool:
    return bool(listener.process.events("unit_connected"))


def delivered(listener: Listener) -> set[str]:
    return {str(a["id"]) for a in listener.assignments()}


def rows(application: CaseTrail, upto: int) -> list[tuple[Any, ...]]:
    found = application.recorder.select_notifications(start=1, limit=upto + 1, stop=upto)
    return [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in found]


def tables(readmodels: ReadModels) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: recorder.dump(table)
        for recorder in readmodels.recorders.values()
        for table in recorder.view.tables
    }
