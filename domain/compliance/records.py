"""One access record: what every compliance rule, the access-log read model, the disclosure
accounting and the FHIR export see of an access event, and nothing of the case's content.

`record_of(position, event)` turns a stored access event (`CaseAccessed`, `BreakGlassAccessed`,
`AccessDenied`) or a refused command (`CommandRefused`) into an `AccessRecord`; any other event
gives None. Pure: the same event at the same position always gives the same record, so a rule
re-run over the whole history sees exactly what incremental evaluation saw. `position` is the
event's notification id in the store (the evidence a finding cites). Proven by
tests/domain/test_access_records.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEvent

from domain.access import (
    NO_CASE,
    AccessDenied,
    BreakGlassAccessed,
    CaseAccessed,
    CommandRefused,
)
from domain.topics import topics_of


class RecordKind(StrEnum):
    READ = "read"  # a disclosure (CaseAccessed, BreakGlassAccessed)
    REFUSED_READ = "refused_read"  # AccessDenied
    REFUSED_COMMAND = "refused_command"  # CommandRefused


# The stored topics `record_of` understands (old topics included, see domain.topics).
RECORD_TOPICS: Final = topics_of(CaseAccessed, BreakGlassAccessed, AccessDenied, CommandRefused)


@dataclass(frozen=True)
class AccessRecord:
    """An access as a compliance reviewer sees it. `case_id` is None for a read or command that
    named no case (a ledger page, a lookup refused before any case). `fields` are the fields
    disclosed (empty when refused); `command` the refused command's name (else "")."""

    position: int
    event_id: UUID
    at: datetime
    kind: RecordKind
    case_id: UUID | None
    user: str
    role: str
    unit: str
    street: str
    purpose: str
    rule: str
    channel: str
    fields: tuple[str, ...]
    break_glass: bool
    request_id: str
    case_version: int | None
    client_address: str
    client_user_agent: str
    command: str = ""

    @property
    def granted(self) -> bool:
        return self.kind is RecordKind.READ


@dataclass(frozen=True)
class RecordPage:
    """Which of a case's access records to answer: those stored after position `after`, of
    `kinds` (every kind when None), the first `limit` of them (all when None), in store order.
    A page is full when it holds `limit` records: the next one starts after its last."""

    after: int = 0
    limit: int | None = None
    kinds: frozenset[RecordKind] | None = None

    def keeps(self, record: AccessRecord) -> bool:
        return record.position > self.after and (self.kinds is None or record.kind in self.kinds)

    def room(self, found: int) -> int | None:
        """How many more records the page takes after `found` (None: no bound)."""
        return None if self.limit is None else max(self.limit - found, 0)

    def next_after(self, records: list[AccessRecord]) -> int | None:
        """Where the following page starts, or None when `records` (this page) was the last."""
        if self.limit is None or len(records) < self.limit or not records:
            return None
        return records[-1].position


EVERY_RECORD: Final = RecordPage()


class AccessRecordSource(Protocol):
    """A case's access records on one page, complete up to the store's end at the call (the
    access-log read model's `CaseLog`, wired by `gateway.bootstrap`)."""

    def __call__(self, case_id: UUID, page: RecordPage = EVERY_RECORD) -> list[AccessRecord]: ...


def record_of(position: int, event: DomainEvent) -> AccessRecord | None:
    """The access record of a stored event, or None when the event is not an access event."""
    if isinstance(event, CaseAccessed | AccessDenied):
        kind = RecordKind.READ if isinstance(event, CaseAccessed) else RecordKind.REFUSED_READ
        fields = tuple(getattr(event, "fields", ()))
        purpose, command, case_version = event.purpose, "", event.case_version
    elif isinstance(event, CommandRefused):
        kind, fields = RecordKind.REFUSED_COMMAND, ()
        purpose, command, case_version = "", event.command, None
    else:
        return None
    actor, client = event.actor, event.client
    return access_record(
        {
            "position": position,
            "event_id": event.originator_id,
            "at": event.timestamp,
            "kind": kind,
            "case_id": None if event.case_id == NO_CASE else event.case_id,
            "user": actor.get("user", ""),
            "role": actor.get("role", ""),
            "unit": actor.get("unit", ""),
            "street": actor.get("street", ""),
            "purpose": purpose,
            "rule": event.rule,
            "channel": event.channel,
            "fields": fields,
            "break_glass": isinstance(event, BreakGlassAccessed),
            "request_id": event.request_id,
            "case_version": case_version,
            "client_address": client.get("address", ""),
            "client_user_agent": client.get("user_agent", ""),
            "command": command,
        }
    )


_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(AccessRecord))


def access_record(state: dict[str, Any]) -> AccessRecord:
    """An `AccessRecord` of every field's value, built as the library's mapper builds an
    event (its state set whole): the frozen dataclass's `__init__` sets 19 fields one
    `object.__setattr__` at a time, a tenth of the access log's indexing of an event."""
    if state.keys() != _FIELDS:
        raise ValueError(f"an access record has the fields {sorted(_FIELDS)}")
    record = object.__new__(AccessRecord)
    object.__setattr__(record, "__dict__", state)
    return record
