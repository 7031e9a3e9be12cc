"""What `/readyz` and `/metrics` report beyond this process: the store, the broker, the followers.

Figures only: counts of events, lags, ages in seconds, booleans. No case content, no person, no
case id: the read models are asked for their positions and heartbeats, the store for its
largest position, the evidence log for its size and its newest checkpoint's time. Every figure
comes from the store, so it is the same whichever worker answers, and it is truthful when the
followers run in another process (`casetrail projections run`, or `casetrail serve`'s child):
a view's `running` is its follower's heartbeat (`projections.follower.HEARTBEAT_SECONDS`), the
relay's and the evidence log's lag are their durable positions.

Readiness (`Readiness.checks`), each check `ok` or not:
- `store`: the store answers, and can take writes (SQLite: the database file and its directory
  are writable by this process; PostgreSQL: not a read-only standby nor a read-only
  transaction, and this role may INSERT into the events table).
- `broker`: a TCP connection to one of the broker's servers (`CASETRAIL_NATS_URL`, or the
  embedded one) opens within a second.
- `projections`: this process has its read models open (`"error": "opening"` while it still
  tries to, after a start while the store was away), and every read model's follower runs
  (here or elsewhere) and lags at most `CASETRAIL_READY_MAX_LAG` events (default 1000).
- `relay`: the relay runs (its heartbeat is fresh) and its position lags at most as much.
- `evidence`: the Merkle log's position lags at most as much.
- `checkpoint`: events logged but not yet under a signed checkpoint wait at most
  `CASETRAIL_READY_MAX_CHECKPOINT_AGE` seconds (default 600) since the newest checkpoint.
With `CASETRAIL_READY_MESSAGING=ignore` (a layout served with `--no-messaging`) the broker and
relay checks are not made. Proven by tests/integration/test_observability.py.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from domain.application import CaseTrail
from gateway.evidence.maintainer import Evidence, signed_at
from gateway.messaging.relay import RELAY_NAME
from gateway.settings import Settings
from projections.follower import (
    AnyViewRecorder,
    Batch,
    Db,
    Dialect,
    PostgresViewRecorder,
    SQLiteViewRecorder,
    Status,
    View,
    heartbeat,
)
from projections.readmodels import ReadModels

ENV_MAX_LAG: Final = "CASETRAIL_READY_MAX_LAG"
ENV_MAX_CHECKPOINT_AGE: Final = "CASETRAIL_READY_MAX_CHECKPOINT_AGE"
ENV_MESSAGING: Final = "CASETRAIL_READY_MESSAGING"
DEFAULT_MAX_LAG: Final = 1000
DEFAULT_MAX_CHECKPOINT_AGE: Final = 600.0
MERKLE_NAME: Final = "casetrail_merkle"  # projections.evidence.log.MerkleView.name
BROKER_TIMEOUT_SECONDS: Final = 1.0
_NATS_PORT: Final = 4222


@dataclass(frozen=True)
class Thresholds:
    max_lag: int = DEFAULT_MAX_LAG
    max_checkpoint_age: float = DEFAULT_MAX_CHECKPOINT_AGE
    messaging: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """The thresholds the settings give (`CASETRAIL_READY_*`, gateway/settings.py)."""
        return cls(
            max_lag=settings.ready_max_lag,
            max_checkpoint_age=settings.ready_max_checkpoint_age,
            messaging=settings.ready_messaging != "ignore",
        )


class _Tracking(View):
    """Only a follower's tracking table, to read its position: no rows, nothing created."""

    tables: ClassVar[tuple[str, ...]] = ()

    def create_statements(self, dialect: Dialect) -> list[str]:
        return []

    def apply(self, db: Db, batch: Batch) -> None:
        return None


def _tracking_view(name: str) -> View:
    view: View = type(f"Tracking_{name}", (_Tracking,), {"name": name})()
    return view


def _tracking(application: CaseTrail, name: str) -> AnyViewRecorder | None:
    """A recorder of follower `name`'s position in the events' database (never creates it)."""
    datastore = getattr(application.factory, "datastore", None)
    if isinstance(datastore, SQLiteDatastore):
        return SQLiteViewRecorder(datastore, view=_tracking_view(name))
    if isinstance(datastore, PostgresDatastore):
        return PostgresViewRecorder(datastore, view=_tracking_view(name))
    return None


@dataclass
class Check:
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)


class Probes:
    """The figures, read from the store at each call (a scrape, a readiness probe)."""

    def __init__(
        self,
        application: CaseTrail,
        readmodels: ReadModels | None,
        evidence: Evidence | None,
        settings: Settings,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.application = application
        self.readmodels = readmodels
        self.evidence = evidence
        self.settings = settings
        self.thresholds = thresholds or Thresholds.from_settings(settings)
        self._relay = _tracking(application, RELAY_NAME)
        self._merkle = _tracking(application, MERKLE_NAME)

    # --- figures ---

    def head(self) -> int:
        return self.application.recorder.max_notification_id() or 0

    def projections(self) -> list[Status]:
        return [] if self.readmodels is None else self.readmodels.status()

    def _position(self, recorder: AnyViewRecorder | None) -> int | None:
        """A follower's position; None when it has never run (no tracking table yet)."""
        if recorder is None:
            return None
        try:
            return recorder.position(self.application.name)
        except Exception:  # the table does not exist until the follower first runs
            return None

    def relay_backlog(self, head: int) -> int | None:
        position = self._position(self._relay)
        return None if position is None else max(0, head - position)

    def relay_running(self) -> bool:
        """The relay's heartbeat is fresh (it runs in `casetrail serve`'s child or its own
        `casetrail relay run`, never in a worker)."""
        if self._relay is None:
            return False
        try:
            found = heartbeat(self._relay)
        except Exception:  # the table does not exist until the relay first runs
            return False
        return found is not None and found.fresh()

    def evidence_lag(self, head: int) -> int | None:
        position = self._position(self._merkle)
        return None if position is None else max(0, head - position)

    def checkpoint(self) -> tuple[float | None, int]:
        """(seconds since the newest signed checkpoint or None, events logged after it)."""
        if self.evidence is None:
            return None, 0
        size = self.evidence.merkle.size()
        latest = self.evidence.checkpointer.latest()
        if latest is None:
            return None, size
        return max(0.0, time.time() - signed_at(latest)), max(0, size - latest.size)

    def undelivered_notices(self) -> int:
        return len(self.application.undeliverable_notices())

    def store_writable(self) -> bool:
        datastore = getattr(self.application.factory, "datastore", None)
        if isinstance(datastore, SQLiteDatastore):
            path = str(datastore.pool.db_name)
            if datastore.pool.is_sqlite_memory_mode:
                return True
            if path.startswith("file:"):
                path = urlsplit(path).path
            directory = os.path.dirname(os.path.abspath(path))
            return os.access(path, os.W_OK) and os.access(directory, os.W_OK)
        if isinstance(datastore, PostgresDatastore):
            events = str(getattr(self.application.recorder, "events_table_name", "stored_events"))
            table = f'"{datastore.schema}"."{events}"'
            with datastore.transaction(commit=False) as cursor:
                cursor.execute(
                    "SELECT pg_is_in_recovery() AS standby, "
                    "current_setting('transaction_read_only') AS read_only, "
                    "has_table_privilege(%s, 'INSERT') AS may_insert",
                    (table,),
                )
                row = cursor.fetchone()
            return bool(
                row and not row["standby"] and row["read_only"] == "off" and row["may_insert"]
            )
        return False

    def broker_reachable(self) -> tuple[int, int]:
        """(servers that accept a TCP connection, servers configured)."""
        servers = self.settings.nats.servers
        reachable = 0
        for server in servers:
            address = urlsplit(server if "://" in server else f"nats://{server}")
            try:
                with socket.create_connection(
                    (address.hostname or "127.0.0.1", address.port or _NATS_PORT),
                    timeout=BROKER_TIMEOUT_SECONDS,
                ):
                    reachable += 1
            except OSError:
                continue
        return reachable, len(servers)

    # --- readiness ---

    def checks(self) -> dict[str, Check]:
        """Every readiness check; a check that cannot be made (its query failed) fails."""
        limit = self.thresholds.max_lag
        found: dict[str, Check] = {}
        try:
            head = self.head()
            found["store"] = Check(self.store_writable(), {"position": head})
        except Exception:  # the store does not answer: every check below fails
            head = None
            found["store"] = Check(False, {"error": "unavailable"})
        if self.thresholds.messaging:
            reachable, configured = self.broker_reachable()
            found["broker"] = Check(reachable > 0, {"reachable": reachable, "servers": configured})
        found["projections"] = self._guarded(self._projections_check, limit)
        if head is not None:
            if self.thresholds.messaging:
                backlog = self.relay_backlog(head)
                running = self.relay_running()
                found["relay"] = Check(
                    running and backlog is not None and backlog <= limit,
                    {"running": running, "lag": backlog},
                )
            lag = self.evidence_lag(head)
            found["evidence"] = Check(lag is not None and lag <= limit, {"lag": lag})
        found["checkpoint"] = self._guarded(self._checkpoint_check)
        return found

    def _guarded(self, check: Any, *args: Any) -> Check:
        try:
            result: Check = check(*args)
        except Exception:  # a figure that cannot be read is not ready
            return Check(False, {"error": "unavailable"})
        return result

    def _projections_check(self, limit: int) -> Check:
        if self.readmodels is None:
            # Not open yet: the API opens them in the background (gateway.bootstrap.Service).
            return Check(False, {"error": "opening"})
        views = self.projections()
        stopped = sorted(v.name for v in views if not v.running)
        worst = max((v.lag for v in views), default=0)
        return Check(
            not stopped and worst <= limit,
            {"max_lag": worst, "running": len(views) - len(stopped), "stopped": stopped},
        )

    def _checkpoint_check(self) -> Check:
        age, uncovered = self.checkpoint()
        limit = self.thresholds.max_checkpoint_age
        # No checkpoint while events are logged: the maintainer signs the first at its first
        # pass, so this lasts a moment unless it does not run.
        waiting_too_long = uncovered > 0 and (age is None or age > limit)
        return Check(
            not waiting_too_long,
            {"age_seconds": None if age is None else round(age, 1), "uncovered": uncovered},
        )
