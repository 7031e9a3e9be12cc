"""Reading a store after erasures (issue 19): an erased event is skipped, never a failure.

Once a stream's data key is destroyed (`domain.retention`, crypto-shredding), decoding any of
its events raises `DataErased`. Everything that reads the log (the read models' followers, the
investigation history, the relay, the deadline scheduler, evidence bundles, reports, exports)
goes through `readable` / `decoded` (the generic follower, which imports no domain, knows
`DataErased` by its code: `projections.follower.erased`): an erased event is left out, as if
the reader had not asked for it, so a follower moves past it and a rebuild from position 0
after an erasure ends in the same rows as following it did. The erasure itself
(`DataKeyDestroyed`, under the service's key) is what the read models fold into a tombstone:
`erasure_split` hands a view the facts of a batch and the events of the streams that stay.

Proven by tests/retention/test_tombstones.py (every view and reader after an erasure, on
following and on rebuild) and tests/retention/test_shredding.py (end to end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

from eventsourcing.persistence import Notification

from domain.retention import DataErased, DataKeyDestroyed
from domain.topics import topics_of

ERASURE_TOPICS: Final = topics_of(DataKeyDestroyed)

N = TypeVar("N", bound=Notification)


def decoded(decode: Callable[[N], Any], notification: N) -> Any | None:
    """The decoded event, or None when it was erased (its data key destroyed)."""
    try:
        return decode(notification)
    except DataErased:
        return None


def readable(decode: Callable[[N], Any], notifications: Iterable[N]) -> Iterator[tuple[N, Any]]:
    """(notification, event) for each notification still readable, in order; erased ones are
    left out."""
    for notification in notifications:
        try:
            event = decode(notification)
        except DataErased:
            continue
        yield notification, event


def readable_events(decode: Callable[[N], Any], notifications: Iterable[N]) -> Iterator[Any]:
    """The decoded events still readable, in order (`readable` without the notifications)."""
    for _, event in readable(decode, notifications):
        yield event


def erasure_split(events: Sequence[Any]) -> tuple[list[Any], list[DataKeyDestroyed]]:
    """A batch's events without those of the streams it erases, and its erasure facts.

    An event of an erased stream that was still readable when decoded (stored before the fact,
    or read while another process's key cache still held the key) is dropped with the rest of
    its stream: the view ends as if it had never seen the stream, as a rebuild does."""
    facts = [e for e in events if isinstance(e, DataKeyDestroyed)]
    if not facts:
        return list(events), []
    gone = {str(f.stream_id) for f in facts}
    kept = [
        e
        for e in events
        if not isinstance(e, DataKeyDestroyed) and str(e.originator_id) not in gone
    ]
    return kept, facts


def tombstone_of(fact: DataKeyDestroyed) -> dict[str, Any]:
    """What a tombstone keeps of an erased stream: that it existed and was erased, when, under
    which rule, and by which kind of actor; nothing of its content (the stream id is a random
    UUID, the person who applied it is not named, only their role)."""
    return {
        "stream_id": str(fact.stream_id),
        "scope": fact.scope,
        "rule": fact.rule,
        "basis": fact.basis,
        "due_on": fact.due_on,
        "erased_at": fact.timestamp.isoformat(),
        "by_role": str(fact.by.get("role", "")),
    }
