"""Retention and erasure (issue 19): which data key a stored event is encrypted under, when a
closed file is due for erasure, what holds it, and the facts an erasure leaves behind.

The rules, in one place:

- **A data key per file.** The events of a case file (`Case`), of a minor on the roster
  (`RosterEntry`) and of a user record (`User`), and their snapshots, are encrypted under a data
  key of their own stream (`key_scope`); every other event (access events, refusals, notices,
  deadlines, investigations, findings...) stays under the service's key: it holds no content of a
  minor, and it is the trail an investigation needs after an erasure. The store's cipher keeps the
  data keys, wrapped by the service's key (`gateway.store.datakeys`), and answers `DataKeyring`.
- **Erasure is crypto-shredding.** Destroying a stream's data key leaves its rows in place (the
  Merkle log hashes ciphertext, so `verify` and inclusion proofs still pass) but unreadable by
  anyone: decoding one raises `DataErased`. The erasure itself is a fact, `DataKeyDestroyed`, in a
  stream of its own (`erasure_id`), under the service's key: an investigation sees that the file
  existed, when, and that it was erased under which rule, but not its content.
- **Retention** (`RetentionRules.due_on`): a closed file is kept `years_after_closure` years after
  its closure, or until the minor turns 18 plus `years_after_majority` years, whichever is later.
- **Holds** block the erasure of every file of the minor: an open investigation, an investigation
  order in force, an unreviewed compliance finding, or an explicit hold (`HoldReason`).

Proven by `tests/retention/` (shredding end to end, holds, migration of a store written before
this change) and `tests/specs/test_event_cipher_vectors.py` (the stored format, version 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import DomainEvent, Snapshot
from eventsourcing.utils import resolve_topic

from domain.errors import DomainError

ERASURE_NAMESPACE: Final = uuid5(NAMESPACE_URL, "https://casetrail.example/erasure")

# Ages, in years, that the rules count from (未成年人保护法 第二条: a minor is under 18).
AGE_OF_MAJORITY: Final = 18


class KeyScope(StrEnum):
    """Whose data key encrypts a stream's events."""

    CASE = "case"
    MINOR = "minor"
    USER = "user"
    # A guardian's request (domain/guardian_requests.py): keyed by its own stream, so that it
    # outlives the erasure of the file it names and can be erased on its own.
    REQUEST = "request"


def _keyed_aggregates() -> dict[type, KeyScope]:
    # Imported here: the aggregates import the domain's rules, not the other way round.
    from domain.case import Case  # noqa: PLC0415
    from domain.guardian_requests import GuardianRequest  # noqa: PLC0415
    from domain.roster import RosterEntry  # noqa: PLC0415
    from domain.users import User  # noqa: PLC0415

    return {
        Case: KeyScope.CASE,
        RosterEntry: KeyScope.MINOR,
        User: KeyScope.USER,
        GuardianRequest: KeyScope.REQUEST,
    }


_KEYED: dict[type, KeyScope] | None = None


def key_scope(event: Any) -> KeyScope | None:
    """The data key an event is encrypted under: its stream's (`KeyScope`), or None for the
    service's key. A snapshot goes with the aggregate it was taken of."""
    global _KEYED  # noqa: PLW0603 (a cache of a constant; see `_keyed_aggregates`)
    if _KEYED is None:
        _KEYED = _keyed_aggregates()
    if isinstance(event, Snapshot):
        try:
            owner = resolve_topic(event.topic)
        except (ImportError, AttributeError, ValueError):  # an unknown topic is not keyed
            return None
        return next(
            (s for a, s in _KEYED.items() if isinstance(owner, type) and issubclass(owner, a)),
            None,
        )
    return class_key_scope(type(event))


def class_key_scope(cls: type) -> KeyScope | None:
    """`key_scope` of every event of class `cls` (not a snapshot's: its scope is its owner's)."""
    global _KEYED  # noqa: PLW0603 (as in key_scope)
    try:
        return _SCOPE_OF_CLASS[cls]
    except KeyError:
        pass
    if _KEYED is None:
        _KEYED = _keyed_aggregates()
    scope = next((s for a, s in _KEYED.items() if issubclass(cls, a.Event)), None)  # type: ignore[attr-defined]
    _SCOPE_OF_CLASS[cls] = scope
    return scope


# An event's scope is its class's: found once per class (every event stored or read asks).
_SCOPE_OF_CLASS: dict[type, KeyScope | None] = {}


class DataErased(DomainError):
    """The data asked for was erased: its data key was destroyed (crypto-shredding). Raised by
    the store's cipher when it decodes an event of such a stream; answered 410 Gone."""

    status = 410
    code = "erased"

    def __init__(self, message: str, *, stream_id: UUID | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class ErasureHeld(DomainError):
    """A hold keeps the file (and every file of its minor) from erasure; `holds` says which."""

    status = 409
    code = "erasure_held"

    def __init__(self, message: str, *, holds: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.holds = holds


class ErasureUnavailable(DomainError):
    """The record cannot be erased by destroying a key: it has none of its own."""

    status = 409
    code = "erasure_unavailable"


@runtime_checkable
class DataKeyring(Protocol):
    """What the application needs of the store's data keys (the store's cipher answers it)."""

    def has_key(self, stream_id: UUID) -> bool:
        """Whether the stream has a live data key (False once destroyed, or never made)."""
        ...

    def is_destroyed(self, stream_id: UUID) -> bool:
        """Whether the stream's data key was destroyed, as this process knows it: at once in
        the process that destroyed it, within the keyring's cache period in the others (as
        decrypting one of its events would tell)."""
        ...

    def key_id(self, stream_id: UUID) -> str | None:
        """The id (hex) of the stream's data key, live or destroyed; None if it never had one."""
        ...

    def ensure_key(self, stream_id: UUID, scope: str) -> str:
        """The stream's data key id, made if it has none (a stream stored before data keys)."""
        ...

    def close(self) -> None:
        """Release the key table's connection (the application closes it with the store)."""
        ...

    def destroy(self, stream_id: UUID) -> str | None:
        """Destroy the stream's data key everywhere the service holds it, at once and for
        good; the key's id (hex), or None when it had none. Idempotent."""
        ...


def erasure_id(stream_id: UUID) -> UUID:
    """The stream of the erasure fact of one stream: one erasure per stream, ever."""
    return uuid5(ERASURE_NAMESPACE, f"erased:{stream_id}")


class DataKeyDestroyed(DomainEvent):
    """A stream's data key was destroyed: its events are unreadable from now on.

    `scope` says what the stream was (a case file, a minor on the roster, a user record);
    `rule` why (`retention`, `guardian_request`), `basis` the rule's text as configured at the
    time (e.g. "closed + 3 years / 18 + 3 years"), `due_on` the day it became due (None when not
    by retention), `by` who applied it (a person or the scheduled run), `key_id` the destroyed
    key's id (hex). No content of the stream is kept here."""

    stream_id: UUID
    scope: str
    rule: str
    basis: str
    due_on: str | None
    key_id: str
    by: dict[str, str]


def data_key_destroyed(
    *,
    stream_id: UUID,
    scope: KeyScope,
    rule: str,
    basis: str,
    due_on: date | None,
    key_id: str,
    by: dict[str, str],
) -> DataKeyDestroyed:
    values: dict[str, Any] = {
        "originator_id": erasure_id(stream_id),
        "originator_version": 1,
        "timestamp": DomainEvent.create_timestamp(),
        "stream_id": stream_id,
        "scope": str(scope),
        "rule": rule,
        "basis": basis,
        "due_on": due_on.isoformat() if due_on else None,
        "key_id": key_id,
        "by": by,
    }
    return DataKeyDestroyed(**values)


# --- retention ------------------------------------------------------------------------------------


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year that has none: the day after 28 February
        return day.replace(year=day.year + years, month=3, day=1)


@dataclass(frozen=True)
class RetentionRules:
    """How long a closed file is kept (the defaults and their legal basis: README, "Retention").

    A closed file is due `years_after_closure` years after its closure, or when the minor has
    been of age (18) for `years_after_majority` years, whichever is later."""

    years_after_closure: int = 3
    years_after_majority: int = 3

    def basis(self) -> str:
        return (
            f"closed + {self.years_after_closure} years / "
            f"{AGE_OF_MAJORITY} + {self.years_after_majority} years, whichever is later"
        )

    def due_on(self, *, closed_on: date, date_of_birth: date) -> date:
        return max(
            _add_years(closed_on, self.years_after_closure),
            _add_years(date_of_birth, AGE_OF_MAJORITY + self.years_after_majority),
        )


class HoldReason(StrEnum):
    """What keeps a minor's files from erasure."""

    INVESTIGATION = "investigation"  # an open reverse investigation (一案一倒查) names a file
    INVESTIGATION_ORDER = "investigation_order"  # an order in force names a file
    COMPLIANCE_FINDING = "compliance_finding"  # a finding on a file not yet reviewed
    EXPLICIT = "explicit"  # placed by a person, with a reason
