"""The relay: follows the event store and publishes sealed notices to JetStream.

The store's own ordered log is the outbox. The relay reads it from its durable position (a
tracking row in the events' own database, written by `projections.follower`'s recorder, the
library's `TrackingRecorder`), turns the events that concern units into sealed messages
(`gateway.messaging.sealing`), publishes them with `Nats-Msg-Id` set to the message id derived
from the
event id and the recipient, waits until JetStream has acknowledged every one of them, and only
then moves its position past the batch. So:

- a crash (even SIGKILL) between publishing and recording the position re-publishes the batch,
  and the stream's duplicate window drops the copies: each message is stored once;
- while the broker is down nothing is acknowledged and the position stays; the API keeps taking
  commands (it never talks to the broker), and the relay catches up when the broker returns.

Which events become messages (`Router`):

| event | to | kind |
|---|---|---|
| `Case.ClueReported` | the street's 街道综治办; `high`/`urgent`: also 街道分管领导 | `new_clue` |
| `Case.UnitAssigned` | the assigned unit | `assignment` |
| `Case.Escalated` | street's 街道综治办, type named; `county`: the county's | `case_escalated` |
| `Case.Transferred` (to another street) | the receiving street's 街道综治办 | `case_transferred` |
| `Case.AssignmentDeclined`, `...ResultReported` | the office | `assignment_declined`, `_result` |
| `DueDateReminder` (stored by scans before issue 14) | the assigned unit | `due_date_reminder` |
| a missed-deadline fact (`domain.deadlines`) | the unit responsible | `deadline_missed` |
| `DeadlineEscalated` | the street's `street_supervision` units | `deadline_escalated` |
| `AccessDenied`, `BreakGlassAccessed` | every `compliance_audit` unit | `compliance_alert` |
| `Finding.FindingRaised` (issue 15) | every `compliance_audit` unit | `finding_raised` |
| a stored signed checkpoint (its own table) | every registered unit | `checkpoint` |

The deadline facts' notices are `gateway.messaging.scheduler.deadline_notices`.

**Notice facts** (`domain.notices`): for every notice JetStream acknowledged, the relay stores a
`NoticePublished` (unit, kind, case, assignment, source event; timestamped after the acks), and
for every notice it could not address a `NoticeUndeliverable` (a unit that is not registered:
`unit_not_registered`; no registered unit of the type a rule names: `no_<type>`), both after the
acks and before it records its position past the batch, in one transaction. Their ids derive
from the message id (or the source event, kind, target and reason), so a batch published again
after a crash is stored again and refused by the store: each fact is stored once (a refused
transaction is retried event by event, each copy already stored skipped). The relay reads
neither topic, so facts never cause notices. Checkpoint broadcasts get no facts: they concern
no case, the checkpoint table is their record, and a unit that missed one fetches it over the
API (`docs/evidence.md`). Proven by `tests/messaging/test_outage.py` (a relay SIGKILLed
mid-burst, and one whose position is lost, store each fact once), `test_notice_facts.py` (alerts,
receipts, undeliverable facts end to end) and `test_routing_facts.py` (who gets what).

Checkpoints follow the same outbox rule with a position of their own (`nats_checkpoint_relay`,
the checkpoint seq last published): each loop the relay reads the stored checkpoints past it,
checks each one's signature, broadcasts it to every registered unit (body: the checkpoint as
`casetrail checkpoint export` writes one; message id from `checkpoint/<seq>` and the recipient),
and moves the position only once JetStream has acknowledged every copy. Both go through one
path, `Relay._publish_then_record`; the notices' batches are read by the generic follower
(`projections.follower.Follower.next_batch`), whose tracking table holds both positions.
Proven over a real nats-server by `tests/messaging/` (`test_outage.py`: relay SIGKILL and broker
outage during a burst; `test_checkpoints.py`).

When the relay looks (`relay_waker`): at once after a commit, not on a timer. On PostgreSQL it
LISTENs on the store's channel (the library's insert function sends NOTIFY at every commit of
events), on a connection opened before its first look, so a commit between a look and the
wait is not missed. On SQLite the relay is another process than the API (a supervised child of
`casetrail serve`), so no in-process signal can reach it, and SQLite has no cross-process
notification: it watches `PRAGMA data_version` on a connection of its own that never writes, a
counter in the WAL's shared memory that changes whenever another connection commits (about 5 µs
a read), read every `SQLITE_WATCH_SECONDS` for a moment after inotify reports a write to the
store's files (on Linux; elsewhere all the time), and reads the log only when it changed
(`SqliteCommitWaker`). Either way the relay also
looks every `RelayOptions.poll_seconds` (the fallback, 1 s: a lost LISTEN connection, a store
where neither applies) and at most once per `RelayOptions.gather_seconds` (5 ms), so that a
stream of small commits (group-committed reads) costs at most 200 looks a second.
`RelayStats.woken_by_commit` / `woken_by_timer` count why it looked
(`tests/messaging/test_relay_wakeup.py`, on both stores); the latency it gives is measured
against raw JetStream publish-to-fetch by `bench/notice_latency.py`.

The stream denies deletes and purges (`ensure_stream`; a stream made before is updated at
start, which the server allows in that direction only): a notice leaves it only by age
(`tests/messaging/test_stream_policy.py`).

On a cluster (`CASETRAIL_NATS_URL` lists the nodes, the stream has `CASETRAIL_NATS_REPLICAS`
replicas) the client is on another node within milliseconds of losing its own; the acks the
relay awaited on the lost connection never come, so it gives up waiting at once and publishes
the batch again (the stream drops what it already took), and while the stream elects a leader
(`NoStreamResponseError`) it looks again at least every `_ELECTION_BACKOFF`. Proven with three
nodes and SIGKILL by `tests/messaging/test_cluster.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import select
import sqlite3
import struct
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol
from uuid import UUID

import nats
import nats.errors
import nats.js.errors
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, MapperDeserialisationError, PersistenceError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteFactory
from eventsourcing.utils import get_topic
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from domain.access import AccessDenied, BreakGlassAccessed
from domain.application import CaseTrail, replay
from domain.case import Case
from domain.compliance.findings import Finding
from domain.deadlines import FACT_TOPICS, DeadlineEscalated, DeadlineFact
from domain.notices import (
    DueDateReminder,
    NoticeUndeliverable,
    notice_published,
    notice_undeliverable,
)
from domain.retention import DataErased
from domain.taxonomy import RiskLevel, UnitType
from domain.units import COMPLIANCE_AUDIT, Unit
from gateway.compliance.evaluator import ComplianceEvaluator
from gateway.logs import get_logger
from gateway.messaging.broker import (
    NatsSettings,
    close_connection,
    quiet_asyncio_tls_notes,
    tls_context,
)
from gateway.messaging.broker_config import STREAM, SUBJECT_ROOT, NatsLayout, UnitAddress
from gateway.messaging.retention_run import RetentionRun
from gateway.messaging.scheduler import (
    ESCALATED_KIND,
    MISSED_KIND,
    DeadlineScheduler,
    deadline_notices,
)
from gateway.messaging.sealing import (
    derive_key,
    event_id,
    message_id,
    public_key_from_text,
    seal,
)
from gateway.store.horizon import settled_horizon
from projections.evidence.checkpoints import Checkpoint, CheckpointStore
from projections.follower import (
    HEARTBEAT_SECONDS,
    START,
    AnyViewRecorder,
    Batch,
    Dialect,
    Follower,
    Horizon,
    PositionMoved,
    PostgresWaker,
    View,
    beat,
    horizon_of,
    view_recorder,
)

log = get_logger("casetrail.relay")

RELAY_NAME: Final = "nats_relay"
CHECKPOINT_RELAY_NAME: Final = "nats_checkpoint_relay"
CHECKPOINT_KIND: Final = "checkpoint"
MESSAGE_ID_HEADER: Final = "Nats-Msg-Id"
DAY_SECONDS: Final = 24 * 3600
# A re-published message is dropped by the stream within this window. It covers any restart
# of the relay within a day of a crash; the unit client also drops a message id it holds.
DUPLICATE_WINDOW_SECONDS: Final = DAY_SECONDS
MAX_AGE_SECONDS: Final = 30 * DAY_SECONDS
_MAX_BACKOFF: Final = 10.0
# The longest wait while a cluster's stream has no leader: an election takes seconds, and a
# publish without a leader is refused at once (no responders), so looking often costs nothing.
_ELECTION_BACKOFF: Final = 1.0

FINDING_RAISED_KIND: Final = "finding_raised"
RELAY_TOPICS: Final = tuple(
    get_topic(cls)
    for cls in (
        Case.ClueReported,  # type: ignore[attr-defined]
        Case.UnitAssigned,  # type: ignore[attr-defined]
        Case.Escalated,  # type: ignore[attr-defined]
        Case.Transferred,  # type: ignore[attr-defined]
        Case.AssignmentDeclined,  # type: ignore[attr-defined]
        Case.AssignmentResultReported,  # type: ignore[attr-defined]
        DueDateReminder,
        AccessDenied,
        BreakGlassAccessed,
        Unit.UnitRegistered,  # type: ignore[attr-defined]
        Unit.UnitKeyRotated,  # type: ignore[attr-defined]
        Finding.FindingRaised,  # type: ignore[attr-defined]
    )
)


class RelayView(View):
    """The relay's position only: it has no rows. The messages are published before the batch
    is handed over, so `apply` has nothing left to do but let the position be recorded."""

    name: ClassVar[str] = RELAY_NAME
    tables: ClassVar[tuple[str, ...]] = ()
    topics: ClassVar[tuple[str, ...]] = RELAY_TOPICS + FACT_TOPICS

    def create_statements(self, dialect: Dialect) -> list[str]:
        return []

    def apply(self, db: Any, batch: Batch) -> None:
        return None


class CheckpointRelayView(View):
    """The checkpoint relay's position: the seq of the last checkpoint published (not a
    notification id; the tracking table only holds a number). No rows, as `RelayView`."""

    name: ClassVar[str] = CHECKPOINT_RELAY_NAME
    tables: ClassVar[tuple[str, ...]] = ()

    def create_statements(self, dialect: Dialect) -> list[str]:
        return []

    def apply(self, db: Any, batch: Batch) -> None:
        return None


def relay_recorder(application: Application[Any], view: View | None = None) -> AnyViewRecorder:
    """The relay's tracking table, in the events' own database: the position is kept with the
    events it points into (read models may be deleted and rebuilt; the relay's position not)."""
    factory = application.factory
    if not isinstance(factory, SQLiteFactory | PostgresFactory):
        raise TypeError("the relay needs the SQLite or PostgreSQL event store")
    return view_recorder(factory.datastore, view or RelayView())


def checkpoint_recorder(application: Application[Any]) -> AnyViewRecorder:
    """Where the relay records the last checkpoint seq it has published to units."""
    return relay_recorder(application, CheckpointRelayView())


def create_relay_tables(application: CaseTrail) -> None:
    """The relay's tables and position rows, made as `Relay` makes them when it starts: for
    `casetrail store init`, run as the database owner, which holds no signing key
    (`gateway.bootstrap.prepare_store`)."""
    Follower(application, relay_recorder(application), horizon=horizon_of(application))
    Follower(application, checkpoint_recorder(application), horizon=horizon_of(application))
    DeadlineScheduler(application)
    ComplianceEvaluator(application)


def checkpoint_event(seq: int) -> str:
    """The event id a checkpoint's message ids derive from (never a stream/version id)."""
    return f"checkpoint/{seq}"


# --- who gets what ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    unit_id: str
    type: str
    street: str
    address: UnitAddress
    sealing_key: str

    @classmethod
    def of(cls, unit: Unit) -> Recipient:
        return cls(
            unit_id=unit.unit_id,
            type=unit.type,
            street=unit.street,
            address=UnitAddress(unit.nats_user, unit.street_token),
            sealing_key=unit.sealing_key,
        )


@dataclass(frozen=True)
class Outgoing:
    recipient: Recipient
    kind: str
    event: str  # the event id (stream/version): the message id derives from it
    issued_at: str
    body: dict[str, Any]
    # For its `NoticePublished` fact: the case (None: no case) and assignment it is about, and
    # whether it gets one at all (checkpoint broadcasts do not).
    case_id: UUID | None = None
    assignment_id: str | None = None
    fact: bool = True


@dataclass
class Routed:
    """What one event causes: the notices to send, and the notices that cannot be sent."""

    outgoing: list[Outgoing]
    undeliverable: list[NoticeUndeliverable]


# Clues at these risk levels also alert the street's 街道分管领导 (`street_supervision` unit).
SUPERVISOR_ALERT_RISKS: Final = frozenset({RiskLevel.HIGH.value, RiskLevel.URGENT.value})
NEW_CLUE_KIND: Final = "new_clue"
TRANSFERRED_KIND: Final = "case_transferred"
# A unit's answer to its assignment, to the coordination office (issue 14).
DECLINED_KIND: Final = "assignment_declined"
RESULT_KIND: Final = "assignment_result"


class Directory:
    """The registered units, as the relay knows them; refreshed as unit events pass by."""

    def __init__(self, application: CaseTrail) -> None:
        self.application = application
        self._units: dict[str, Recipient] = {}

    def load(self) -> None:
        self._units = {u.unit_id: Recipient.of(u) for u in self.application.units()}

    def refresh(self, unit_id: str) -> Recipient:
        found = Recipient.of(self.application.unit(unit_id))
        self._units[unit_id] = found
        return found

    def get(self, unit_id: str) -> Recipient | None:
        return self._units.get(unit_id)

    def where(self, *, type: str, street: str | None = None) -> list[Recipient]:
        return sorted(
            (
                r
                for r in self._units.values()
                if r.type == type and (street is None or r.street == street)
            ),
            key=lambda r: r.unit_id,
        )

    def all(self) -> list[Recipient]:
        return sorted(self._units.values(), key=lambda r: r.unit_id)


class Router:
    """Turns one stored event into the messages it causes (none for most events), and the
    notices it should cause but cannot (no registered unit to take them)."""

    def __init__(self, application: CaseTrail, directory: Directory) -> None:
        self.application = application
        self.directory = directory

    def route(self, event: Any) -> list[Outgoing]:
        return self.routed(event).outgoing

    def routed(self, event: Any) -> Routed:
        found = Routed([], [])
        ident = event_id(event.originator_id, event.originator_version)
        at = event.timestamp.isoformat()
        if isinstance(event, Case.ClueReported):  # type: ignore[attr-defined]
            self._new_clue(found, event, ident, at)
        elif isinstance(event, Case.UnitAssigned):  # type: ignore[attr-defined]
            body: dict[str, Any] = {
                "assignment": {
                    "id": event.assignment_id,
                    "case_ref": str(event.originator_id),
                    "function": event.function,
                    "task": event.task,
                    "due_on": event.due_on,
                    "assigned_at": at,
                }
            }
            self._to_unit(
                found,
                event.unit,
                "assignment",
                ident,
                at,
                body,
                case_id=event.originator_id,
                assignment_id=event.assignment_id,
                version=event.originator_version,
            )
        elif isinstance(event, DueDateReminder):
            body = {
                "reminder": event.reminder,
                "assignment_id": event.assignment_id,
                "case_ref": str(event.case_id),
                "due_on": event.due_on,
            }
            self._to_unit(
                found,
                event.unit,
                "due_date_reminder",
                ident,
                at,
                body,
                case_id=event.case_id,
                assignment_id=event.assignment_id,
                version=None,  # not the case's event: its street now
            )
        elif isinstance(event, Case.Escalated):  # type: ignore[attr-defined]
            self._escalated(found, event, ident, at)
        elif isinstance(event, Case.Transferred):  # type: ignore[attr-defined]
            self._transferred(found, event, ident, at)
        elif isinstance(
            event,
            Case.AssignmentDeclined | Case.AssignmentResultReported,  # type: ignore[attr-defined]
        ):
            self._unit_answered(found, event, ident, at)
        elif isinstance(event, AccessDenied | BreakGlassAccessed):
            self._compliance_alert(found, event, ident, at)
        elif isinstance(event, DeadlineFact):
            self._deadline(found, event, ident, at)
        elif isinstance(event, Finding.FindingRaised):  # type: ignore[attr-defined]
            self._finding_raised(found, event, ident, at)
        return found

    def _deadline(self, found: Routed, event: DeadlineFact, ident: str, at: str) -> None:
        """A missed deadline's reminder, or its escalation (`scheduler.deadline_notices` says
        to whom); when nobody registered can take it, an undeliverable fact like any notice's."""
        case_id: UUID = event.case_id  # type: ignore[attr-defined]
        assignment_id: str | None = getattr(event, "assignment_id", None)
        notices = deadline_notices(event, self.directory)
        if not notices:
            escalation = isinstance(event, DeadlineEscalated)
            unit = None if escalation else (str(getattr(event, "unit", "")) or None)
            self._undeliverable(
                found,
                ident=ident,
                kind=ESCALATED_KIND if escalation else MISSED_KIND,
                case_id=case_id,
                reason=(
                    f"no_{UnitType.STREET_SUPERVISION.value}"
                    if escalation
                    else "unit_not_registered"
                    if unit
                    else f"no_{UnitType.GOVERNANCE_OFFICE.value}"
                ),
                unit=unit,
                street=str(getattr(event, "street", "")) or None,
            )
        for recipient, kind, body in notices:
            found.outgoing.append(
                Outgoing(recipient, kind, ident, at, body, case_id, assignment_id)
            )

    def _street_of(self, case_id: UUID, version: int | None = 1) -> str | None:
        """The case's street at `version` (its first event by default: decoded, not the whole
        file replayed; None: its latest). A transfer (issue 17) changes a file's street, so an
        event after one names the version it is of."""
        try:
            case: object = self.application.repository.get(
                case_id, version=version, projector_func=replay
            )
        except (AggregateNotFoundError, DataErased):  # erased (issue 19): no street to name
            return None
        street = getattr(case, "street", None)
        return street if isinstance(street, str) else None

    def _undeliverable(
        self,
        found: Routed,
        *,
        ident: str,
        kind: str,
        case_id: UUID | None,
        reason: str,
        unit: str | None = None,
        street: str | None = None,
    ) -> None:
        log.warning("message_undeliverable", kind=kind, cause=reason)
        found.undeliverable.append(
            notice_undeliverable(
                source_event=ident,
                kind=kind,
                unit=unit,
                street=street,
                case_id=case_id,
                reason=reason,
            )
        )

    def _to_unit(
        self,
        found: Routed,
        unit_id: str,
        kind: str,
        ident: str,
        at: str,
        body: dict[str, Any],
        *,
        case_id: UUID,
        assignment_id: str | None,
        version: int | None,
    ) -> None:
        """To one unit; unregistered, an undeliverable notice labelled with the case's street
        at `version` (the event's, so that a transferred file's notice lands in the street
        it is in then, issue 17; None: the latest)."""
        recipient = self.directory.get(unit_id)
        if recipient is None:
            self._undeliverable(
                found,
                ident=ident,
                kind=kind,
                case_id=case_id,
                reason="unit_not_registered",
                unit=unit_id,
                street=self._street_of(case_id, version),
            )
            return
        found.outgoing.append(Outgoing(recipient, kind, ident, at, body, case_id, assignment_id))

    def _to_type(
        self,
        found: Routed,
        unit_type: str,
        street: str | None,
        kind: str,
        ident: str,
        at: str,
        body: dict[str, Any],
        case_id: UUID | None,
    ) -> None:
        """To every registered unit of `unit_type` (in `street`, when given); none registered
        is an undeliverable notice (`no_<unit_type>`). A unit already addressed for this event
        (a type named twice) gets the notice once."""
        recipients = self.directory.where(type=unit_type, street=street)
        if not recipients:
            self._undeliverable(
                found,
                ident=ident,
                kind=kind,
                case_id=case_id,
                reason=f"no_{unit_type}",
                street=street,
            )
        held = {o.recipient.unit_id for o in found.outgoing}
        found.outgoing += [
            Outgoing(r, kind, ident, at, body, case_id) for r in recipients if r.unit_id not in held
        ]

    def _new_clue(self, found: Routed, event: Any, ident: str, at: str) -> None:
        # Codes, dates and the case's random id only: no name, ID number, issue or description.
        body = {
            "case_ref": str(event.originator_id),
            "risk": event.risk,
            "found_on": event.found_on,
            "reported_at": at,
        }
        street, case_id = event.street, event.originator_id
        office = UnitType.GOVERNANCE_OFFICE.value
        self._to_type(found, office, street, NEW_CLUE_KIND, ident, at, body, case_id)
        if event.risk in SUPERVISOR_ALERT_RISKS:
            supervision = UnitType.STREET_SUPERVISION.value
            self._to_type(found, supervision, street, NEW_CLUE_KIND, ident, at, body, case_id)

    def _escalated(self, found: Routed, event: Any, ident: str, at: str) -> None:
        street = self._street_of(event.originator_id, event.originator_version)
        body = {
            "case_ref": str(event.originator_id),
            "to_level": event.to_level,
            "to": event.to,
            "escalated_at": at,
        }
        case_id = event.originator_id
        kind = "case_escalated"
        self._to_type(
            found, UnitType.GOVERNANCE_OFFICE.value, street, kind, ident, at, body, case_id
        )
        if event.to:
            self._to_type(found, str(event.to), street, kind, ident, at, body, case_id)
        if event.to_level == "county":
            # The county's unit is registered with the county's code as its `street`: it is
            # found by its type alone (one county per deployment).
            county = UnitType.COUNTY_OFFICE.value
            self._to_type(found, county, None, kind, ident, at, body, case_id)

    def _transferred(self, found: Routed, event: Any, ident: str, at: str) -> None:
        """A file transferred to another street (issue 17): the receiving street's 街道综治办
        is told, ids and codes only (the village is a code; no reason: free text). A move
        between villages of one street is no notice: the office already holds the file."""
        if event.from_street == event.to_street:
            return
        body = {
            "case_ref": str(event.originator_id),
            "from_street": event.from_street,
            "to_street": event.to_street,
            "to_village": event.to_village,
            "transferred_at": at,
        }
        office = UnitType.GOVERNANCE_OFFICE.value
        self._to_type(
            found, office, event.to_street, TRANSFERRED_KIND, ident, at, body, event.originator_id
        )

    def _unit_answered(self, found: Routed, event: Any, ident: str, at: str) -> None:
        """A unit declined its task, or reported its result (办结反馈): the street's coordination
        office is told, to reassign or to decide on closing. No reason or outcome text (free
        text may name someone): the unit, the assignment and the recommendation's code."""
        declined = isinstance(event, Case.AssignmentDeclined)  # type: ignore[attr-defined]
        kind = DECLINED_KIND if declined else RESULT_KIND
        body: dict[str, Any] = {
            "case_ref": str(event.originator_id),
            "assignment_id": event.assignment_id,
            "unit": event.by.get("unit"),
            "at": at,
        }
        if not declined:
            body["recommendation"] = event.recommendation
        street = self._street_of(event.originator_id, event.originator_version)
        office = UnitType.GOVERNANCE_OFFICE.value
        self._to_type(found, office, street, kind, ident, at, body, event.originator_id)

    def _compliance_alert(self, found: Routed, event: Any, ident: str, at: str) -> None:
        # No reason text (free text may name someone): ids, codes and times only.
        body = {
            "alert": "break_glass" if isinstance(event, BreakGlassAccessed) else "access_denied",
            "case_ref": str(event.case_id),
            "rule": event.rule,
            "purpose": event.purpose,
            "actor": {k: event.actor.get(k) for k in ("user", "role", "unit")},
            "request_id": event.request_id,
            "at": at,
        }
        self._to_type(
            found, COMPLIANCE_AUDIT, None, "compliance_alert", ident, at, body, event.case_id
        )

    def _finding_raised(self, found: Routed, event: Any, ident: str, at: str) -> None:
        """A compliance rule raised a finding (issue 15): the compliance office is told which
        rule and how much evidence, never who, which unit or which files (no personal data:
        the auditor reads the finding over the API, and that read is recorded)."""
        body = {
            "finding_id": str(event.originator_id),
            "rule": event.rule,
            "evidence": len(event.evidence),
            "files": len(event.case_ids),
            "raised_at": at,
        }
        self._to_type(found, COMPLIANCE_AUDIT, None, FINDING_RAISED_KIND, ident, at, body, None)


# --- publishing ---------------------------------------------------------------------------------


class Publisher:
    """Seals and publishes messages to units; reusable by anything that notifies units."""

    def __init__(self, js: JetStreamContext, signer: Ed25519PrivateKey, message_key: bytes) -> None:
        self.js = js
        self.signer = signer
        self.message_key = message_key

    def message_id(self, out: Outgoing) -> str:
        """The message's id: from the causing event and the recipient, so it repeats."""
        return message_id(self.message_key, out.event, out.recipient.address.user)

    def envelope(self, out: Outgoing) -> tuple[str, bytes]:
        user = out.recipient.address.user
        ident = self.message_id(out)
        content = {
            "id": ident,
            "kind": out.kind,
            "issued_at": out.issued_at,
            "event": out.event,
            "body": out.body,
        }
        sealed = seal(
            content,
            recipient=user,
            message=ident,
            public_key=public_key_from_text(out.recipient.sealing_key),
            signer=self.signer,
        )
        return ident, sealed

    async def send(self, out: Outgoing) -> asyncio.Future[PubAck]:
        ident, sealed = self.envelope(out)
        return await self.js.publish_async(
            out.recipient.address.subject,
            sealed,
            stream=STREAM,
            headers={MESSAGE_ID_HEADER: ident},
        )


def stream_config(replicas: int = 1) -> StreamConfig:
    """The stream as casetrail wants it. Deletes and purges are denied: a notice leaves the
    stream only by age (`MAX_AGE_SECONDS`), never by the hand of whoever holds the admin's
    certificate or the service's (`tests/messaging/test_stream_policy.py`). `replicas`:
    `CASETRAIL_NATS_REPLICAS`, 3 on a cluster (`tests/messaging/test_cluster.py`)."""
    return StreamConfig(
        name=STREAM,
        description="casetrail sealed notices to units",
        subjects=[f"{SUBJECT_ROOT}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=MAX_AGE_SECONDS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_direct=False,
        deny_delete=True,
        deny_purge=True,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the stream, or bring one made earlier (by a previous version, whose streams
    allowed purges) to `stream_config()`. The server accepts turning `deny_delete` and
    `deny_purge` on for an existing stream, and refuses turning them off.

    Replicas are raised, never lowered: a stream made with one replica before the broker became
    a cluster is updated to `replicas` (the cluster copies its messages to the new peers); a
    relay started with fewer than the stream has (a setting forgotten on one host) keeps the
    stream's. A refusal (e.g. more replicas than the broker has nodes) is logged with what to
    do, and raised: the relay's loop tries again."""
    config = stream_config(replicas)
    try:
        await js.add_stream(config)
        return
    except nats.js.errors.BadRequestError as exc:
        refused = exc  # as a rule: the stream exists, with another config
    except nats.js.errors.APIError as exc:
        # E.g. 500, "replicas > 1 not supported in non-clustered mode".
        _stream_refused(replicas, exc)
        raise
    try:
        held = (await js.stream_info(STREAM)).config.num_replicas or 1
    except nats.js.errors.NotFoundError:
        held = 0  # not there: the add was refused for another reason (below)
    if held == 0:
        _stream_refused(replicas, refused)
        raise refused
    if held > replicas:
        log.warning("stream_replicas_kept", replicas=held, wanted=replicas)
        config = stream_config(held)
    try:
        await js.update_stream(config)
    except nats.js.errors.APIError as exc:
        _stream_refused(max(held, replicas), exc)
        raise
    if config.num_replicas != held:
        log.info("stream_replicas_changed", replicas=config.num_replicas, was=held)


def _stream_refused(replicas: int, exc: nats.js.errors.APIError) -> None:
    what = (
        f"the broker refused a stream of {replicas} replicas: run a cluster of at least "
        f"{replicas} nodes with every node up (`casetrail nats config --cluster`), or set "
        "CASETRAIL_NATS_REPLICAS=1 for a single server"
        if replicas > 1
        else "the broker refused the stream's config; see the error"
    )
    log.error("stream_refused", replicas=replicas, error=str(exc)[:200], what_to_do=what)


async def ensure_consumer(js: JetStreamContext, address: UnitAddress) -> None:
    """The unit's durable pull consumer: created, or updated where the server allows it. One
    that exists with a config the server will not change is kept as it is (and logged)."""
    try:
        await js.add_consumer(
            STREAM,
            ConsumerConfig(
                name=address.consumer,
                durable_name=address.consumer,
                filter_subject=address.filter_subject,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=1000,
            ),
        )
    except nats.js.errors.BadRequestError as exc:
        log.warning("consumer_kept", consumer=address.consumer, error=str(exc)[:200])


# --- the relay ------------------------------------------------------------------------------------


@dataclass
class RelayOptions:
    batch_size: int = 200
    # The fallback: the relay looks this often even when nothing woke it (see `relay_waker`).
    poll_seconds: float = 1.0
    # The least time between two looks: under a stream of commits the relay gathers them.
    gather_seconds: float = 0.005
    publish_timeout: float = 10.0
    # Seconds between scans for missed deadlines (`Relay.scan_deadlines`); 0: none.
    reminder_interval: float = 60.0
    horizon: Horizon | None = None
    # The hour (Beijing) of the daily retention run at a scan (issue 19,
    # `gateway.messaging.retention_run`); None: none (`CASETRAIL_RETENTION_RUN=off`).
    retention_hour: int | None = None


@dataclass
class RelayStats:
    published: int = 0
    duplicates: int = 0
    batches: int = 0
    failures: int = 0
    connected: bool = False
    last_error: str | None = None
    woken_by_commit: int = 0  # looks caused by a commit (NOTIFY, or data_version moved)
    woken_by_timer: int = 0  # looks after `poll_seconds` passed without one
    facts_stored: int = 0  # NoticePublished / NoticeUndeliverable stored (copies refused: not)


class NotConnected(Exception):
    pass


class Relay:
    def __init__(
        self,
        application: CaseTrail,
        *,
        nats_settings: NatsSettings,
        layout: NatsLayout,
        signer: Ed25519PrivateKey,
        index_key: bytes,
        options: RelayOptions | None = None,
    ) -> None:
        self.application = application
        self.nats_settings = nats_settings
        self.layout = layout
        self.signer = signer
        self.message_key = derive_key(index_key, "message-ids")
        self.options = options or RelayOptions()
        self.horizon = (
            self.options.horizon or settled_horizon(application) or horizon_of(application)
        )
        # The relay's position and how it reads the log are a follower's (projections.follower),
        # whose batches it publishes before it records them.
        self.follower = Follower(
            application,
            relay_recorder(application),
            batch_size=self.options.batch_size,
            horizon=self.horizon,
            log=log,
        )
        self.recorder = self.follower.recorder
        self.checkpoint_recorder = checkpoint_recorder(application)
        self.checkpoints = CheckpointStore(application.recorder)
        self._checkpoints_exist = False
        self.directory = Directory(application)
        self.router = Router(application, self.directory)
        self.stats = RelayStats()
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.publisher: Publisher | None = None
        self._next_scan = 0.0
        # Made here, not at the first scan: its table exists once the relay could start (on
        # PostgreSQL with restricted roles the owner's `casetrail relay status` creates it).
        self.scheduler = DeadlineScheduler(application)
        # The compliance rules (issue 15), evaluated with the deadline scan: the findings it
        # stores are events the loop then announces (`finding_raised`).
        self.evaluator = ComplianceEvaluator(application)
        self.retention = RetentionRun(application, self.options.retention_hour)
        self._closing = False
        self._last_beat = -HEARTBEAT_SECONDS
        # Set while the connection is down: the acknowledgements awaited on it will not come
        # (on a cluster the client is already on another node), so the batch is tried again at
        # once rather than after `publish_timeout`.
        self._connection_lost = asyncio.Event()

    def position(self) -> int:
        return self.recorder.position(self.application.name)

    def lag(self) -> int:
        head = self.application.recorder.max_notification_id() or START
        return max(0, head - self.position())

    def checkpoint_position(self) -> int:
        return self.checkpoint_recorder.position(self.application.name)

    # --- connection ---

    async def connect(self) -> None:
        quiet_asyncio_tls_notes()
        context = tls_context(self.layout.service_bundle, self.layout.ca_cert.read_text())

        async def on_error(exc: Exception) -> None:
            log.warning("broker_error", error=str(exc)[:200])

        async def on_disconnected() -> None:
            self.stats.connected = False
            self._connection_lost.set()
            if not self._closing:
                log.warning("broker_disconnected")

        async def on_reconnected() -> None:
            self.stats.connected = True
            self._connection_lost.clear()
            log.info("broker_reconnected", server=self._server())

        self._connection_lost.clear()
        self.nc = await nats.connect(
            servers=self.nats_settings.servers,
            tls=context,
            name="casetrail-relay",
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )
        try:
            self.js = self.nc.jetstream(timeout=self.options.publish_timeout)
            self.publisher = Publisher(self.js, self.signer, self.message_key)
            await ensure_stream(self.js, self.nats_settings.replicas)
            self.directory.load()
            for recipient in self.directory.all():
                await ensure_consumer(self.js, recipient.address)
        except BaseException:
            # Connected but not set up (JetStream not answering yet: a cluster node just
            # restarted, its stream electing a leader): closed, so that the next attempt
            # starts over. Kept open, `run` would publish with the directory never loaded,
            # and store every assignment as undeliverable (`unit_not_registered`): lost.
            await self.close()
            raise
        self.stats.connected = True
        log.info(
            "relay_connected",
            units=len(self.directory.all()),
            position=self.position(),
            server=self._server(),
        )

    def _server(self) -> str | None:
        """The node the relay is connected to (`host:port`): on a cluster, where it failed over."""
        url = self.nc.connected_url if self.nc is not None else None
        return url.netloc if url is not None else None

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            self._closing = True
            try:
                failed = await close_connection(nc)
                if failed is not None:
                    log.info("relay_connection_dropped", error=failed)
            finally:
                self._closing = False

    # --- one batch ---

    async def step(self) -> int:
        """Publish one batch and record the position past it. Returns how far it moved."""
        self._check_connected()
        batch = self.follower.next_batch()
        if batch is None:
            return 0
        outgoing: list[Outgoing] = []
        undeliverable: list[NoticeUndeliverable] = []
        for event in batch.events:
            if isinstance(event, Unit.Event):
                await self._unit_changed(event)
                continue
            routed = self.router.routed(event)
            outgoing += routed.outgoing
            undeliverable += routed.undeliverable
        facts_before = self.stats.facts_stored
        sent = await self._publish_then_record(outgoing, self.recorder, batch, undeliverable)
        if sent is None:
            return 0
        self.stats.batches += 1
        if outgoing or undeliverable:
            # `duplicates`: already in the stream (published before a crash), dropped by it;
            # `facts`: notice facts stored now (copies stored before a crash are not counted).
            log.info(
                "relay_published",
                messages=len(outgoing),
                duplicates=sent,
                facts=self.stats.facts_stored - facts_before,
                position=batch.end,
            )
        return batch.end - batch.start

    async def publish_checkpoints(self) -> int:
        """Broadcast the stored checkpoints past the checkpoint position to every registered
        unit, then record the position past them. Returns how many checkpoints it passed."""
        self._check_connected()
        if not self._checkpoints_exist:
            self._checkpoints_exist = self.checkpoints.exists()
            if not self._checkpoints_exist:
                return 0
        start = self.checkpoint_position()
        found = self.checkpoints.since(start, limit=self.options.batch_size)
        if not found:
            return 0
        recipients = self.directory.all()
        public_key = self.signer.public_key()
        sent: list[Checkpoint] = []
        outgoing: list[Outgoing] = []
        for checkpoint in found:
            if not checkpoint.verify(public_key):
                # Not what this service signed (the row was changed): never sent on.
                log.error("checkpoint_signature_invalid", seq=checkpoint.seq)
                continue
            if not recipients:
                log.warning("message_undeliverable", kind=CHECKPOINT_KIND, cause="no_recipient")
            # The same notice to each unit, each sealed to its own key.
            event, body = checkpoint_event(checkpoint.seq), checkpoint.to_json()
            outgoing += [
                Outgoing(r, CHECKPOINT_KIND, event, checkpoint.time, body, fact=False)
                for r in recipients
            ]
            sent.append(checkpoint)
        end = found[-1].seq
        batch = Batch(self.application.name, start, end, (), ())
        duplicates = await self._publish_then_record(outgoing, self.checkpoint_recorder, batch)
        if duplicates is None:
            return 0
        if sent:
            log.info(
                "checkpoints_published",
                checkpoints=len(sent),
                messages=len(outgoing),
                duplicates=duplicates,
                seq=end,
            )
        return len(found)

    def _check_connected(self) -> None:
        if self.nc is None or self.publisher is None or not self.nc.is_connected:
            raise NotConnected("the broker is not connected")

    async def _publish_then_record(
        self,
        outgoing: list[Outgoing],
        recorder: AnyViewRecorder,
        batch: Batch,
        undeliverable: list[NoticeUndeliverable] | None = None,
    ) -> int | None:
        """The outbox rule, for notices and checkpoints alike: publish every message, wait
        until JetStream has acknowledged each one, store the notice facts (`store_facts`), and
        only then record the position past `batch`. Returns how many the stream already held
        (dropped as duplicates), or None when another relay recorded the position first (the
        stream dropped our copies, the store refused our facts)."""
        publisher = self.publisher
        if publisher is None:
            raise NotConnected("the broker is not connected")
        pending: list[asyncio.Future[PubAck]] = []
        try:
            for out in outgoing:
                pending.append(await publisher.send(out))
            acks: list[PubAck] = []
            if pending:
                acks = await self._acknowledged(pending)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        # Timestamped now: the instant JetStream had acknowledged every notice of the batch.
        facts: list[Any] = [
            notice_published(
                message_id=publisher.message_id(out),
                unit=out.recipient.unit_id,
                street=out.recipient.street,
                kind=out.kind,
                case_id=out.case_id,
                assignment_id=out.assignment_id,
                source_event=out.event,
            )
            for out in outgoing
            if out.fact
        ]
        facts += undeliverable or []
        self.stats.facts_stored += self.store_facts(facts)
        try:
            recorder.process(batch)
        except PositionMoved:
            return None
        duplicates = sum(1 for ack in acks if ack.duplicate)
        self.stats.published += len(pending)
        self.stats.duplicates += duplicates
        return duplicates

    async def _acknowledged(self, pending: list[asyncio.Future[PubAck]]) -> list[PubAck]:
        """Every ack, within `publish_timeout`; NotConnected as soon as the connection drops
        (the caller publishes the batch again; the stream drops what it already holds)."""
        acks = asyncio.ensure_future(asyncio.gather(*pending))
        lost = asyncio.ensure_future(self._connection_lost.wait())
        waited: set[asyncio.Future[Any]] = {acks, lost}
        try:
            done, _ = await asyncio.wait(
                waited,
                timeout=self.options.publish_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            lost.cancel()
        if acks in done:
            return acks.result()
        acks.cancel()
        if lost in done:
            raise NotConnected("the broker connection dropped before every ack came")
        raise TimeoutError(f"no ack within {self.options.publish_timeout:.0f}s")

    def store_facts(self, facts: list[Any]) -> int:
        """Store the notice facts in one transaction; if the store refuses it (some were
        stored before a crash, or by another relay: their ids repeat), one by one, skipping
        each copy already stored. Returns how many were stored now."""
        if not facts:
            return 0
        try:
            self.application.store_events(facts)
            return len(facts)
        except IntegrityError:
            stored = 0
            for fact in facts:
                try:
                    self.application.store_events([fact])
                except IntegrityError:
                    continue
                stored += 1
            return stored

    async def _unit_changed(self, event: Any) -> None:
        """A unit registered or rotated its keys: seal to its current key, make its consumer."""
        unit: object = self.application.repository.get(event.originator_id)
        if not isinstance(unit, Unit):
            return
        recipient = self.directory.refresh(unit.unit_id)
        if self.js is not None:
            await ensure_consumer(self.js, recipient.address)

    # --- missed deadlines (gateway.messaging.scheduler) ---

    async def scan_deadlines(self) -> int:
        """Store the deadline facts now due (the loop then publishes them as it does every
        event); returns how many this scan stored."""
        return len(await asyncio.to_thread(self._scan_deadlines))

    def _scan_deadlines(self) -> list[Any]:
        return self.scheduler.scan()

    # --- the loop ---

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: connect (again and again while the broker is away), publish,
        wait for new events. Every failure is logged and retried with backoff."""
        # Made before the first look: a commit from then on wakes the wait that follows it.
        waker = relay_waker(self.application)
        thread_stop = threading.Event()
        backoff = 0.2
        loop = asyncio.get_running_loop()
        last_look = 0.0

        async def relay_stop() -> None:
            await stop.wait()
            thread_stop.set()  # ends a wait in progress at once

        stopper = asyncio.create_task(relay_stop())
        try:
            while not stop.is_set():
                await self._heartbeat(loop.time())
                try:
                    if self.nc is None or self.nc.is_closed:
                        await self.connect()
                    await self._maybe_scan(loop.time())
                    last_look = loop.time()
                    moved = await self.step()
                    moved += await self.publish_checkpoints()
                    backoff = 0.2
                    if self.stats.last_error is not None:
                        self.stats.last_error = None
                        log.info("relay_recovered", position=self.position())
                    if moved == 0:
                        await self._idle(waker, thread_stop, last_look)
                    continue
                except MapperDeserialisationError:
                    self._failed("event_integrity_failure", level="error")
                    backoff = _MAX_BACKOFF
                except (NotConnected, TimeoutError, nats.errors.Error, OSError) as exc:
                    self._failed(type(exc).__name__)
                    if isinstance(exc, nats.js.errors.NoStreamResponseError):
                        backoff = min(backoff, _ELECTION_BACKOFF / 2)
                    nc = self.nc
                    # Closed only when the client gave up: while it reconnects (its handshake
                    # with the next node is `is_connecting`) it fails over by itself.
                    if (
                        nc is not None
                        and not nc.is_connected
                        and not nc.is_reconnecting
                        and not nc.is_connecting
                    ):
                        await self.close()
                except PersistenceError as exc:
                    self._failed(type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
        finally:
            thread_stop.set()
            stopper.cancel()
            waker.close()
            await self.close()
            await asyncio.to_thread(self._beat, False)  # stopped: reported so at once

    async def _heartbeat(self, now: float) -> None:
        """At most every HEARTBEAT_SECONDS (`projections.follower.beat`): so that the API's
        /readyz and /metrics can tell, from another process, that the relay runs."""
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = now
            await asyncio.to_thread(self._beat, True)

    def _beat(self, alive: bool) -> None:
        """A heartbeat; when the store does not take it, it goes stale, truthfully."""
        with contextlib.suppress(Exception):
            beat(self.recorder, alive=alive, last_error=self.stats.last_error)

    async def _idle(
        self, waker: CommitWaker, thread_stop: threading.Event, last_look: float
    ) -> None:
        """Wait for a commit (or the fallback timer), then keep `gather_seconds` since the
        last look (`last_look`, the loop's clock)."""
        woken = await asyncio.to_thread(waker.wait, self.options.poll_seconds, thread_stop)
        if thread_stop.is_set():
            return
        if woken:
            self.stats.woken_by_commit += 1
        else:
            self.stats.woken_by_timer += 1
        pause = last_look + self.options.gather_seconds - asyncio.get_running_loop().time()
        if pause > 0:
            await asyncio.sleep(pause)

    async def _maybe_scan(self, now: float) -> None:
        interval = self.options.reminder_interval
        if interval and now >= self._next_scan:
            self._next_scan = now + interval
            try:
                await self.scan_deadlines()
            except PersistenceError:
                raise  # the store is away: the loop waits and tries again, as for notices
            except Exception as exc:
                # A scan that fails otherwise must not stop the notices: logged, tried again
                # at the next interval.
                log.error("deadline_scan_failed", error_type=type(exc).__name__)
            try:
                await asyncio.to_thread(self.evaluator.step)
            except PersistenceError:
                raise
            except Exception as exc:
                # As a failed deadline scan: logged, tried again at the next interval.
                log.error("compliance_evaluation_failed", error_type=type(exc).__name__)
            day = self.retention.due(datetime.now(UTC))
            if day is not None:
                try:
                    await asyncio.to_thread(self.retention.run, day)
                except PersistenceError:
                    raise
                except Exception as exc:
                    # As a failed deadline scan: logged, tried again at the next interval.
                    log.error("retention_run_failed", error_type=type(exc).__name__)

    def _failed(self, error: str, level: str = "warning") -> None:
        self.stats.failures += 1
        first = self.stats.last_error != error
        self.stats.last_error = error
        if first:
            getattr(log, level)("relay_waiting", error=error, position=self.position())


# --- waking up ------------------------------------------------------------------------------------

# How often the SQLite watch reads `PRAGMA data_version` while a commit may be under way: at most
# this much is added to a notice's latency.
SQLITE_WATCH_SECONDS: Final = 0.001
# After a write to the store's files, how long it reads `data_version` every
# SQLITE_WATCH_SECONDS, then every SQLITE_SLOW_WATCH_SECONDS until SQLITE_WATCH_WINDOW has
# passed: a commit is written (and fsync'd) before it becomes visible, and a slow disk may take
# a while between the two. Without a write in sight it sleeps in the kernel (inotify).
SQLITE_HOT_SECONDS: Final = 0.05
SQLITE_SLOW_WATCH_SECONDS: Final = 0.01
SQLITE_WATCH_WINDOW: Final = 1.0
# A wait sleeps at most this long at a time, to see the relay's stop.
_STOP_SLICE: Final = 0.1


class CommitWaker(Protocol):
    """Waits for a commit to the store. `wait` returns True when one (may have) happened,
    False when `timeout` passed (or `stop` was set) without a sign of one."""

    def wait(self, timeout: float, stop: threading.Event) -> bool: ...

    def close(self) -> None: ...


class TimerWaker:
    """No sign of commits to watch (an in-memory SQLite store): the fallback timer only."""

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        stop.wait(timeout)
        return False

    def close(self) -> None:
        pass


class _FileWrites:
    """Linux inotify on the store's directory: tells that the store's file, its WAL or its
    journal was written (IN_MODIFY), without polling. A directory watch, so that a WAL file
    removed and made again is still seen; other files' events are read and dropped."""

    _IN_MODIFY: Final = 0x2
    _IN_CREATE: Final = 0x100
    _IN_MOVED_TO: Final = 0x80
    _HEADER: Final = struct.Struct("iIII")  # wd, mask, cookie, len; then the name

    def __init__(self, path: Path) -> None:
        self.names = {path.name, f"{path.name}-wal", f"{path.name}-journal"}
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        mask = self._IN_MODIFY | self._IN_CREATE | self._IN_MOVED_TO
        if libc.inotify_add_watch(fd, os.fsencode(path.parent), mask) < 0:
            errno = ctypes.get_errno()
            os.close(fd)
            raise OSError(errno, "inotify_add_watch failed")
        self.fd: int | None = fd

    def wait(self, timeout: float) -> bool:
        """True when one of the store's files was written (now, or since the last call)."""
        if self.fd is None:
            return False
        readable, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return bool(readable) and self._drain()

    def _drain(self) -> bool:
        found = False
        while self.fd is not None:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset + self._HEADER.size <= len(data):
                _, _, _, length = self._HEADER.unpack_from(data, offset)
                start = offset + self._HEADER.size
                name = data[start : start + length].rstrip(b"\0").decode(errors="replace")
                found = found or name in self.names
                offset = start + length
        return found

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class SqliteCommitWaker:
    """Tells the relay that another connection, in any process, committed to the SQLite file.

    The sign is `PRAGMA data_version` on a connection of its own, which never writes: its value
    changes when any other connection has committed since the last read
    (https://sqlite.org/pragma.html#pragma_data_version), a read of the WAL's shared memory,
    about 5 µs. The baseline is read when the waker is made, so a commit between the relay's
    look and its wait still wakes it; a commit the look already saw (the relay's own position,
    among others) costs one more look, never a missed one.

    When to read it: on Linux, the waker sleeps in the kernel until one of the store's files is
    written (inotify, `_FileWrites`), then reads `data_version` every `SQLITE_WATCH_SECONDS`
    until it moves (the commit became visible) or `SQLITE_WATCH_WINDOW` has passed; idle, it
    costs nothing. Elsewhere (or when inotify cannot be had) it reads it every
    `SQLITE_WATCH_SECONDS` all the time: a few percent of one core while idle."""

    def __init__(self, db_name: str, interval: float = SQLITE_WATCH_SECONDS) -> None:
        self.db_name = db_name
        self.interval = interval
        self._connection: sqlite3.Connection | None = None
        self._seen: int | None = None
        self._written_at = time.monotonic()  # as if just written: look closely at first
        self.writes: _FileWrites | None = None
        path = Path(db_name.removeprefix("file:").split("?", 1)[0])
        if sys.platform == "linux":
            try:
                self.writes = _FileWrites(path.resolve())
            except OSError as exc:
                log.warning("commit_watch_polls", reason=str(exc)[:200])
        with contextlib.suppress(sqlite3.Error):
            self._seen = self._version()

    def _version(self) -> int:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.db_name, uri=True, check_same_thread=False, isolation_level=None
            )
        row = self._connection.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _pause(self, remaining: float) -> None:
        """Until the next read of `data_version`: short while a commit may be under way."""
        if self.writes is None:
            time.sleep(min(self.interval, remaining))
            return
        since = time.monotonic() - self._written_at
        if since < SQLITE_HOT_SECONDS:
            step = self.interval
        elif since < SQLITE_WATCH_WINDOW:
            step = SQLITE_SLOW_WATCH_SECONDS
        else:
            # Nothing written lately: sleep until a write (or a slice, to see `stop`).
            step = _STOP_SLICE
        if self.writes.wait(min(step, remaining)):
            self._written_at = time.monotonic()

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            try:
                version = self._version()
            except sqlite3.Error as exc:
                # The file is away for a moment: fall back to the timer, reconnect next time.
                log.warning("commit_watch_failed", error_type=type(exc).__name__)
                self._close_connection()
                stop.wait(max(0.0, deadline - time.monotonic()))
                return False
            if self._seen is None:
                self._seen = version
            elif version != self._seen:
                self._seen = version
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._pause(remaining)
        return False

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def close(self) -> None:
        self._close_connection()
        if self.writes is not None:
            self.writes.close()
            self.writes = None


class PostgresCommitWaker:
    """The followers' LISTEN/NOTIFY waker (`projections.follower.PostgresWaker`, its connection
    and channel), saying why it returned, and listening from the moment it is made rather than
    from its first wait. The NOTIFY is delivered at the commit, once the events are visible to
    the relay's next look."""

    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.listener = PostgresWaker(recorder, log)
        with contextlib.suppress(psycopg.Error):
            self.listener._listening()

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + timeout
        try:
            connection = self.listener._listening()
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                slice_ = min(PostgresWaker._SLICE, remaining)
                for _ in connection.notifies(timeout=slice_, stop_after=1):
                    return True
        except psycopg.Error as exc:
            log.warning("listen_failed", error_type=type(exc).__name__)
            self.close()
            stop.wait(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        self.listener.close()


def relay_waker(application: Application[Any]) -> CommitWaker:
    """What tells the relay that something was committed: NOTIFY on PostgreSQL, the file's
    `data_version` on SQLite, the timer alone for an in-memory store."""
    recorder = application.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresCommitWaker(recorder)
    if isinstance(recorder, SQLiteApplicationRecorder):
        pool = recorder.datastore.pool
        if not pool.is_sqlite_memory_mode:
            return SqliteCommitWaker(pool.db_name)
    return TimerWaker()
