"""The parts the crash and contention campaigns share (issue 22, docs/reliability.md): a real
`casetrail serve` that can be killed with SIGKILL and started again on the same port, clients
that keep a tally of every answer they got, and the checks that hold the service to what it
answered.

What `check_everything` proves, for every answer the clients ever got from the service:
- every command answered with success is in the store, exactly once: each report's case file
  exists, and each follow-up's note (unique to it) is in its case file once;
- every read answered with data (a case file, a ledger page's rows) has its access event in the
  access-log read model (not the store's tail: the view, once caught up), found by the request
  id the client sent (`X-Request-ID`), as a disclosure of each case file the answer held; all
  of them;
- `casetrail verify` exits 0 (the Merkle log and the signed checkpoints match the store);
- every read model (ledger, reports, screening, accesses) equals a rebuild from zero into a
  database of its own.

Nothing is mocked: the service is the `casetrail serve` command with its own embedded followers
and evidence log; the store is an SQLite file or a PostgreSQL schema; the clients speak HTTP.
Used by `test_crash_safety.py` and `test_contention.py`; the figures are in docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import httpx
import psycopg
import pytest
from faker import Faker

from domain.access import Actor
from domain.application import CaseTrail, replay
from domain.case import Case
from domain.clock import local_today
from domain.compliance.records import RecordKind
from domain.taxonomy import Role
from gateway import keyring
from gateway.auth import issue_token
from gateway.bootstrap import open_application, readmodel_config
from gateway.cli.demo import GOVERNANCE_OFFICE, VILLAGES, synthetic_report
from gateway.cli.main import DEFAULT_STREET
from gateway.settings import Settings
from gateway.store.eventstore import store_environment
from projections.compliance.access_log import AccessQuery, search
from projections.readmodels import ReadModelConfig, ReadModels
from tests.conftest import PG_DSN, pg_url, require_postgres
from tests.integration.live_service import LiveService, cli
from tests.people import ensure_registered

STREET: Final = DEFAULT_STREET
COORDINATOR: Final = Actor("reliability-coordinator", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)
REPORTERS: Final = tuple(
    Actor(f"reliability-reporter-{village}", Role.REPORTER, village, STREET)
    for village in VILLAGES[:2]
)
# Answers a client may get and retry (docs: 409 a lost race or a state conflict, 503 the store
# could not record it now); anything else that is not a success is a fault.
RETRYABLE: Final = frozenset({409, 503})
# Client timeout: long enough for a loaded two-core machine, short enough that a request the
# kill left unanswered does not hold a thread for long.
CLIENT_TIMEOUT: Final = 30.0


# --- the store: an SQLite file or a PostgreSQL schema -----------------------------------------


@dataclass(frozen=True)
class Store:
    """Where a campaign keeps its events (`env` for the service) and where the checks rebuild
    the read models from zero (`rebuild_url`, never the service's own)."""

    name: str
    env: dict[str, str]
    rebuild_url: str


@contextmanager
def store_for(kind: str, root: Path) -> Iterator[Store]:
    """An SQLite home under `root`, or two fresh PostgreSQL schemas (events and read models;
    the rebuild's), dropped afterwards. PostgreSQL missing: a skip, a failure when CI=true."""
    if kind == "sqlite":
        yield Store("sqlite", {}, f"sqlite:///{root / 'rebuild.sqlite'}")
        return
    require_postgres()
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield Store("postgres", {"CASETRAIL_DATABASE_URL": pg_url(schemas[0])}, pg_url(schemas[1]))
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


# --- the service ------------------------------------------------------------------------------


class Service(LiveService):
    """`casetrail serve --no-messaging` (tests/integration/live_service.py) that can also be
    killed with SIGKILL, as a power cut or the OOM killer would, and started again on the
    same port."""

    def start(self, timeout: float = 40) -> Service:
        super().start(timeout)
        return self

    def kill(self) -> set[int]:
        """SIGKILL to `casetrail serve` alone (not its process group: what a crash or the OOM
        killer does); the processes it had started, found just before."""
        assert self.process is not None
        children = descendants(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(30) == -signal.SIGKILL, "the service was not killed"
        if self._log is not None:
            self._log.close()
            self._log = None
        return children

    def settings(self) -> Settings:
        return Settings.from_env({**self.env, "CASETRAIL_HOME": str(self.home)})


def _parents() -> dict[int, int]:
    """Every live process's parent, from /proc (zombies left out: they are gone but unreaped)."""
    found: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if state != "Z":
            found[int(stat.parent.name)] = int(ppid)
    return found


def descendants(pid: int) -> set[int]:
    """The live processes below `pid` (children, their children...)."""
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_gone(pids: set[int], seconds: float, context: str) -> None:
    """Every process in `pids` ends within `seconds`; else they are killed (not left behind)
    and the test fails, naming them."""
    deadline = time.monotonic() + seconds
    while (left := pids & set(_parents())) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        commands = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left}
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"processes outlived the killed service by {seconds} s: {commands} ({context})")


@dataclass(frozen=True)
class Tokens:
    coordinator: str
    reporters: tuple[str, ...]


def prepare(home: Path, env: dict[str, str]) -> Tokens:
    """Keys, the people the clients act as (registered as an administrator would), and their
    tokens, minted here with the service's token key (as `casetrail token issue` does)."""
    keyring.init_keys(home / "keys")
    settings = Settings.from_env({**env, "CASETRAIL_HOME": str(home)})
    application = open_application(settings)
    try:
        for actor in (COORDINATOR, *REPORTERS):
            ensure_registered(application, actor.user, actor.role, actor.unit, actor.street)
    finally:
        application.close()
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")

    def token(actor: Actor) -> str:
        return issue_token(
            key, user=actor.user, role=actor.role, unit=actor.unit, street=actor.street
        )

    return Tokens(token(COORDINATOR), tuple(token(r) for r in REPORTERS))


# --- the clients' tally ----------------------------------------------------------------------


@dataclass
class Tally:
    """Every answer the clients got, kept for the checks. Thread-safe."""

    cases: list[UUID] = field(default_factory=list)  # reports answered 201
    follow_ups: dict[str, UUID] = field(default_factory=dict)  # note -> case, answered 201
    # request id -> the case files an answer 200 disclosed (one for a case read, a page's rows)
    reads: dict[str, frozenset[UUID]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "op status" -> count
    retries: int = 0
    unanswered: int = 0  # no answer (the kill cut the connection): outcome unknown
    faults: list[str] = field(default_factory=list)  # answers no client should ever get
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def acknowledged(self) -> int:
        return len(self.cases) + len(self.follow_ups)

    @property
    def disclosures(self) -> int:
        return sum(len(cases) for cases in self.reads.values())

    def any_case(self, rng: random.Random) -> UUID | None:
        with self.lock:
            return rng.choice(self.cases) if self.cases else None


class Bodies:
    """Valid report bodies for synthetic minors (Faker zh_CN), each minor new: made under a
    lock, since one Faker instance serves every client thread."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.faker = Faker("zh_CN")
        self.faker.seed_instance(seed)
        self.lock = threading.Lock()

    def next(self, village: str) -> dict[str, Any]:
        with self.lock:
            return synthetic_report(self.faker, self.rng, village=village)


class Client:
    """One client thread's HTTP calls, each answer put in the tally. Request ids are 32 hex
    digits the client makes (`tag`, thread, count), so that each read's access event can be
    found by it."""

    def __init__(self, base: str, tokens: Tokens, tally: Tally, tag: int, thread: int) -> None:
        self.http = httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT)
        self.tokens = tokens
        self.tally = tally
        self.tag = tag
        self.thread = thread
        self.count = 0
        self.cut = False  # a request got no answer: the service is gone

    def close(self) -> None:
        self.http.close()

    def request_id(self) -> str:
        self.count += 1
        return f"{self.tag:016x}{self.thread:04x}{self.count:012x}"

    def _send(
        self, op: str, method: str, path: str, token: str, **kw: Any
    ) -> tuple[httpx.Response | None, str]:
        request_id = self.request_id()
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}
        headers.update(kw.pop("headers", {}))
        try:
            answer = self.http.request(method, path, headers=headers, **kw)
        except httpx.TransportError:
            self.cut = True
            with self.tally.lock:
                self.tally.unanswered += 1
            return None, request_id
        with self.tally.lock:
            self.tally.answers[f"{op} {answer.status_code}"] += 1
            if answer.status_code >= 500 and answer.status_code != 503:
                self.tally.faults.append(f"{op} {request_id}: {answer.status_code} {answer.text}")
        return answer, request_id

    def _fault(self, what: str) -> None:
        with self.tally.lock:
            self.tally.faults.append(what)

    def report(self, bodies: Bodies, rng: random.Random) -> UUID | None:
        which = rng.randrange(len(REPORTERS))
        body = bodies.next(REPORTERS[which].unit)
        answer, request_id = self._send(
            "report", "POST", "/v1/cases", self.tokens.reporters[which], json=body
        )
        if answer is None:
            return None
        if answer.status_code == 201:
            case_id = UUID(answer.json()["id"])
            with self.tally.lock:
                self.tally.cases.append(case_id)
            return case_id
        if answer.status_code not in RETRYABLE:
            self._fault(f"report {request_id}: {answer.status_code} {answer.text}")
        return None

    def follow_up(self, case_id: UUID, note: str, *, retry: bool) -> bool:
        """One follow-up with a note unique to it; with `retry`, sent again after a 409 or 503
        (what those answers invite) until it is stored. True once answered 201."""
        body = {"visited_on": local_today().isoformat(), "notes": note}
        while True:
            answer, request_id = self._send(
                "follow_up",
                "POST",
                f"/v1/cases/{case_id}/follow-ups",
                self.tokens.coordinator,
                json=body,
            )
            if answer is None:
                return False
            if answer.status_code == 201:
                with self.tally.lock:
                    self.tally.follow_ups[note] = case_id
                return True
            if answer.status_code not in RETRYABLE:
                self._fault(f"follow_up {request_id}: {answer.status_code} {answer.text}")
                return False
            if not retry:
                return False
            with self.tally.lock:
                self.tally.retries += 1
            time.sleep(float(answer.headers.get("Retry-After", "0")) / 50)

    def read(self, case_id: UUID, *, retry: bool = False) -> bool:
        """The coordinator reads the case file; True when data came back (then its request id
        must have its access event)."""
        while True:
            answer, request_id = self._send(
                "read",
                "GET",
                f"/v1/cases/{case_id}",
                self.tokens.coordinator,
                headers={"X-Purpose-Of-Use": "consultation"},
            )
            if answer is None:
                return False
            if answer.status_code == 200:
                if answer.json().get("id") != str(case_id):
                    self._fault(f"read {request_id}: another case's data")
                with self.tally.lock:
                    self.tally.reads[request_id] = frozenset({case_id})
                return True
            if answer.status_code not in RETRYABLE:
                self._fault(f"read {request_id}: {answer.status_code} {answer.text}")
                return False
            if not retry:
                return False
            with self.tally.lock:
                self.tally.retries += 1

    def ledger_page(self) -> None:
        """The coordinator's ledger, one page of the newest files: each row shown is a
        disclosure, recorded under this request's id."""
        answer, request_id = self._send(
            "ledger",
            "GET",
            "/v1/ledger",
            self.tokens.coordinator,
            params={"per_page": "10"},
            headers={"X-Purpose-Of-Use": "consultation"},
        )
        if answer is None:
            return
        if answer.status_code == 200:
            shown = frozenset(UUID(row["id"]) for row in answer.json()["rows"])
            if shown:
                with self.tally.lock:
                    self.tally.reads[request_id] = shown
        elif answer.status_code not in RETRYABLE:
            self._fault(f"ledger {request_id}: {answer.status_code} {answer.text}")


def mixed_load(
    base: str,
    tokens: Tokens,
    tally: Tally,
    bodies: Bodies,
    *,
    tag: int,
    thread: int,
    seed: int,
    stop: threading.Event,
) -> None:
    """One client: reports, follow-ups, case reads and ledger pages at random (a report while
    there is no case yet) until `stop` or a request goes unanswered (the service is gone);
    every answer in `tally`."""
    rng = random.Random(seed)
    client = Client(base, tokens, tally, tag, thread)
    try:
        while not stop.is_set() and not client.cut:
            case_id = tally.any_case(rng)
            roll = rng.random()
            if case_id is None or roll < 0.3:
                client.report(bodies, rng)
            elif roll < 0.6:
                client.follow_up(case_id, f"回访记录 {tag:x}-{thread}-{client.count}", retry=False)
            elif roll < 0.9:
                client.read(case_id)
            else:
                client.ledger_page()
    finally:
        client.close()


def run_threads(targets: list[Callable[[], None]], timeout: float) -> None:
    """Run each target in a thread of its own; fail if one is still running after `timeout`
    (a deadlock or a request that never ends)."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    assert not stuck, f"{stuck} client threads still running after {timeout} s: a deadlock?"
    assert not errors, errors


# --- the checks ---------------------------------------------------------------------------------


@dataclass
class Checked:
    """What one round of checks verified."""

    commands: int
    reads: int
    events: int


def _wait(condition: Callable[[], bool], seconds: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what()}")
        time.sleep(0.1)


def check_store(application: CaseTrail, tally: Tally, context: str) -> int:
    """Every acknowledged report's case file exists; every acknowledged follow-up's note is in
    its case file exactly once. The number of acknowledged commands verified."""
    notes_by_case: dict[UUID, list[str]] = {}
    for note, case_id in tally.follow_ups.items():
        notes_by_case.setdefault(case_id, []).append(note)
    for case_id in {*tally.cases, *notes_by_case}:
        case: object = application.repository.get(case_id, projector_func=replay)
        assert isinstance(case, Case), f"acknowledged case {case_id} is not stored ({context})"
        stored = Counter(f["notes"] for f in case.follow_ups)
        for note in notes_by_case.get(case_id, ()):
            assert stored[note] == 1, (
                f"acknowledged follow-up {note!r} of case {case_id} is stored "
                f"{stored[note]} times, not once ({context})"
            )
    return tally.acknowledged


def _tables(readmodels: ReadModels) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: recorder.dump(table)
        for recorder in readmodels.recorders.values()
        for table in recorder.view.tables
    }


def check_read_models(
    application: CaseTrail, settings: Settings, store: Store, tally: Tally, context: str
) -> int:
    """The service's read models caught up; every read answered with data has its access event
    in the access log view, by request id; every view equals a rebuild from zero in a
    database of its own. The number of disclosures verified (a page's rows count one each)."""
    config = readmodel_config(settings)
    served = ReadModels(application, config)
    try:
        _wait(
            lambda: all(s.lag == 0 for s in served.status()),
            120,
            lambda: f"the service's read models to catch up: {served.status()} ({context})",
        )
        recorded: dict[str, set[UUID | None]] = {}
        with served.accesses.reading() as db:
            for record in search(db, AccessQuery(kinds=(RecordKind.READ,))):
                recorded.setdefault(record.request_id, set()).add(record.case_id)
        unrecorded = {
            rid: sorted(map(str, cases - recorded.get(rid, set())))
            for rid, cases in tally.reads.items()
            if not cases <= recorded.get(rid, set())
        }
        assert not unrecorded, (
            f"{len(unrecorded)} of {len(tally.reads)} reads answered with data lack access "
            f"events in the access log, e.g. {list(unrecorded.items())[:3]} ({context})"
        )
        rebuilt = ReadModels(
            application,
            ReadModelConfig(
                env=store_environment(store.rebuild_url, None),
                index_key=config.index_key,
                consultation_deadline=config.consultation_deadline,
            ),
        )
        try:
            for name in rebuilt.followers:
                rebuilt.rebuild(name)
            followed, fresh = _tables(served), _tables(rebuilt)
        finally:
            rebuilt.close()
        for table, rows in fresh.items():
            assert followed[table] == rows, (
                f"read model table {table} differs from a rebuild from zero: "
                f"{len(followed[table])} rows followed, {len(rows)} rebuilt ({context})"
            )
    finally:
        served.close()
    return tally.disclosures


def check_everything(service: Service, store: Store, tally: Tally, context: str) -> Checked:
    """All of the module docstring's checks, against the running service's store."""
    assert not tally.faults, f"answers no client should get ({context}): {tally.faults[:5]}"
    application = open_application(service.settings())
    try:
        commands = check_store(application, tally, context)
        reads = check_read_models(application, service.settings(), store, tally, context)
        events = application.recorder.max_notification_id() or 0
    finally:
        application.close()
    cli(service.home, "verify", env=service.env)
    return Checked(commands, reads, events)


def checks_can_fail(service: Service, store: Store, tally: Tally) -> None:
    """The checks are able to fail: a follow-up and a read the service never answered, added
    to what the clients kept, are each caught."""
    case_id = tally.cases[0]
    application = open_application(service.settings())
    try:
        never_sent = Tally(cases=[case_id], follow_ups={"从未发送的回访": case_id})
        with pytest.raises(AssertionError, match="stored 0 times"):
            check_store(application, never_sent, "a forged follow-up")
        never_read = Tally(reads={uuid.uuid4().hex: frozenset({case_id})})
        with pytest.raises(AssertionError, match="lack access events"):
            check_read_models(application, service.settings(), store, never_read, "a forged read")
    finally:
        application.close()
