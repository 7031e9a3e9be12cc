"""The access log read model (`accesses`): one row per access record, indexed by case, person,
unit, time, rule and channel, holding no case content and nothing identifying in clear.

Every stored access event (`CaseAccessed`, `BreakGlassAccessed`, `AccessDenied`) and refused
command (`CommandRefused`) becomes one row of `accesses_records`, keyed by its position in the
store (`domain.compliance.records.record_of`):

- in clear, for filtering and ordering (codes, no person): `position`, `case_id` (the opaque
  uuid, as the ledger holds it; NULL for an access that named no case), `at` (a sortable UTC
  stamp, `projections.ledger.quarters.stamp`), `kind`, `role`, `channel`, `rule`, `purpose`,
  `granted`, `break_glass`, and the break-glass review's `review_outcome` / `reviewed_at`
  (from `BreakGlassReviewed`, the review's note never);
- as keyed HMAC tokens (`projections.sealed.ReadModelKeys.token`, as the ledger hashes its
  units): `user_h`, `unit_h`, `street_h` (a query hashes its value the same way);
- sealed (AES-256-GCM bound to the table and the row's position, as the ledger seals): the
  whole `AccessRecord` (user, unit, street, fields, request id, client address and user agent,
  command...), opened when a row is read.

Indexing reads each event's plain state (`View.plain`), not the event: `stored_values` gives
the values `record_values(record_of(...))` gives, at half the cost (bench/README.md, "eleventh
round"); the tests hold the two equal for every record topic and both class versions.

Reading (THE contract other parts code against): `search(db, AccessQuery(...))` and
`case_log(db, case_id)` in a reading transaction of `ReadModels.accesses`
(`with readmodels.accesses.reading() as db:`), records in position order. `CaseLog` is the
per-case access log complete up to the store's end (the view's rows, then the tail of the log
the follower has not applied yet, read from the store): what `GET /v1/cases/{id}/accesses`
answers, a page at a time (`CaseLog(case_id, RecordPage(after, limit, kinds))`: the tail is
read only when the view's rows do not fill the page), without a scan of the whole store, and
with every access stored before the request's own (read-your-writes).

Proven by tests/projections/test_access_log.py (rows equal the records of the events, on SQLite
and PostgreSQL; rebuild equals incremental; every filter; planted values absent from the bytes)
and tests/integration/test_access_log_endpoint.py (the endpoint equals the earlier full scan;
read-your-writes with the follower stopped; pages followed to the end equal the whole log).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Mapper, Notification

from domain.access import (
    NO_CASE,
    AccessDenied,
    BreakGlassAccessed,
    BreakGlassReviewed,
    CaseAccessed,
    CommandRefused,
)
from domain.compliance.records import (
    EVERY_RECORD,
    RECORD_TOPICS,
    AccessRecord,
    RecordKind,
    RecordPage,
    access_record,
    record_of,
)
from domain.topics import topics_of
from projections.follower import Batch, Db, Dialect, View
from projections.ledger.quarters import stamp
from projections.sealed import KeyedDb, ReadModelKeys

TABLE: Final = "accesses_records"
REVIEW_TOPICS: Final = topics_of(BreakGlassReviewed)
ACCESS_LOG_TOPICS: Final = (*RECORD_TOPICS, *REVIEW_TOPICS)

_COLUMNS: Final = (
    "position",
    "event_id",
    "case_id",
    "at",
    "kind",
    "role",
    "channel",
    "rule",
    "purpose",
    "granted",
    "break_glass",
    "user_h",
    "unit_h",
    "street_h",
    "sealed",
)
# Token kinds (`ReadModelKeys.token`): the unit's is the ledger's own, so one token finds a
# unit in both read models.
_USER, _UNIT, _STREET = "user", "unit", "street"
_TOKEN_CACHE: Final = 10_000
# SQLite allows 999 host parameters per statement in old builds: IN lists go in chunks.
_CHUNK: Final = 400


def record_values(record: AccessRecord) -> dict[str, Any]:
    """The record as JSON-able values (sealed in a row; `record_from` turns them back)."""
    return {
        "position": record.position,
        "event_id": str(record.event_id),
        "at": record.at.isoformat(),
        "kind": str(record.kind),
        "case_id": None if record.case_id is None else str(record.case_id),
        "user": record.user,
        "role": record.role,
        "unit": record.unit,
        "street": record.street,
        "purpose": record.purpose,
        "rule": record.rule,
        "channel": record.channel,
        "fields": list(record.fields),
        "break_glass": record.break_glass,
        "request_id": record.request_id,
        "case_version": record.case_version,
        "client_address": record.client_address,
        "client_user_agent": record.client_user_agent,
        "command": record.command,
    }


def record_from(values: dict[str, Any], case_id: UUID | None = None) -> AccessRecord:
    """The record `record_values` gave `values` of. `case_id`: the case, when the caller knows
    it already (a case's log: one UUID for all its records, not one parsed per record)."""
    case = values["case_id"]
    state = {
        "position": int(values["position"]),
        "event_id": UUID(values["event_id"]),
        "at": datetime.fromisoformat(values["at"]),
        "kind": RecordKind(values["kind"]),
        "case_id": None if case is None else (case_id if case_id is not None else UUID(case)),
        "user": values["user"],
        "role": values["role"],
        "unit": values["unit"],
        "street": values["street"],
        "purpose": values["purpose"],
        "rule": values["rule"],
        "channel": values["channel"],
        "fields": tuple(values["fields"]),
        "break_glass": bool(values["break_glass"]),
        "request_id": values["request_id"],
        "case_version": values["case_version"],
        "client_address": values["client_address"],
        "client_user_agent": values["client_user_agent"],
        "command": values.get("command", ""),
    }
    # Its state set whole (`access_record`): a case's log opens one per access.
    return access_record(state)


def _binding(position: int) -> str:
    # The sealed record is bound to its row (the position): copied into another row it fails.
    return f"position:{position}"


class AccessLogView(View):
    name = "accesses"
    tables = (TABLE,)
    topics = ACCESS_LOG_TOPICS
    plain = True  # rows are made from the events' plain states (`stored_values`)

    def __init__(self, keys: ReadModelKeys) -> None:
        self.keys = keys
        # The same few people, units and streets recur in every batch: each token is computed
        # once (a keyed HMAC each), up to a bound.
        self._tokens: dict[tuple[str, str], str] = {}

    def _token(self, kind: str, value: str) -> str:
        token = self._tokens.get((kind, value))
        if token is None:
            if len(self._tokens) >= _TOKEN_CACHE:
                self._tokens.clear()
            token = self._tokens[(kind, value)] = self.keys.token(kind, value)
        return token

    def create_statements(self, dialect: Dialect) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {{{TABLE}}} ("
            "position BIGINT PRIMARY KEY, event_id TEXT NOT NULL, case_id TEXT, "
            "at TEXT NOT NULL, kind TEXT NOT NULL, role TEXT NOT NULL, channel TEXT NOT NULL, "
            "rule TEXT NOT NULL, purpose TEXT NOT NULL, granted BIGINT NOT NULL, "
            "break_glass BIGINT NOT NULL, user_h TEXT NOT NULL, unit_h TEXT NOT NULL, "
            "street_h TEXT NOT NULL, sealed TEXT NOT NULL, review_outcome TEXT, "
            "reviewed_at TEXT)",
            # One per question a reviewer asks: a case's log, a person's or a unit's accesses
            # over a period, a period, a rule, a channel. The case's, rule's and channel's end
            # with the position, the order a page is read in, so such a page walks its index;
            # a person's or unit's period is found by its index and sorted (a few rows).
            f"CREATE INDEX IF NOT EXISTS accesses_case ON {{{TABLE}}} (case_id, position)",
            f"CREATE INDEX IF NOT EXISTS accesses_user ON {{{TABLE}}} (user_h, at)",
            f"CREATE INDEX IF NOT EXISTS accesses_unit ON {{{TABLE}}} (unit_h, at)",
            f"CREATE INDEX IF NOT EXISTS accesses_at ON {{{TABLE}}} (at)",
            f"CREATE INDEX IF NOT EXISTS accesses_rule ON {{{TABLE}}} (rule, position)",
            f"CREATE INDEX IF NOT EXISTS accesses_channel ON {{{TABLE}}} (channel, position)",
            # A break-glass review finds its access by the access's stream id.
            f"CREATE INDEX IF NOT EXISTS accesses_event ON {{{TABLE}}} (event_id)",
        ]

    def row_of(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The row of an access record's values (`stored_values`, or `record_values`)."""
        position = values["position"]
        return (
            position,
            values["event_id"],
            values["case_id"],
            _stamp_text(values["at"]),
            values["kind"],
            values["role"],
            values["channel"],
            values["rule"],
            values["purpose"],
            int(values["kind"] == RecordKind.READ),
            int(values["break_glass"]),
            self._token(_USER, values["user"]),
            self._token(_UNIT, values["unit"]),
            self._token(_STREET, values["street"]),
            self.keys.seal(TABLE, _binding(position), values),
        )

    def apply(self, db: Db, batch: Batch) -> None:
        rows: list[tuple[Any, ...]] = []
        reviews: list[tuple[str, str, str]] = []
        for notification, state in zip(batch.notifications, batch.states, strict=True):
            if notification.topic in REVIEW_TOPICS:
                at = _transcoded(state["timestamp"], _DATETIME)
                reviews.append((state["outcome"], _stamp_text(at), str(notification.originator_id)))
                continue
            values = stored_values(notification, state)
            if values is not None:
                rows.append(self.row_of(values))
        # An upsert by position: the tracking row already keeps a batch from being applied
        # twice; should one be, it leaves the same single row.
        db.insert(TABLE, _COLUMNS, rows, key=("position",))
        # Reviews after the inserts: a review may follow its access in the same batch.
        db.executemany(
            f"UPDATE {{{TABLE}}} SET review_outcome = ?, reviewed_at = ? WHERE event_id = ?",
            reviews,
        )


# --- an access record's values from its event's plain state ------------------------------------

# The library transcoder's names for the values it encodes (`{"_type_": name, "_data_": text}`).
_UUID, _DATETIME = "uuid_hex", "datetime_iso"
_NO_CASE_HEX: Final = NO_CASE.hex
# Each record topic's kind and whether it is a break-glass read: `record_of`'s own decision.
_RECORD_KINDS: Final[dict[str, tuple[RecordKind, bool]]] = {
    **dict.fromkeys(topics_of(CaseAccessed), (RecordKind.READ, False)),
    **dict.fromkeys(topics_of(BreakGlassAccessed), (RecordKind.READ, True)),
    **dict.fromkeys(topics_of(AccessDenied), (RecordKind.REFUSED_READ, False)),
    **dict.fromkeys(topics_of(CommandRefused), (RecordKind.REFUSED_COMMAND, False)),
}
if set(_RECORD_KINDS) != set(RECORD_TOPICS):  # a new record topic must be named here too
    raise ImportError("the access log's view does not know every access record topic")


def stored_values(notification: Notification, state: Mapping[str, Any]) -> dict[str, Any] | None:
    """`record_values(record_of(position, event))` of the event `notification` stores, from
    its plain state (`View.plain`), None for an event that is no access record: the same
    values without building the event, its record, their UUIDs and datetimes, which cost the
    view half its time (bench/README.md, "eleventh round"). Proven equal, for every record
    topic and both class versions, by tests/projections/test_access_log.py."""
    found = _RECORD_KINDS.get(notification.topic)
    if found is None:
        return None
    kind, break_glass = found
    if kind is RecordKind.REFUSED_COMMAND:
        fields: list[str] = []
        purpose, command, case_version = "", state["command"], None
    else:
        fields = list(state.get("fields", ()))
        purpose, command, case_version = state["purpose"], "", state["case_version"]
    case_hex = _transcoded(state["case_id"], _UUID)
    actor, client = state["actor"], state["client"]
    return {
        "position": notification.id,
        "event_id": str(notification.originator_id),
        "at": _transcoded(state["timestamp"], _DATETIME),
        "kind": str(kind),
        "case_id": None if case_hex == _NO_CASE_HEX else str(UUID(hex=case_hex)),
        "user": actor.get("user", ""),
        "role": actor.get("role", ""),
        "unit": actor.get("unit", ""),
        "street": actor.get("street", ""),
        "purpose": purpose,
        "rule": state["rule"],
        "channel": state["channel"],
        "fields": fields,
        "break_glass": break_glass,
        "request_id": state["request_id"],
        "case_version": case_version,
        "client_address": client.get("address", ""),
        "client_user_agent": client.get("user_agent", ""),
        "command": command,
    }


def _transcoded(value: Any, name: str) -> str:
    """The text the library's transcoder stored for a value of type `name`."""
    if not isinstance(value, dict) or value.get("_type_") != name:
        raise ValueError(f"a stored access event holds no {name} value where one belongs")
    data = value["_data_"]
    if not isinstance(data, str):
        raise ValueError(f"a stored access event's {name} value is not text")
    return data


def _stamp_text(at: str) -> str:
    """`stamp` of the instant `at` (`datetime.isoformat()` text): a UTC instant with its
    microseconds, as the service stores them, is cut and marked without parsing."""
    if len(at) == 32 and at[19] == "." and at.endswith("+00:00"):
        return at[:26] + "Z"
    return stamp(datetime.fromisoformat(at))


# --- reading: the contract ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccessQuery:
    """Which access records to find; every filter given must hold (None: any). `user`, `unit`
    and `street` are compared as keyed tokens (the read model holds no other form); `since`
    is inclusive, `until` exclusive; `after_position` and `limit` page by position."""

    case_ids: tuple[UUID, ...] | None = None  # None: any case
    user: str | None = None
    unit: str | None = None
    street: str | None = None
    role: str | None = None
    rule: str | None = None
    channel: str | None = None
    kinds: tuple[RecordKind, ...] | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    after_position: int = 0  # keyset paging
    limit: int | None = None


def _where(keys: ReadModelKeys, query: AccessQuery) -> tuple[list[str], list[Any]]:
    clauses = ["position > ?"]
    params: list[Any] = [query.after_position]
    for column, kind, value in (
        ("user_h", _USER, query.user),
        ("unit_h", _UNIT, query.unit),
        ("street_h", _STREET, query.street),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(keys.token(kind, value))
    for column, text in (("role", query.role), ("rule", query.rule), ("channel", query.channel)):
        if text is not None:
            clauses.append(f"{column} = ?")
            params.append(text)
    if query.kinds is not None:
        clauses.append(f"kind IN ({','.join('?' * len(query.kinds))})")
        params.extend(str(k) for k in query.kinds)
    if query.since is not None:
        clauses.append("at >= ?")
        params.append(stamp(query.since))
    if query.until is not None:
        clauses.append("at < ?")
        params.append(stamp(query.until))
    return clauses, params


def _opened(
    db: KeyedDb, rows: Sequence[dict[str, Any]], case_id: UUID | None = None
) -> list[AccessRecord]:
    return [
        record_from(db.keys.open(TABLE, _binding(int(r["position"])), r["sealed"]), case_id)
        for r in rows
    ]


def search(db: KeyedDb, query: AccessQuery) -> list[AccessRecord]:
    """The access records matching `query`, in position order (up to `query.limit`)."""
    if query.kinds is not None and not query.kinds:
        return []
    if query.limit is not None and query.limit <= 0:
        return []
    clauses, params = _where(db.keys, query)
    if query.case_ids is None:
        return _select(db, clauses, params, query.limit)
    case_ids = list(dict.fromkeys(str(c) for c in query.case_ids))
    if len(case_ids) <= _CHUNK:
        if not case_ids:
            return []
        marks = ",".join("?" * len(case_ids))
        return _select(db, [f"case_id IN ({marks})", *clauses], [*case_ids, *params], query.limit)
    # Many cases: each chunk in order, merged by position, cut at the limit.
    found: list[AccessRecord] = []
    for start in range(0, len(case_ids), _CHUNK):
        chunk = case_ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        found.extend(
            _select(db, [f"case_id IN ({marks})", *clauses], [*chunk, *params], query.limit)
        )
    found.sort(key=lambda r: r.position)
    return found if query.limit is None else found[: query.limit]


def _select(
    db: KeyedDb, clauses: list[str], params: list[Any], limit: int | None
) -> list[AccessRecord]:
    sql = (
        f"SELECT position, sealed FROM {{{TABLE}}} WHERE {' AND '.join(clauses)} ORDER BY position"
    )
    if limit is not None:
        sql += " LIMIT ?"
        params = [*params, limit]
    return _opened(db, db.execute(sql, params))


def case_log(db: KeyedDb, case_id: UUID) -> list[AccessRecord]:
    """Every access record of one case in the view, in position order."""
    return search(db, AccessQuery(case_ids=(case_id,)))


def break_glass_reviews(db: KeyedDb, positions: Sequence[int]) -> dict[int, tuple[str, str]]:
    """(outcome, reviewed_at stamp) of the reviewed break-glass accesses among `positions`."""
    found: dict[int, tuple[str, str]] = {}
    unique = sorted(set(positions))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        for row in db.execute(
            f"SELECT position, review_outcome, reviewed_at FROM {{{TABLE}}} "
            f"WHERE position IN ({','.join('?' * len(chunk))}) AND review_outcome IS NOT NULL",
            chunk,
        ):
            found[int(row["position"])] = (row["review_outcome"], row["reviewed_at"])
    return found


# --- one case's log, complete up to the store's end ------------------------------------------


class EventLog(Protocol):
    @property
    def mapper(self) -> Mapper[UUID]: ...

    def notifications(
        self, start: int = 1, topics: tuple[str, ...] = (), batch: int = 500
    ) -> Iterator[Notification]: ...


class AccessRecorder(Protocol):
    """What `CaseLog` needs of the view's recorder (`ReadModels.accesses`)."""

    def reading(self) -> Any: ...

    def position(self, application_name: str) -> int: ...


class CaseLog:
    """One case's access records, complete up to the store's end when called.

    The view answers up to its position `p` (rows at or below `p` only, so a follower moving on
    meanwhile changes nothing); the events after `p` that the follower has not applied yet are
    read from the store (their topics only, decoded, kept when they name the case). A busy
    store makes that tail the follower's lag (at most about `GATHER_SECONDS` of events while it
    runs), never the whole log; no write, no wait for the follower. Wired into
    `CaseTrail.use_access_records` by `gateway.bootstrap`."""

    def __init__(self, log: EventLog, application_name: str, recorder: AccessRecorder) -> None:
        self.log = log
        self.application_name = application_name
        self.recorder = recorder

    def __call__(self, case_id: UUID, page: RecordPage = EVERY_RECORD) -> list[AccessRecord]:
        records, position = self.applied(case_id, page)
        room = page.room(len(records))
        if room == 0:  # the page is full from the view: nothing of the tail belongs on it
            return records
        return records + self.tail(case_id, max(position, page.after), page, room)

    def applied(
        self, case_id: UUID, page: RecordPage = EVERY_RECORD
    ) -> tuple[list[AccessRecord], int]:
        """The view's records of the case on `page`, and the position they are complete up to."""
        position = self.recorder.position(self.application_name)
        sql = (
            f"SELECT position, sealed FROM {{{TABLE}}} "
            "WHERE case_id = ? AND position > ? AND position <= ?"
        )
        params: list[Any] = [str(case_id), page.after, position]
        if page.kinds is not None:
            if not page.kinds:
                return [], position
            kinds = sorted(str(k) for k in page.kinds)
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        sql += " ORDER BY position"
        if page.limit is not None:
            sql += " LIMIT ?"
            params.append(page.limit)
        with self.recorder.reading() as db:
            return _opened(db, db.execute(sql, params), case_id), position

    def tail(
        self,
        case_id: UUID,
        after: int,
        page: RecordPage = EVERY_RECORD,
        room: int | None = None,
    ) -> list[AccessRecord]:
        """The case's access records on `page` stored after position `after`, from the store;
        at most `room` of them (no bound when None)."""
        found: list[AccessRecord] = []
        if room == 0:
            return found
        decode = self.log.mapper.to_domain_event
        for notification in self.log.notifications(start=after + 1, topics=RECORD_TOPICS):
            event = decode(notification)
            if not isinstance(event, DomainEvent) or getattr(event, "case_id", None) != case_id:
                continue
            record = record_of(notification.id, event)
            if record is not None and page.keeps(record):
                found.append(record)
                if room is not None and len(found) >= room:
                    break
        return found
