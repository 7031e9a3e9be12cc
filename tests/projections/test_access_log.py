"""The access-log read model (`projections.compliance.access_log`), on real SQLite files and real
PostgreSQL schemas: its rows are the records of the stored access events (`record_of`), a rebuild
from zero equals incremental following, each filter of `search` finds exactly what a scan of the
records finds, the break-glass review lands on its access, the bytes of the tables hold none of
the planted people, units, streets or client addresses, and `CaseLog` is complete up to the
store's end while the follower lags."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Notification
from faker import Faker

from domain import commands as cmd
from domain.access import (
    NO_CASE,
    Actor,
    Channel,
    Client,
    Decision,
    access_event,
    command_refused,
    review_event,
)
from domain.application import CaseTrail
from domain.compliance.records import RECORD_TOPICS, AccessRecord, RecordKind, RecordPage, record_of
from domain.retention import DataErased, KeyScope
from domain.taxonomy import Purpose, Role
from gateway.store.eventstore import EventIntegrityError
from projections.compliance.access_log import (
    TABLE,
    AccessLogView,
    AccessQuery,
    CaseLog,
    case_log,
    record_from,
    record_values,
    search,
    stored_values,
)
from projections.follower import plain_state
from projections.ledger.quarters import stamp
from projections.readmodels import ReadModels
from projections.sealed import ReadModelKeys
from tests.architecture.test_stored_topics import FIXTURE_HOME, open_store
from tests.integration.planted import planted_case
from tests.projections.test_privacy import _postgres_bytes, _sqlite_bytes

START = datetime(2026, 3, 1, tzinfo=UTC)


class History:
    """A seeded mix of access events (granted, break-glass, refused, refused commands, reads
    naming no case) over a few cases, people, units and streets, spread over 30 days."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        fake = Faker("zh_CN")
        fake.seed_instance(seed)
        self.streets = [f"{fake.city_name()}街道-{i}" for i in range(2)]
        self.units = [f"{fake.company_prefix()}-{i}" for i in range(4)]
        self.people = [
            Actor(
                f"{fake.name()}-{i}",
                self.rng.choice(list(Role)),
                self.units[i % len(self.units)],
                self.streets[i % len(self.streets)],
            )
            for i in range(6)
        ]
        self.clients = [Client(fake.ipv4_private(), fake.user_agent()) for _ in range(3)]
        self.cases = [uuid4() for _ in range(5)]
        self.clock = START

    def events(self, count: int) -> list[DomainEvent]:
        found: list[DomainEvent] = []
        rng = self.rng
        for n in range(count):
            self.clock += timedelta(minutes=rng.randint(1, 60 * 24 * 30 // (count + 100)))
            actor = rng.choice(self.people)
            case_id = rng.choice([*self.cases, NO_CASE]) if n % 7 else NO_CASE
            channel = rng.choice(list(Channel))
            client = rng.choice(self.clients)
            what = rng.random()
            event: DomainEvent
            if what < 0.15:
                event = command_refused(
                    case_id=case_id,
                    actor=actor,
                    command=rng.choice(["assign_unit", "close", "record_follow_up"]),
                    rule=rng.choice(["not_permitted", "not_visible"]),
                    request_id=f"req-{n}",
                    channel=channel,
                    client=client,
                )
            else:
                granted = what < 0.75
                glass = granted and what > 0.65
                decision = Decision(
                    granted,
                    rng.choice(["coordinator_same_street", "unit_member_assigned", "out_of_scope"]),
                    frozenset(rng.sample(["risk", "status", "minor.name", "issues.health"], 2))
                    if granted
                    else frozenset(),
                    break_glass=glass,
                )
                event = access_event(
                    decision,
                    case_id=case_id,
                    actor=actor,
                    purpose=rng.choice(list(Purpose)),
                    request_id=f"req-{n}",
                    case_version=rng.randint(1, 30) if case_id != NO_CASE else None,
                    channel=channel,
                    client=client,
                    break_glass_reason="紧急" if glass else None,
                )
            found.append(type(event)(**{**vars(event), "timestamp": self.clock}))
        return found


def stored_records(application: CaseTrail) -> list[AccessRecord]:
    """Every access record, by a scan of the store: what the view must hold."""
    found = []
    for notification in application.notifications(topics=RECORD_TOPICS):
        event = application.mapper.to_domain_event(notification)
        assert isinstance(event, DomainEvent)
        record = record_of(notification.id, event)
        assert record is not None
        found.append(record)
    return found


def view_records(readmodels: ReadModels, query: AccessQuery | None = None) -> list[AccessRecord]:
    with readmodels.accesses.reading() as db:
        return search(db, query or AccessQuery())


def test_rows_are_the_records_and_a_rebuild_equals_incremental_following(
    application: CaseTrail, open_readmodels: Any
) -> None:
    history = History(seed=151)
    readmodels = open_readmodels(batch_size=7)
    for count in (5, 40, 1, 30):
        application.store_events(history.events(count))
        readmodels.follower("accesses").catch_up()
    expected = stored_records(application)
    assert len(expected) == 76
    assert view_records(readmodels) == expected
    followed = readmodels.accesses.dump(TABLE)
    readmodels.rebuild("accesses")
    assert readmodels.accesses.dump(TABLE) == followed
    assert view_records(readmodels) == expected
    with readmodels.accesses.reading() as db:
        for case_id in history.cases:
            assert case_log(db, case_id) == [r for r in expected if r.case_id == case_id]
        # The nil case id of reads naming no case is held as no case, never listed as one.
        assert case_log(db, NO_CASE) == []


def _filters(history: History, records: list[AccessRecord]) -> list[AccessQuery]:
    someone, other = history.people[0], history.people[1]
    middle = records[len(records) // 2].at
    return [
        AccessQuery(case_ids=(history.cases[0],)),
        AccessQuery(case_ids=(history.cases[1], history.cases[2])),
        AccessQuery(case_ids=()),
        AccessQuery(user=someone.user),
        AccessQuery(unit=other.unit),
        AccessQuery(street=history.streets[1]),
        AccessQuery(role=str(someone.role)),
        AccessQuery(rule="out_of_scope"),
        AccessQuery(channel=str(Channel.LEDGER)),
        AccessQuery(kinds=(RecordKind.REFUSED_COMMAND,)),
        AccessQuery(kinds=(RecordKind.READ, RecordKind.REFUSED_READ)),
        AccessQuery(kinds=()),
        AccessQuery(since=middle),
        AccessQuery(until=middle),
        AccessQuery(since=middle, until=middle + timedelta(days=3)),
        AccessQuery(after_position=records[10].position),
        AccessQuery(limit=5),
        AccessQuery(after_position=records[3].position, limit=4, unit=someone.unit),
        AccessQuery(user=someone.user, case_ids=(history.cases[0],), since=START),
        AccessQuery(user="nobody at all"),
    ]


def _matches(query: AccessQuery, r: AccessRecord) -> bool:
    return (
        (query.case_ids is None or r.case_id in query.case_ids)
        and (query.user is None or r.user == query.user)
        and (query.unit is None or r.unit == query.unit)
        and (query.street is None or r.street == query.street)
        and (query.role is None or r.role == query.role)
        and (query.rule is None or r.rule == query.rule)
        and (query.channel is None or r.channel == query.channel)
        and (query.kinds is None or r.kind in query.kinds)
        and (query.since is None or r.at >= query.since)
        and (query.until is None or r.at < query.until)
        and r.position > query.after_position
    )


def test_search_finds_what_each_filter_selects(
    application: CaseTrail, open_readmodels: Any
) -> None:
    history = History(seed=152)
    application.store_events(history.events(160))
    readmodels = open_readmodels()
    readmodels.follower("accesses").catch_up()
    records = stored_records(application)
    for query in _filters(history, records):
        expected = [r for r in records if _matches(query, r)][: query.limit]
        assert view_records(readmodels, query) == expected, query
    # Each filter on its own selects something and leaves something out (the test can fail).
    for query in _filters(history, records)[:11]:
        if query.case_ids == ():
            continue
        assert 0 < len(view_records(readmodels, query)) < len(records), query


def test_many_cases_are_searched_in_chunks(application: CaseTrail, open_readmodels: Any) -> None:
    history = History(seed=153)
    history.cases = [uuid4() for _ in range(900)]
    application.store_events(history.events(300))
    readmodels = open_readmodels()
    readmodels.follower("accesses").catch_up()
    records = stored_records(application)
    wanted = tuple(history.cases)
    expected = [r for r in records if r.case_id in wanted]
    assert view_records(readmodels, AccessQuery(case_ids=wanted)) == expected
    assert view_records(readmodels, AccessQuery(case_ids=wanted, limit=7)) == expected[:7]


def test_a_break_glass_review_lands_on_its_access(
    application: CaseTrail, open_readmodels: Any
) -> None:
    history = History(seed=154)
    reader = history.people[2]
    glass = access_event(
        Decision(True, "break_glass", frozenset({"risk"}), break_glass=True),
        case_id=history.cases[0],
        actor=reader,
        purpose=Purpose.EMERGENCY,
        request_id="req-glass",
        case_version=3,
        channel=Channel.API,
        client=history.clients[0],
        break_glass_reason="紧急情况",
    )
    auditor = Actor("auditor-1", Role.COMPLIANCE_AUDITOR, "county-compliance", "")
    # The access and its review in one batch, and a second access reviewed in a later one.
    application.store_events(
        [glass, review_event(glass.originator_id, "justified", "核实", auditor)]
    )
    later = type(glass)(**{**vars(glass), "originator_id": uuid4()})
    application.store_events([later])
    readmodels = open_readmodels()
    readmodels.follower("accesses").catch_up()
    application.store_events([review_event(later.originator_id, "violation", "越权", auditor)])
    readmodels.follower("accesses").catch_up()
    with readmodels.accesses.reading() as db:
        rows = db.execute(
            f"SELECT event_id, break_glass, review_outcome, reviewed_at FROM {{{TABLE}}} "
            "ORDER BY position"
        )
    assert [(r["event_id"], r["break_glass"], r["review_outcome"]) for r in rows] == [
        (str(glass.originator_id), 1, "justified"),
        (str(later.originator_id), 1, "violation"),
    ]
    assert all(r["reviewed_at"] for r in rows)


def test_the_tables_hold_no_person_unit_street_or_client_in_clear(
    application: CaseTrail, open_readmodels: Any, store_url: str, tmp_path: Path
) -> None:
    history = History(seed=155)
    planted_user = "金丝雀用户甲一"
    planted_unit = "canary-unit-7731"
    planted_street = "金丝雀街道乙二"
    planted_address = "10.203.77.41"
    planted_agent = "CanaryAgent/9.7"
    actor = Actor(planted_user, Role.UNIT_MEMBER, planted_unit, planted_street)
    client = Client(planted_address, planted_agent)
    planted: list[DomainEvent] = [
        access_event(
            Decision(
                granted, "unit_member_assigned", frozenset({"risk"}) if granted else frozenset()
            ),
            case_id=history.cases[0],
            actor=actor,
            purpose=Purpose.FOLLOW_UP,
            request_id=f"req-canary-{granted}",
            case_version=2,
            channel=Channel.API,
            client=client,
        )
        for granted in (True, False)
    ]
    planted.append(
        command_refused(
            case_id=history.cases[1],
            actor=actor,
            command="close",
            rule="not_permitted",
            request_id="req-canary-command",
            channel=Channel.API,
            client=client,
        )
    )
    application.store_events([*history.events(20), *planted])
    readmodels = open_readmodels()
    readmodels.follower("accesses").catch_up()
    # Found through their tokens, shown opened.
    mine = view_records(readmodels, AccessQuery(user=planted_user))
    assert [r.client_address for r in mine] == [planted_address] * 3
    assert view_records(readmodels, AccessQuery(unit=planted_unit)) == mine
    assert view_records(readmodels, AccessQuery(street=planted_street)) == mine
    if store_url.startswith("sqlite:///"):
        found = _sqlite_bytes(tmp_path)
    else:
        found = _postgres_bytes(str(readmodels.datastore.schema), readmodels)
    assert len(found) > 10_000
    for value in (planted_user, planted_unit, planted_street, planted_address, planted_agent):
        assert value.encode() not in found, value
    # The scan itself can find what is there: the rule codes are held in clear.
    assert b"unit_member_assigned" in found


def _lagging_log(
    application: CaseTrail, open_readmodels: Any, seed: int, applied: int, lagging: int
) -> tuple[History, ReadModels, CaseLog]:
    """A history's first `applied` events in the view, its next `lagging` stored after the
    view's position (the log reads those from the store), and the case log over both."""
    history = History(seed=seed)
    application.store_events(history.events(applied))
    readmodels = open_readmodels()
    readmodels.follower("accesses").catch_up()
    application.store_events(history.events(lagging))
    return history, readmodels, CaseLog(application, application.name, readmodels.accesses)


def test_case_log_is_complete_while_the_follower_lags(
    application: CaseTrail, open_readmodels: Any
) -> None:
    history, readmodels, log = _lagging_log(application, open_readmodels, 156, 50, 30)
    records = stored_records(application)
    in_tail = 0
    for case_id in history.cases:
        expected = [r for r in records if r.case_id == case_id]
        applied, position = log.applied(case_id)
        assert applied == [r for r in expected if r.position <= position]
        assert log(case_id) == expected
        in_tail += len(expected) - len(applied)
    # The random history need not give every case a record in the tail; most must be there.
    assert in_tail >= 10, "too few of the cases' records are in the tail to prove anything"
    readmodels.follower("accesses").catch_up()
    assert [log(c) for c in history.cases] == [
        [r for r in records if r.case_id == c] for c in history.cases
    ]


def test_a_page_of_a_case_log_is_the_slice_of_its_whole_log(
    application: CaseTrail, open_readmodels: Any
) -> None:
    """Every page (after, limit, kinds) the view and tail answer equals the slice of the whole
    log, and the store's scan (no read model wired) answers the same: while the follower lags
    (pages cross from view to tail) and once it has caught up."""
    history, readmodels, log = _lagging_log(application, open_readmodels, 158, 60, 40)
    records = stored_records(application)
    reads = frozenset({RecordKind.READ, RecordKind.REFUSED_READ})
    crossed = 0
    for lagging in (True, False):
        if not lagging:
            readmodels.follower("accesses").catch_up()
        for case_id in history.cases:
            whole = [r for r in records if r.case_id == case_id]
            positions = [0, *(r.position for r in whole)]
            for kinds in (None, reads):
                for after in positions[:: max(1, len(positions) // 4)]:
                    for limit in (None, 1, 2, 5):
                        page = RecordPage(after, limit, kinds)
                        kept = [r for r in whole if page.keeps(r)]
                        expected = kept if limit is None else kept[:limit]
                        assert log(case_id, page) == expected, (case_id, page)
                        assert application.access_records(case_id, page) == expected
                        applied, _ = log.applied(case_id, page)
                        crossed += lagging and 0 < len(applied) < len(expected)
    assert crossed >= 5, "too few pages crossed from the view to the tail to prove anything"
    # A page of no kinds, or of no room, is empty.
    case_id = history.cases[0]
    assert log(case_id, RecordPage(kinds=frozenset())) == []
    assert log(case_id, RecordPage(limit=0)) == []
    assert application.access_records(case_id, RecordPage(limit=0)) == []


def test_an_unknown_case_has_an_empty_log(application: CaseTrail, open_readmodels: Any) -> None:
    readmodels = open_readmodels()
    log = CaseLog(application, application.name, readmodels.accesses)
    assert log(UUID(int=7)) == []


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_finds_nothing(
    application: CaseTrail, open_readmodels: Any, limit: int
) -> None:
    application.store_events(History(seed=157).events(5))
    readmodels = open_readmodels()
    readmodels.catch_up()
    assert view_records(readmodels, AccessQuery(limit=limit)) == []


# --- rows made from plain states (`View.plain`, `stored_values`) --------------------------------


def _values_both_ways(application: CaseTrail) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """For every access record stored: (its values from the plain state, from the event)."""
    found = []
    notifications = application.notifications(topics=RECORD_TOPICS)
    for notification, record in zip(notifications, stored_records(application), strict=True):
        plain = stored_values(notification, plain_state(application.mapper, notification))
        assert plain is not None
        found.append((plain, record_values(record)))
    return found


def test_values_from_the_plain_state_are_the_records_values(application: CaseTrail) -> None:
    history = History(seed=163)
    events = history.events(60)
    # The service's timestamps carry microseconds, in UTC (the row's stamp is cut from the
    # text); a whole second is written without them by `isoformat`, and another zone with its
    # offset (the stamp is parsed): every kind.
    beijing = timezone(timedelta(hours=8))
    events = [
        type(e)(**{**vars(e), "timestamp": _moment(e.timestamp, n, beijing)})
        for n, e in enumerate(events)
    ]
    application.store_events(events)
    pairs = _values_both_ways(application)
    assert len(pairs) == 60
    kinds = {
        (values["kind"], values["break_glass"], values["case_id"] is None) for _, values in pairs
    }
    assert len(kinds) >= 5  # reads, break-glass, refusals, refused commands, no case named
    view = AccessLogView(ReadModelKeys(os.urandom(32)))
    for plain, values in pairs:
        assert plain == values
        # The row too, its time stamped from the text (cut, or parsed) as from the datetime.
        row = view.row_of(plain)
        assert row == view.row_of(record_values(record_from(values)))
        assert row[3] == stamp(datetime.fromisoformat(values["at"]))
    # The library's mapper path (no `to_plain_state`) gives the same plain states.
    mapper: Any = application.mapper
    library_path: Any = _WithoutPlainStates(mapper)
    for notification in application.notifications(topics=RECORD_TOPICS):
        assert plain_state(library_path, notification) == mapper.to_plain_state(notification)


def _moment(at: datetime, n: int, zone: timezone) -> datetime:
    if n % 3 == 0:
        return at  # whole minutes
    shifted = at + timedelta(microseconds=n * 7919 % 10**6)
    return shifted.astimezone(zone) if n % 5 == 0 else shifted


class _WithoutPlainStates:
    """A mapper that only decodes events (as the library's own): `plain_state`'s fallback."""

    def __init__(self, mapper: Any) -> None:
        self.to_domain_event = mapper.to_domain_event
        self.transcoder = mapper.transcoder


def test_values_from_the_old_stores_plain_states_are_the_records_values(tmp_path: Path) -> None:
    """The store written before access events had version 2 (format-1 states, class version 1):
    upcast from their plain states as from their events."""
    home = tmp_path / "home"
    shutil.copytree(FIXTURE_HOME, home)
    old = open_store(home)
    try:
        pairs = _values_both_ways(old)
        assert len(pairs) >= 3
        assert {values["channel"] for _, values in pairs} == {"unrecorded"}
        for plain, values in pairs:
            assert plain == values
    finally:
        old.close()


def test_a_plain_state_is_refused_where_the_event_is(application: CaseTrail) -> None:
    """Authentication and erasure hold for plain states as for events: a state moved to another
    row fails; a case file's state (its own data key) is refused once the key is destroyed."""
    reporter = Actor("user-1", Role.REPORTER, "dongshan-village", "chengguan-street")
    case_id = application.report_clue(cmd.ReportClue.model_validate(planted_case().body), reporter)
    mapper: Any = application.mapper
    (created,) = [n for n in application.notifications() if n.originator_id == case_id]
    plain = mapper.to_plain_state(created)
    assert plain_state(_WithoutPlainStates(mapper), created) == plain  # type: ignore[arg-type]
    moved = Notification(
        id=created.id,
        originator_id=uuid4(),
        originator_version=created.originator_version,
        topic=created.topic,
        state=created.state,
    )
    with pytest.raises(EventIntegrityError):
        mapper.to_plain_state(moved)
    application.erase(case_id, scope=KeyScope.CASE, rule="retention", basis="t", due_on=None, by={})
    with pytest.raises(DataErased):
        mapper.to_plain_state(created)


def test_a_value_sealed_before_orjson_still_opens(index_key: bytes) -> None:
    """Rows sealed by `json` (before the view's rows were sealed with orjson) open as they
    were; a value orjson refuses is written by `json`."""
    keys = ReadModelKeys(index_key)
    values = {"user": "张伟", "fields": ["risk"], "case_version": 3, "break_glass": False}
    plain = json.dumps(values, ensure_ascii=False, sort_keys=True).encode()
    associated = keys._associated(TABLE, "position:9")
    nonce = hmac.new(keys._nonce_key, associated + b"\x00" + plain, hashlib.sha256).digest()[:12]
    old = base64.b64encode(b"\x01" + nonce + keys._aead.encrypt(nonce, plain, associated)).decode()
    assert keys.open(TABLE, "position:9", old) == values
    assert keys.open(TABLE, "position:9", keys.seal(TABLE, "position:9", values)) == values
    assert keys.open(TABLE, "position:9", keys.seal(TABLE, "position:9", {"n": 2**70 + 1})) == {
        "n": 2**70 + 1
    }


@pytest.mark.parametrize("number", [2**70 + 1, -(2**63) - 1, 2**63 + 1])
def test_a_plain_state_keeps_an_integer_past_64_bits_exact(
    application: CaseTrail, number: int
) -> None:
    """orjson reads such an integer as a float: the plain state must not lose its digits."""
    history = History(seed=167)
    event = access_event(
        Decision(True, "coordinator_same_street", frozenset({"risk"})),
        case_id=history.cases[0],
        actor=history.people[0],
        purpose=Purpose.CONSULTATION,
        request_id="req-long",
        case_version=number,
        channel=Channel.API,
        client=history.clients[0],
    )
    application.store_events([event])
    (notification,) = application.notifications(topics=RECORD_TOPICS)
    mapper: Any = application.mapper
    assert mapper.to_plain_state(notification)["case_version"] == number
    values = stored_values(notification, mapper.to_plain_state(notification))
    assert values is not None
    assert type(values["case_version"]) is int
