"""One case's history, gathered in one scan of the store: the events the workbench analyses.

`gather(log, case_id)` reads the store's log once, in the order it was recorded, selecting by
topic: the case's own stream (picked by its stream id, which the log holds in clear, so no other
case's event is decrypted), the access events that name the case (from the access-log read
model when the application has one wired, `projections.compliance.access_log.CaseLog`, merged
by position, so that no access event of the store is decrypted; otherwise their case id is
inside the ciphertext and every access event is decoded, a cost that grows with the store
rather than the case), the notices and
deadline facts that name it, and the investigation orders for it and their renewals and
revocations, and the reviews of its break-glass reads. It also reads the user registry's post
events (`domain.users`: a registration and each change of post, few), so that the analyses name
each person's post at the instant they acted (`CaseHistory.post_of`; a user never registered,
such as one of the store's earlier days, has none). Proven by
tests/integration/test_users.py (the timeline and the knowledge matrix of a user whose post
changed).

While it reads, it folds the case's events into a `FileState` after each: what the file held at
that version (status, risk, issues, assignments, escalations), as the aggregate sets them (`_fold`;
proven equal to the aggregate's own replay, version by version). Every later
`Step` points at the state it saw, so the analyses (`timeline`, `knowledge`, `deadlines`) are
plain loops over the steps: the whole analysis is linear in the events gathered
(`bench/investigation.py` measures it against decoding the same events).

The log is anything with the application's `notifications(topics=...)` and `mapper`
(`EventLog`): `domain.application.CaseTrail` is one. Proven by
tests/projections/test_investigation_history.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Mapper, Notification

from domain.access import AccessDenied, BreakGlassAccessed, BreakGlassReviewed, CaseAccessed
from domain.case import Case
from domain.compliance.records import AccessRecord, RecordKind
from domain.deadlines import (
    AssignmentNotSignedFor,
    AssignmentOverdue,
    ConsultationOverdue,
    DeadlineEscalated,
    QuarterlyUpdateMissed,
)
from domain.notices import DueDateReminder, NoticePublished, NoticeReceived, NoticeUndeliverable
from domain.orders import InvestigationOrder
from domain.retention import erasure_id
from domain.taxonomy import CaseStatus
from domain.tombstones import ERASURE_TOPICS, decoded
from domain.topics import topics_of
from domain.users import User, post_as_of


class EventLog(Protocol):
    """What the history needs of the application: its log in stored order, and its mapper."""

    @property
    def mapper(self) -> Mapper[UUID]: ...

    def notifications(
        self, start: int = 1, topics: tuple[str, ...] = (), batch: int = 500
    ) -> Iterator[Notification]: ...


def _event_classes(owner: type) -> list[type[DomainEvent]]:
    return [
        v
        for v in vars(owner).values()
        if isinstance(v, type) and issubclass(v, DomainEvent) and v.__name__ not in ("Event",)
    ]


CASE_TOPICS: Final = frozenset(topics_of(*_event_classes(Case)))
_CASE_CLASSES: Final = frozenset(_event_classes(Case))
ORDER_ISSUED: Final = frozenset(
    topics_of(InvestigationOrder.InvestigationOrderIssued)  # type: ignore[attr-defined]
)
ORDER_LATER: Final = frozenset(
    topics_of(
        InvestigationOrder.InvestigationOrderRenewed,  # type: ignore[attr-defined]
        InvestigationOrder.InvestigationOrderRevoked,  # type: ignore[attr-defined]
    )
)
REVIEW_TOPICS: Final = frozenset(topics_of(BreakGlassReviewed))
# Facts about the case stored in streams of their own: the case id is in the payload.
NAMING_TOPICS: Final = frozenset(
    topics_of(
        CaseAccessed,
        BreakGlassAccessed,
        AccessDenied,
        DueDateReminder,
        NoticePublished,
        NoticeReceived,
        NoticeUndeliverable,
        ConsultationOverdue,
        AssignmentNotSignedFor,
        AssignmentOverdue,
        QuarterlyUpdateMissed,
        DeadlineEscalated,
    )
)
# A user's registration and each change of their post (issue 16).
_POST_CLASSES: Final = (
    User.UserRegistered,  # type: ignore[attr-defined]
    User.PostChanged,  # type: ignore[attr-defined]
)
POST_TOPICS: Final = frozenset(topics_of(*_POST_CLASSES))
# Issue 19: the erasure of a file (its fact's stream is derived from the file's id).
ERASED_TOPICS: Final = frozenset(ERASURE_TOPICS)
ALL_TOPICS: Final = tuple(
    sorted(
        CASE_TOPICS
        | ORDER_ISSUED
        | ORDER_LATER
        | REVIEW_TOPICS
        | NAMING_TOPICS
        | POST_TOPICS
        | ERASED_TOPICS
    )
)

_SNAKE: Final = re.compile(r"(?<!^)(?=[A-Z])")


# Class -> its timeline code: the name is converted once per class, not once per event.
_KINDS: dict[type, str] = {}


def kind_of(event: object) -> str:
    """The timeline code of an event: its class name in snake_case; an assignment's
    acknowledgement is a person signing for it (签收, `receipt` false) or, for the events
    stored before that distinction (`receipt` true after their upcast, or absent), the unit
    client's automatic receipt."""
    cls = type(event)
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = _SNAKE.sub("_", cls.__name__).lower()
    if kind == "assignment_acknowledged":
        return "assignment_received" if getattr(event, "receipt", True) else "assignment_signed_for"
    return kind


class FileState(NamedTuple):
    """What the case file held at one version: codes only (the content stays in the events).
    A tuple: one is built per case event, and a tuple builds several times faster than a
    frozen dataclass."""

    version: int
    status: str
    risk: str
    street: str
    reporting_unit: str
    found_on: str
    issues: tuple[tuple[str, str], ...]
    # (assignment id, unit, function)
    assignments: tuple[tuple[str, str, str], ...]
    # (escalation number from 1, level)
    escalations: tuple[tuple[int, str], ...]


class Step(NamedTuple):
    """One gathered event: its position in the store, its instant, its timeline code, the
    file's state before it and after it (the same object for events outside the case stream).
    A tuple, as `FileState`: one per event."""

    position: int
    at: datetime
    kind: str
    event: Any
    before: FileState | None
    after: FileState | None


@dataclass
class CaseHistory:
    case_id: UUID
    steps: list[Step] = field(default_factory=list)
    # The case stream's stored records as gathered (ciphertext and all, in log order): the
    # report's integrity statement checks these instead of reading the stream again.
    stored: list[Notification] = field(default_factory=list)
    # The file's state at each version (for a read that names the version it disclosed).
    states: dict[int, FileState] = field(default_factory=dict)
    current: FileState | None = None
    # Each registered user's posts: user id -> [(since, post code)], in stored order.
    posts: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    # User stream id -> user id (a change of post names the stream only).
    user_ids: dict[str, str] = field(default_factory=dict)
    # Issue 19: the case stream's records whose data key was destroyed (unreadable; their
    # ciphertext is in `stored` too, for the integrity statement).
    erased: list[Notification] = field(default_factory=list)

    def add(self, position: int, event: Any) -> None:
        """One more event about the case, in stored order: an event of its own stream moves
        the file's state on; a user's post event is remembered (`post_of`), not a step; any
        other is a step at the current state."""
        before = self.current
        cls = type(event)
        if cls in _POST_CLASSES:
            self.note_post(event)
            return
        kind = _KINDS.get(cls) or kind_of(event)
        if kind == "assignment_acknowledged":
            kind = kind_of(event)
        if cls in _CASE_CLASSES:
            self.current = _fold(kind, event, before)
            self.states[self.current.version] = self.current
        self.steps.append(Step(position, event.timestamp, kind, event, before, self.current))

    def add_stored(self, notification: Notification, event: Any | None) -> None:
        """One record of the case's own stream, decoded (`add`), or None when it was erased
        (issue 19: kept in `erased`; its ciphertext is in `stored` either way)."""
        self.stored.append(notification)
        if event is None:
            self.erased.append(notification)
        else:
            self.add(notification.id, event)

    def note_post(self, event: Any | None) -> None:
        """A user's registration or change of post (None: an erased user record, issue 19)."""
        if event is None:
            return
        stream = str(event.originator_id)
        user_id = getattr(event, "user_id", None) or self.user_ids.get(stream)
        if user_id is None:  # pragma: no cover - a stream starts with its registration
            return
        self.user_ids[stream] = user_id
        self.posts.setdefault(user_id, []).append((event.timestamp, event.post))

    def post_of(self, user: str | None, at: datetime) -> str | None:
        """The post the user held at `at` (None: not registered then, or not a person)."""
        if user is None:
            return None
        posts = self.posts.get(user)
        return post_as_of(posts, at) if posts else None

    def state_at(self, version: int | None, current: FileState | None) -> FileState | None:
        if version is None:
            return current
        return self.states.get(version, current)


def _fold(kind: str, event: Any, previous: FileState | None) -> FileState:
    """The file's state after one of its events, from the state before: the fields the analyses
    need, as `domain.case.Case` sets them (status, risk, issues, assignments, escalations).
    Folded here rather than by replaying the aggregate (`event.mutate`), which costs more than
    decoding the event; tests/projections/test_investigation_history.py proves it equal to the
    aggregate's replay at every version of the scenario and of a long seeded file."""
    version = event.originator_version
    if kind == "clue_reported":
        return FileState(
            version=version,
            status=CaseStatus.AWAITING_CONSULTATION.value,
            risk=event.risk,
            street=event.street,
            reporting_unit=event.reported_by["unit"],
            found_on=event.found_on,
            issues=tuple((i["category"], i["subtype"]) for i in event.issues),
            assignments=(),
            escalations=(),
        )
    if previous is None:  # pragma: no cover - a case stream starts with its report
        raise ValueError("a case stream that does not start with its report")
    # Positional, not `_replace` (several times slower): one state per case event.
    state = FileState(version, *previous[1:])
    change = _CHANGES.get(kind)
    return state if change is None else change(event, state)


def _assigned(event: Any, state: FileState) -> FileState:
    added = ((event.assignment_id, event.unit, event.function),)
    return state._replace(
        status=CaseStatus.INTERVENING.value, assignments=state.assignments + added
    )


_CHANGES: Final[dict[str, Callable[[Any, FileState], FileState]]] = {
    "reclassified": lambda e, s: s._replace(
        issues=tuple((i["category"], i["subtype"]) for i in e.issues), risk=e.risk
    ),
    "risk_assessed": lambda e, s: s._replace(risk=e.level),
    "consultation_held": lambda e, s: s._replace(status=CaseStatus.INTERVENING.value),
    "unit_assigned": _assigned,
    "escalated": lambda e, s: s._replace(
        escalations=(*s.escalations, (len(s.escalations) + 1, e.to_level))
    ),
    "closed": lambda e, s: s._replace(status=CaseStatus.CLOSED.value),
    "reopened": lambda e, s: s._replace(status=CaseStatus.AWAITING_CONSULTATION.value),
    # Issue 17: a transfer moves the file to the receiving street (a correction changes none
    # of the codes held here).
    "transferred": lambda e, s: s._replace(street=e.to_street),
}


# The access events' topics: with an access-log read model, their records come from it.
ACCESS_TOPICS: Final = frozenset(topics_of(CaseAccessed, BreakGlassAccessed, AccessDenied))
_WITHOUT_ACCESSES: Final = tuple(t for t in ALL_TOPICS if t not in ACCESS_TOPICS)
AccessRecords = Callable[[UUID], Sequence[AccessRecord]]


def access_event_of(record: AccessRecord) -> CaseAccessed | AccessDenied:
    """The access event an access record was made from, as the analyses read it: every value
    they use (the break-glass reason, which the read model does not hold and no answer shows,
    is left empty)."""
    values: dict[str, Any] = {
        "originator_id": record.event_id,
        "originator_version": 1,
        "timestamp": record.at,
        "case_id": record.case_id,
        "actor": {
            "user": record.user,
            "role": record.role,
            "unit": record.unit,
            "street": record.street,
        },
        "purpose": record.purpose,
        "rule": record.rule,
        "request_id": record.request_id,
        "case_version": record.case_version,
        "channel": record.channel,
        "client": {"address": record.client_address, "user_agent": record.client_user_agent},
    }
    cls: type[CaseAccessed | AccessDenied] = AccessDenied
    if record.kind is RecordKind.READ:
        values["fields"] = list(record.fields)
        cls = CaseAccessed
        if record.break_glass:
            values["reason"] = ""
            cls = BreakGlassAccessed
    # Built as the library's mapper builds a decoded event (`Mapper.to_domain_event`: the
    # state set as a whole), not through the frozen dataclass's __init__, one field at a time.
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", values)
    return event


def gather(log: EventLog, case_id: UUID, accesses: AccessRecords | None = None) -> CaseHistory:
    """Every stored event about the case, in stored order, with the file's state at each.

    `accesses` (by default the log's `access_record_source`, when it has one: the access-log
    read model's `CaseLog`, wired by `gateway.bootstrap`): the case's access records, complete
    up to the store's end. Then the access events are not read from the store at all (no
    access event of any other case decrypted), only merged in by position."""
    if accesses is None:
        accesses = getattr(log, "access_record_source", None)
    history = CaseHistory(case_id)
    # The log holds stream ids as UUIDs or as text, depending on the store: both compare.
    wanted = str(case_id)
    erased_stream = {str(erasure_id(case_id))}
    orders: set[str] = set()
    break_glass: set[str] = set()
    decode = log.mapper.to_domain_event
    steps = history.steps
    topics = ALL_TOPICS if accesses is None else _WITHOUT_ACCESSES
    pending = _pending_accesses(accesses, case_id)

    def step_outside(position: int, event: Any) -> None:
        # Outside the case stream: a step at the current state (what `add` does, inline: the
        # most frequent event of a long file is a read).
        if isinstance(event, BreakGlassAccessed):
            break_glass.add(str(event.originator_id))
        cls = type(event)
        kind = _KINDS.get(cls) or kind_of(event)
        current = history.current
        steps.append(Step(position, event.timestamp, kind, event, current, current))

    for notification in log.notifications(topics=topics):
        position = notification.id
        while pending and pending[-1][0] < position:
            step_outside(*pending.pop())
        topic = notification.topic
        origin = notification.originator_id
        if topic in CASE_TOPICS:
            if origin not in (case_id, wanted):
                continue  # another case's: never decrypted
            history.add_stored(notification, decoded(decode, notification))
            continue
        event: Any
        if topic in POST_TOPICS:
            history.note_post(decoded(decode, notification))
            continue
        if topic in ORDER_LATER or topic in REVIEW_TOPICS or topic in ERASED_TOPICS:
            # Issue 19: an erasure's stream says which file it erased (none other decrypted).
            streams = (
                orders
                if topic in ORDER_LATER
                else break_glass
                if topic in REVIEW_TOPICS
                else erased_stream
            )
            if str(origin) not in streams:
                continue
            event = decode(notification)
        else:
            event = decode(notification)
            if getattr(event, "case_id", None) != case_id:
                continue
            if topic in ORDER_ISSUED:
                orders.add(str(origin))
        step_outside(position, event)
    while pending:
        step_outside(*pending.pop())
    return history


def _pending_accesses(accesses: AccessRecords | None, case_id: UUID) -> list[tuple[int, Any]]:
    """The case's reads from the access records (refused commands are no step of the file's
    history), newest first: `gather` pops them from the end, oldest first."""
    if accesses is None:
        return []
    pending = [
        (r.position, access_event_of(r))
        for r in accesses(case_id)
        if r.kind is not RecordKind.REFUSED_COMMAND
    ]
    pending.reverse()
    return pending


def history_of(case_id: UUID, events: Iterable[tuple[int, Any]]) -> CaseHistory:
    """The history of events already selected and decoded, each with its store position, in
    stored order (a bundle's records, a test's events): what `gather` builds from the store."""
    history = CaseHistory(case_id)
    for position, event in events:
        history.add(position, event)
    return history
