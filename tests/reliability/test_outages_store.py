"""The database away, read-only or locked under a running service (issue 22, "Outages").

Each test runs the real service (`casetrail serve` in its own process) and takes its database
away from under it, then gives it back, without restarting the service:

- PostgreSQL cut off: the service reaches the server through a TCP proxy (`faults.TcpProxy`)
  that is cut (every connection broken, new ones refused) and restored on the same port;
- PostgreSQL read-only: the service's own role is made read-only
  (`default_transaction_read_only`) and its connections terminated, as in a fail-over to a
  standby; then back;
- SQLite locked: another process holds a write transaction on the events' file.

What must hold: while the database is away every read and command is answered 503
problem+json naming the cause (`store-unavailable`, `store-read-only`, `store-busy`), within the
client's timeout (no hang: `gateway.store.outages.OutageGate`), never with data; `/readyz`
says not ready; once it is back the same requests succeed, the service not restarted; and every
read answered with data has its `CaseAccessed` in the store, found by its request id.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from domain.access import CaseAccessed
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.settings import Settings
from tests.conftest import PG_DSN, require_postgres
from tests.integration.live_service import LiveService
from tests.integration.planted import planted_case
from tests.reliability.faults import TcpProxy

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
# A request the service leaves hanging fails the test: the gate answers within a few seconds.
CLIENT_TIMEOUT = 30.0
PROBLEM = "application/problem+json"


@dataclass
class Client:
    """The service's clients: a reporter's commands and a coordinator's reads, each answer kept."""

    service: LiveService
    case_id: str = ""
    reads: list[httpx.Response] = field(default_factory=list)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=CLIENT_TIMEOUT))

    def __post_init__(self) -> None:
        self.reporter = self.service.headers(self.service.token("reporter", VILLAGE))
        self.coordinator = self.service.headers(
            self.service.token("coordinator", OFFICE), "consultation"
        )

    def report(self) -> httpx.Response:
        body = planted_case(VILLAGE).body
        return self.http.post(f"{self.service.base}/v1/cases", json=body, headers=self.reporter)

    def read(self) -> httpx.Response:
        url = f"{self.service.base}/v1/cases/{self.case_id}"
        answer = self.http.get(url, headers=self.coordinator)
        self.reads.append(answer)
        return answer

    def ledger(self) -> httpx.Response:
        answer = self.http.get(f"{self.service.base}/v1/ledger", headers=self.coordinator)
        self.reads.append(answer)
        return answer

    def ready(self) -> httpx.Response:
        return self.http.get(f"{self.service.base}/readyz")


def refused(answer: httpx.Response, code: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    assert body["type"] == f"urn:casetrail:problem:{code}", body
    assert "rows" not in body and "minor" not in body
    assert answer.headers.get("Retry-After")


def until_served(step: Callable[[], httpx.Response], timeout: float = 60) -> httpx.Response:
    """The service recovers by itself: `step` succeeds within `timeout`, no restart."""
    deadline = time.monotonic() + timeout
    while True:
        answer = step()
        if answer.status_code < 300 or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def every_disclosure_recorded(settings: Settings, client: Client) -> int:
    """Every read that returned data has its access event, by request id; their number."""
    # A ledger page without rows discloses nothing, and records nothing.
    served = {
        a.headers["X-Request-ID"]
        for a in client.reads
        if a.status_code == 200 and a.json().get("rows", True)
    }
    application = open_application(settings)
    try:
        recorded = {
            event.request_id
            for notification in application.notifications()
            if isinstance(event := application.mapper.to_domain_event(notification), CaseAccessed)
        }
    finally:
        application.close()
    assert served, "no read was served"
    assert served <= recorded, sorted(served - recorded)
    return len(served)


def wait_listed(client: Client) -> None:
    """The ledger lists the case once its read model has it: a listing then discloses, and must
    be recorded (an empty page records nothing and is no test)."""
    deadline = time.monotonic() + 60
    while not (listed := client.ledger()).json().get("rows"):
        assert time.monotonic() < deadline, listed.text
        time.sleep(0.3)


def outage_round(
    client: Client,
    fault_code: str,
    away: Callable[[], None],
    back: Callable[[], None],
    *,
    not_ready: bool = True,
) -> None:
    """Data served; the fault; refused (reads, ledger, a command) and not ready; back; served."""
    created = client.report()
    assert created.status_code == 201, created.text
    client.case_id = created.json()["id"]
    assert client.read().status_code == 200
    wait_listed(client)

    away()
    refused(client.read(), fault_code)
    refused(client.ledger(), fault_code)
    refused(client.report(), fault_code)
    ready = client.ready()  # answered, not hung, in every case
    if not_ready:
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"]["ok"] is False

    back()
    assert until_served(client.read).status_code == 200
    assert until_served(client.ledger).status_code == 200
    assert until_served(client.report).status_code == 201


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture
def pg_role_schema() -> Iterator[tuple[str, str]]:
    """A role of its own (so that making it read-only touches no other test) owning a schema."""
    require_postgres()
    suffix = uuid.uuid4().hex[:10]
    role, schema = f"t_outage_{suffix}", f"t_outage_{suffix}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
    try:
        yield role, schema
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
            conn.execute(f"DROP ROLE {role}")


def start(home: Path, url: str) -> LiveService:
    keyring.init_keys(home / "keys")
    return LiveService(home, home.parent / "service.log", env={"CASETRAIL_DATABASE_URL": url})


@pytest.mark.postgres
def test_postgres_cut_off_refuses_at_once_and_recovers_without_restart(
    tmp_path: Path, pg_role_schema: tuple[str, str]
) -> None:
    role, schema = pg_role_schema
    proxy = TcpProxy(("127.0.0.1", 5432))
    url = f"postgresql://{role}@127.0.0.1:{proxy.port}/test?schema={schema}"
    service = start(tmp_path / "home", url).start(timeout=90)
    try:
        client = Client(service)
        outage_round(client, "store-unavailable", proxy.cut, proxy.restore)
        pid = service.process.pid if service.process else None
        assert service.process is not None and service.process.poll() is None
    finally:
        service.stop()
        proxy.cut()
    assert pid is not None
    direct = f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}"
    settings = Settings.from_env(
        {"CASETRAIL_HOME": str(tmp_path / "home"), "CASETRAIL_DATABASE_URL": direct}
    )
    assert every_disclosure_recorded(settings, client) >= 2  # a case read before, one after
    assert "store_failed" in service.logs()


@pytest.mark.postgres
def test_postgres_read_only_refuses_reads_and_recovers_without_restart(
    tmp_path: Path, pg_role_schema: tuple[str, str]
) -> None:
    role, schema = pg_role_schema
    url = f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}"
    service = start(tmp_path / "home", url).start(timeout=90)

    def fail_over(read_only: bool) -> None:
        # As a fail-over to a standby and back: the role's sessions end, new ones read-only.
        setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {role} {setting}")
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )

    try:
        client = Client(service)
        outage_round(client, "store-read-only", lambda: fail_over(True), lambda: fail_over(False))
        assert service.process is not None and service.process.poll() is None
    finally:
        service.stop()
    settings = Settings.from_env(
        {"CASETRAIL_HOME": str(tmp_path / "home"), "CASETRAIL_DATABASE_URL": url}
    )
    assert every_disclosure_recorded(settings, client) >= 2  # a case read before, one after


# --- SQLite ----------------------------------------------------------------------------


def test_sqlite_locked_by_another_writer_refuses_reads_and_recovers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    service = LiveService(home, tmp_path / "service.log").start(timeout=90)
    holder: list[sqlite3.Connection] = []

    def lock() -> None:
        # Another process's writer (here, a connection of this one) holds the write lock.
        connection = sqlite3.connect(home / "casetrail.sqlite", isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        holder.append(connection)

    def unlock() -> None:
        connection = holder.pop()
        connection.execute("ROLLBACK")
        connection.close()

    try:
        client = Client(service)
        # A held lock is not a readiness failure (the file stays writable, the holder lets go).
        outage_round(client, "store-busy", lock, unlock, not_ready=False)
        assert service.process is not None and service.process.poll() is None
    finally:
        while holder:
            unlock()
        service.stop()
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    assert every_disclosure_recorded(settings, client) >= 2  # a case read before, one after


# --- the causes, named -----------------------------------------------------------------------


def test_sqlite_errors_are_named_by_their_cause_wrapped_or_not(tmp_path: Path) -> None:
    """Real SQLite failures (a page limit standing for a full disk, a read-only connection, a
    held lock), raw and as the library wraps them (`raise ... from`), each get their code."""
    from eventsourcing.persistence import OperationalError  # noqa: PLC0415 (only here)

    from gateway.store.outages import StoreFault, fault_of  # noqa: PLC0415 (only here)

    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x BLOB)")
    found: dict[str, StoreFault] = {}

    def caught(name: str, statement: Callable[[], object]) -> None:
        try:
            statement()
        except sqlite3.Error as exc:
            found[name] = fault_of(exc)
            try:
                raise OperationalError(exc) from exc
            except OperationalError as wrapped:
                assert fault_of(wrapped) is found[name]
        else:
            pytest.fail(f"{name}: no error")

    full = sqlite3.connect(path)
    full.execute("PRAGMA max_page_count = 2")
    caught("full", lambda: full.execute("INSERT INTO t VALUES (zeroblob(100000))"))
    full.close()
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    caught("read_only", lambda: read_only.execute("INSERT INTO t VALUES (1)"))
    read_only.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    caught("busy", lambda: other.execute("BEGIN IMMEDIATE"))
    holder.execute("ROLLBACK")
    holder.close()
    other.close()
    assert found == {
        "full": StoreFault.FULL,
        "read_only": StoreFault.READ_ONLY,
        "busy": StoreFault.BUSY,
    }
    assert fault_of(RuntimeError("anything else")) is StoreFault.UNAVAILABLE


# --- started while away (issue 21's chaos run) -----------------------------------------------
#
# An API process that started while its read models' database refused connections came up
# without them and answered 503 to every ledger request until it was restarted. Now it opens
# them in the background with backoff (`gateway.bootstrap.Service`): here the events' store
# answers and the read models' does not when the service starts; once it does, the ledger
# serves, the process never restarted.

# The backoff's longest wait, the attempt itself and the followers' catching up, on a loaded
# machine: well under this.
RECOVERY_SECONDS = 60.0


def started_while_away(service: LiveService, back: Callable[[], None]) -> None:
    """Started with the read models away: the ledger refused as "opening", /readyz not ready,
    cases served; then back: the ledger lists the case, /readyz's projections check passes."""
    client = Client(service)
    created = client.report()
    assert created.status_code == 201, created.text
    client.case_id = created.json()["id"]
    assert client.read().status_code == 200  # case reads do not need the read models

    opening = client.ledger()
    refused(opening, "read-models-opening")
    assert "retry" in opening.json()["detail"]
    ready = client.ready()
    assert ready.status_code == 503
    assert ready.json()["checks"]["projections"]["ok"] is False
    assert client.ready().json()["checks"]["store"]["ok"] is True  # the events' store answers
    # Back only after an attempt to open them has failed (a second after the start, then less
    # and less often): what is proven is the retry, not a first attempt that happened to come
    # after the store's return.
    deadline = time.monotonic() + RECOVERY_SECONDS
    while "projections_still_unavailable" not in service.logs():
        assert time.monotonic() < deadline, "no failed attempt to open the read models"
        time.sleep(0.2)

    back()
    answer = until_served(client.ledger, timeout=RECOVERY_SECONDS)
    assert answer.status_code == 200, answer.text
    wait_listed(client)  # the followers run too: the case reported while away is listed
    deadline = time.monotonic() + RECOVERY_SECONDS
    while not client.ready().json()["checks"]["projections"]["ok"]:
        assert time.monotonic() < deadline, client.ready().text
        time.sleep(0.5)
    assert service.process is not None and service.process.poll() is None
    logs = service.logs()
    assert "projections_still_unavailable" in logs and "projections_opened" in logs


@pytest.mark.postgres
def test_postgres_started_while_read_models_away_opens_them_without_restart(
    tmp_path: Path, pg_role_schema: tuple[str, str]
) -> None:
    role, schema = pg_role_schema
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.cut()  # refused from the start: nothing listens on the proxy's port
    events = f"postgresql://{role}@127.0.0.1:5432/test?schema={schema}"
    readmodels = f"postgresql://{role}@127.0.0.1:{proxy.port}/test?schema={schema}"
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    env = {"CASETRAIL_DATABASE_URL": events, "CASETRAIL_READMODEL_URL": readmodels}
    service = LiveService(home, tmp_path / "service.log", env=env).start(timeout=90)
    try:
        started_while_away(service, proxy.restore)
    finally:
        service.stop()
        proxy.cut()


def test_sqlite_started_while_read_models_locked_opens_them_without_restart(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    # Another writer holds the read models' file from before the start to the end of `back`.
    holder = sqlite3.connect(home / "readmodels.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    held = [holder]

    def unlock() -> None:
        while held:
            connection = held.pop()
            connection.execute("ROLLBACK")
            connection.close()

    service = LiveService(home, tmp_path / "service.log").start(timeout=90)
    try:
        started_while_away(service, unlock)
    finally:
        unlock()
        service.stop()
