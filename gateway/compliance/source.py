"""The access records a compliance report shows: complete up to the store's end when asked.

The access-log read model (`projections.compliance.access_log`, view `accesses`) answers up to
its follower's position `p` (its rows at or below `p` only, so a follower moving on meanwhile
changes nothing); the access events stored after `p` that it has not applied yet are read from
the store (their topics only) and filtered by the same query here (`matches`). A report asked
right after a read therefore lists that read, whether the view runs in this process, in
another, or lags; a busy store makes the tail the follower's lag, never the whole log. Proven
by tests/integration/test_disclosures.py (the accounting lists the reads made just before it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from eventsourcing.domain import DomainEvent

from domain.application import CaseTrail
from domain.compliance.records import RECORD_TOPICS, AccessRecord, record_of
from projections.compliance.access_log import AccessQuery, search
from projections.readmodels import ReadModels

VIEW: Final = "accesses"
# A read of these fields alone shows nothing of the case itself (a compliance review's).
AUDIT_ONLY: Final = frozenset({"access_log"})


def is_disclosure(record: AccessRecord) -> bool:
    """A granted read that showed anything of the case beyond its access log: what an
    accounting of disclosures lists."""
    return record.granted and bool(set(record.fields) - AUDIT_ONLY)


def matches(query: AccessQuery, record: AccessRecord) -> bool:
    """Whether a record satisfies every filter of the query (as `search` applies them)."""
    if record.position <= query.after_position:
        return False
    if query.case_ids is not None and record.case_id not in query.case_ids:
        return False
    for wanted, value in (
        (query.user, record.user),
        (query.unit, record.unit),
        (query.street, record.street),
        (query.role, record.role),
        (query.rule, record.rule),
        (query.channel, record.channel),
    ):
        if wanted is not None and wanted != value:
            return False
    if query.kinds is not None and record.kind not in query.kinds:
        return False
    if query.since is not None and record.at < query.since:
        return False
    return query.until is None or record.at < query.until


def find_records(
    readmodels: ReadModels, application: CaseTrail, query: AccessQuery
) -> list[AccessRecord]:
    """The records matching `query`, in store order, up to `query.limit`: the view's up to its
    position, then the store's past it."""
    position = readmodels.follower(VIEW).position()
    with readmodels.accesses.reading() as db:
        limit = query.limit
        found = [r for r in search(db, query) if r.position <= position]
    if limit is not None and len(found) >= limit:
        return found[:limit]
    start = max(position, query.after_position) + 1
    tail_query = replace(query, after_position=max(position, query.after_position))
    decode = application.mapper.to_domain_event
    for notification in application.notifications(start=start, topics=RECORD_TOPICS):
        event = decode(notification)
        record = record_of(notification.id, event) if isinstance(event, DomainEvent) else None
        if record is not None and matches(tail_query, record):
            found.append(record)
            if limit is not None and len(found) >= limit:
                break
    return found
