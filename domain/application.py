"""The event-sourced application: the services that orchestrate the domain.

Storage and cipher arrive through the environment given to `CaseTrail(env=...)` (see
`gateway.store.eventstore.store_environment`); nothing here imports them. That dict is the whole
environment: the process's is not merged in (`construct_env`; `gateway.settings` is its one
reader, `tests/integration/test_settings.py`). Every change is a
new event;
no code path updates or deletes one.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, Final, NoReturn, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEvent, Snapshot
from eventsourcing.persistence import IntegrityError, Notification, PersistenceError
from eventsourcing.utils import Environment, EnvType, get_topic, strtobool
from pydantic import ValidationError

import domain.topics  # noqa: F401  (registers moved stored topics before any read)
from domain import commands as cmd
from domain import errors, roster, screening
from domain.access import (
    CASE_CONTENT,
    DEFAULT_GRACE_HOURS,
    IN_PROCESS_CLIENT,
    NO_CASE,
    AccessDenied,
    Actor,
    BreakGlassAccessed,
    BreakGlassReviewed,
    CaseAccessed,
    CaseScope,
    Channel,
    Client,
    CommandRefused,
    Decision,
    ReadContext,
    access_event,
    can_see,
    command_refused,
    decide,
    disclose,
    review_event,
)
from domain.case import Case
from domain.case_cache import DEFAULT_SIZE as DEFAULT_CASE_CACHE_SIZE
from domain.case_cache import CaseCache
from domain.compliance.findings import (
    Finding,
    FindingFilter,
    FindingNotFound,
    FindingSummary,
    Outcome,
)
from domain.compliance.origin import current_origin
from domain.compliance.records import (
    EVERY_RECORD,
    RECORD_TOPICS,
    AccessRecord,
    AccessRecordSource,
    RecordKind,
    RecordPage,
    record_of,
)
from domain.credentials import (
    AccountNotLocked,
    Credentials,
    Policy,
    RoleChoice,
    Session,
    SessionCache,
    SessionEndReason,
    SessionLimits,
    SignInReason,
    SignInRefused,
    TotpRequired,
    check_password_strength,
    credentials_stream_id,
    dummy_verify,
    session_stream_id,
)
from domain.deadlines import DUTY_TOPICS, CaseDuties, Periods, fold
from domain.group_commit import DEFAULT_GROUP_WAIT_MS, Committing, GroupCommit
from domain.guardian_requests import open_access_request
from domain.investigation_commands import (
    AddRectification,
    CompleteRectification,
    IssueCountyOrder,
    OpenInvestigation,
    RecordFinding,
    RevokeCountyOrder,
)
from domain.investigations import COUNTY_ROLES, Investigation, hidden_from_street
from domain.notices import (
    NoticeNotFound,
    NoticePublished,
    NoticeReceived,
    NoticeUndeliverable,
    UndeliverableSeen,
    notice_received,
    published_id,
    received_id,
)
from domain.orders import CountyOrder, InvestigationOrder, check_expiry, county_order_id, order_id
from domain.permissions import require_permission
from domain.quarters import local_date, start_of_day
from domain.refusals import AuthenticationRefused, RefusalReason
from domain.retention import (
    DataErased,
    DataKeyDestroyed,
    DataKeyring,
    ErasureHeld,
    ErasureUnavailable,
    KeyScope,
    RetentionRules,
    data_key_destroyed,
    erasure_id,
)
from domain.retention_holds import (
    HoldIndex,
    HoldNotFound,
    LegalHold,
    PlaceHold,
    ReleaseHold,
    minor_due_on,
)
from domain.submissions import (
    SCAN_WINDOW_DAYS,
    LedgerSubmission,
    LedgerSubmissionMissed,
    Period,
    ledger_digest,
    missed_fact,
    periods_due_between,
    submission_id,
)
from domain.taxonomy import Purpose, Role, UnitType
from domain.tombstones import readable_events
from domain.topics import topics_of
from domain.units import (
    RegisterUnit,
    Unit,
    UnitAlreadyRegistered,
    UnitKeys,
    UnknownUnit,
    unit_stream_id,
)
from domain.users import (
    DEFAULT_POSTS,
    USER_EVENT_CLASSES,
    ChangePost,
    ChangeRole,
    ChangeStatus,
    Post,
    RegisterUser,
    RoleAlreadyHeld,
    UnknownUser,
    User,
    UserAlreadyRegistered,
    UserOfAnotherUnit,
    user_stream_id,
)
from domain.users import history as user_history

T = TypeVar("T")
A = TypeVar("A")

# Optimistic concurrency: a command that lost a race on the same case is retried on fresh state.
_COMMAND_ATTEMPTS: Final = 12
# Commands on one case are serialised within the process by one of these locks.
_CASE_LOCK_STRIPES: Final = 256
# Units whose street a process keeps (CaseTrail.assignable); a street has a few dozen.
_UNIT_STREETS_KEPT: Final = 10_000

ACCESS_TOPICS: Final = (
    get_topic(CaseAccessed),
    get_topic(BreakGlassAccessed),
    get_topic(AccessDenied),
)
REVIEW_TOPICS: Final = (get_topic(BreakGlassAccessed), get_topic(BreakGlassReviewed))
# Compliance findings (issue 15): every event of a Finding's stream.
FINDING_TOPICS: Final = topics_of(
    Finding.FindingRaised,  # type: ignore[attr-defined]
    Finding.FindingReviewed,  # type: ignore[attr-defined]
    Finding.FollowUpOpened,  # type: ignore[attr-defined]
    Finding.FollowUpCompleted,  # type: ignore[attr-defined]
    Finding.FindingSuperseded,  # type: ignore[attr-defined]
)
# What a case's access log lists: reads, granted or refused (not refused commands).
_LOGGED: Final = frozenset({RecordKind.READ, RecordKind.REFUSED_READ})

USER_TOPICS: Final = tuple(get_topic(c) for c in USER_EVENT_CLASSES)

# The plan's first submission date (报送, issue 17); CASETRAIL_INITIAL_SUBMISSION_DUE sets another.
DEFAULT_INITIAL_DUE: Final = "2026-07-23"
SNAPSHOT_EVERY: Final = 20


def replay(aggregate: A | None, events: Iterable[Any]) -> A | None:
    """Apply stored events to an aggregate, in order: what the library's `project_aggregate`
    does, without its `assert isinstance(event, CanMutateProtocol)`. That check against a
    runtime-checkable Protocol costs about 40 µs per event on Python 3.11, more than decrypting
    and decoding the event; every event here is the domain's own, which can mutate."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


# Investigations: rules of their reads (stored in access events, as every rule).
INVESTIGATION_NOT_FOR_READER: Final = "investigation_not_for_reader"
INVESTIGATION_MEMBER_RULE: Final = "investigation_member"
AS_OF_NOT_FOR_ROLE: Final = "as_of_not_for_role"
NO_SUCH_CASE_AS_OF: Final = "no_such_case_as_of"


def _require_county(actor: Actor, doing: str) -> None:
    if actor.role not in COUNTY_ROLES:
        raise errors.NotPermitted(f"only a county lead or an admin may {doing}")


P = ParamSpec("P")

# The rule a refused command is recorded with when the answer hides what it named (404).
NOT_VISIBLE_RULE: Final = "not_visible"
# The rule a read or command of an erased file is recorded with (issue 19), answered 410.
ERASED_RULE: Final = "erased"
# The rule of erasures by retention (`CaseTrail.apply_retention`), in `DataKeyDestroyed.rule`.
RETENTION_RULE: Final = "retention"


def _refusal_rule(refused: errors.DomainError) -> str | None:
    """The rule to record a refused command under, or None when the error is no refusal (a
    broken rule of the case file, 409; bad input, 422). A 404 that hides a case or an
    investigation (or a submission, roster entry or campaign, issue 17) is one (`not_visible`),
    whether it exists or not: the attempt is recorded either way, so recording tells the caller
    nothing."""
    if isinstance(
        refused,
        errors.CaseNotFound
        | errors.InvestigationNotFound
        | errors.SubmissionNotFound
        | roster.RosterEntryNotFound
        | CampaignNotFound,
    ):
        return NOT_VISIBLE_RULE
    if refused.status == 403:
        return refused.code
    if isinstance(refused, DataErased):
        return ERASED_RULE  # issue 19: a command on an erased file is a refusal, recorded
    return None


def records_refusals(
    command: str | None = None, *, case: str | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A `CaseTrail` command that stores `CommandRefused` (issue 15) before a refusal by a
    permission rule leaves it: who (its `actor` argument), which command (`command`, or its
    `action` argument), on which case (its argument named `case`, or an attribute path such as
    `command.case_id`; else none), which rule, and the request id, channel and client of the
    command's origin (`domain.compliance.origin`). If storing fails, that error leaves instead
    (answered 503): a refusal is never answered unrecorded."""

    def wrap(method: Callable[P, T]) -> Callable[P, T]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def recorded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return method(*args, **kwargs)
            except errors.DomainError as refused:
                rule = _refusal_rule(refused)
                if rule is None:
                    raise
                bound = signature.bind(*args, **kwargs).arguments
                app, actor = bound["self"], bound["actor"]
                named = command or str(bound["action"])
                case_id: Any = None
                if case is not None:
                    head, *path = case.split(".")
                    case_id = bound.get(head)
                    for name in path:
                        case_id = getattr(case_id, name, None)
                app.record_command_refusal(
                    actor, named, case_id if isinstance(case_id, UUID) else None, rule
                )
                raise

        return recorded

    return wrap


def version_as_of(timestamps: Sequence[datetime], as_of: datetime) -> int | None:
    """How many of a stream's first events (its timestamps, in order) happened at or before
    `as_of`: the version the stream had then, None if it did not exist yet."""
    count = 0
    for timestamp in timestamps:
        if timestamp > as_of:
            break
        count += 1
    return count or None


def case_as_of(events: Sequence[DomainEvent], as_of: datetime) -> Case | None:
    """A case as it stood at `as_of`, from its events alone: the pure form of
    `CaseTrail.read_case_as_of` (which loads the same version through snapshots); proven equal
    by tests/domain/test_as_of.py."""
    version = version_as_of([e.timestamp for e in events], as_of)
    if version is None:
        return None
    case = replay(None, events[:version])
    return case if isinstance(case, Case) else None


class AccessRefused(Exception):
    """A read was refused; its `AccessDenied` event is already stored."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


def _for_need(decision: Decision, need: str | None) -> Decision:
    """The decision for one form of a read: `need` alone (e.g. `access_log`), or, with no
    need, the case content only (the access log has its own read)."""
    if not decision.granted:
        return decision
    if need is not None:
        if need in decision.fields:
            return Decision(True, decision.rule, frozenset({need}), decision.break_glass)
        return Decision(False, f"{decision.rule}:without_{need}")
    content = decision.fields & CASE_CONTENT
    if content:
        return Decision(True, decision.rule, content, decision.break_glass)
    return Decision(False, f"{decision.rule}:no_case_content")


@dataclass(frozen=True)
class _DecidedRead:
    """A read decided, its access events made but not yet stored."""

    case: Case | None
    decisions: list[Decision]
    events: list[CaseAccessed | AccessDenied]
    refused: bool
    # The file was erased (issue 19): answered with this (410) instead of `AccessRefused`.
    erased: DataErased | None = None

    def granted(self) -> tuple[Case, Decision]:
        """The case and the grant; `AccessRefused` for a refusal (its event stored first),
        `DataErased` for a file erased (its `AccessDenied`, rule `erased`, stored first)."""
        if self.erased is not None:
            raise self.erased
        if self.refused or self.case is None:
            raise AccessRefused(self.decisions[0].rule)
        return self.case, self.decisions[0]


@dataclass(frozen=True)
class PendingRead:
    """A case read decided and its access event handed to the store (`CaseTrail.begin_read`),
    not yet answered: `answer()` discloses only once `committing` is done, and raises the
    store's error (nothing disclosed) or the refusal instead."""

    read: _DecidedRead
    committing: Committing
    reader_unit: str

    def answer(self) -> dict[str, Any]:
        """The fields granted, once the access event is durable (waits for it if need be)."""
        self.committing.wait()
        case, decision = self.read.granted()
        return disclose(case, decision.fields, reader_unit=self.reader_unit)


class CaseTrail(Application[UUID]):
    """Reports, changes and audited reads of case files."""

    name = "casetrail"
    # Every SNAPSHOT_EVERY events of a case file, its state is stored as a snapshot (its own
    # table, encrypted and bound to its place like an event), so that loading a long file, as
    # every read and command does, decodes one snapshot and fewer than SNAPSHOT_EVERY events
    # instead of its whole history: 0.7 ms instead of 15 ms at 300 events (bench/README.md).
    # A snapshot is derived from the events, which stay the record; historical loads
    # (`version=`) take the latest snapshot at or before that version. The price: every load
    # asks the snapshot table first, one indexed SELECT more, short files included.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Case: SNAPSHOT_EVERY}
    snapshotting_projectors: ClassVar[dict[type[Any], Any]] = {Case: replay}

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """The library's environment without the process's merged over the given one: there a
        stray `CASETRAIL_SQLITE_DBNAME` or `CASETRAIL_PERSISTENCE_MODULE` would outrank the store
        the caller chose (the name's prefixed keys are looked up first)."""
        given = dict(type(self).env)
        if type(self).is_snapshotting_enabled or type(self).snapshotting_intervals:
            given["IS_SNAPSHOTTING_ENABLED"] = "y"
        given.update(env or {})
        return Environment(name, given)

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env=env)
        grace_hours = self.env.get("ASSIGNMENT_GRACE_HOURS") or str(DEFAULT_GRACE_HOURS)
        self.assignment_grace = timedelta(hours=float(grace_hours))
        self._case_locks = tuple(threading.RLock() for _ in range(_CASE_LOCK_STRIPES))
        # Concurrent reads share durable commits of their access events (see group_commit.py);
        # ACCESS_GROUP_COMMIT_WAIT_MS bounds how long a commit waits for more readers to join.
        wait_ms = float(self.env.get("ACCESS_GROUP_COMMIT_WAIT_MS") or DEFAULT_GROUP_WAIT_MS)
        self.access_commits: GroupCommit | None = (
            GroupCommit(self.store_events, max_wait=wait_ms / 1000)
            if strtobool(self.env.get("ACCESS_GROUP_COMMIT") or "y")
            else None
        )
        # Commands on different case files share durable commits too (COMMAND_GROUP_COMMIT);
        # a command that lost the race for its file's next version is told so alone, and so is
        # a command on a file erased meanwhile by another worker (its data key gone: the cipher
        # refuses while encoding, before the transaction, so the others are saved once each).
        self.command_commits: GroupCommit | None = (
            GroupCommit(
                self.store_events,
                max_wait=wait_ms / 1000,
                name="command-group-commit",
                isolate_failures=(IntegrityError, DataErased),
            )
            if strtobool(self.env.get("COMMAND_GROUP_COMMIT") or "y")
            else None
        )
        # The files this process changed last, for its next command on them (case_cache.py).
        self.case_cache: CaseCache[Case] = CaseCache(
            size=int(self.env.get("CASE_CACHE_SIZE") or DEFAULT_CASE_CACHE_SIZE)
        )
        # The street of each unit this process has seen registered, for `assignable`. A unit's
        # street is set when it is registered and no event changes it, nor ends a registration
        # (domain/units.py), so a unit found once stays found: only units found are kept, a
        # code not (yet) registered is looked up again each time.
        self._unit_streets: dict[str, str] = {}
        # Asked before a kept file is used (a runtime Protocol check costs tens of µs: once).
        cipher = self.mapper.cipher
        self._keyring = cipher if isinstance(cipher, DataKeyring) else None

    def close(self) -> None:
        self.case_cache.clear()
        for committer in (self.access_commits, self.command_commits):
            if committer is not None:
                committer.close()
        if isinstance(self.mapper.cipher, DataKeyring):
            self.mapper.cipher.close()
        super().close()

    # --- erasure (issue 19; the rules are domain/retention.py) ----------------------------------

    @property
    def data_keyring(self) -> DataKeyring:
        """The store's data keys; `ErasureUnavailable` on a store without them (plaintext)."""
        cipher = self.mapper.cipher
        if not isinstance(cipher, DataKeyring):
            raise ErasureUnavailable(
                "this store is not encrypted with data keys: nothing can be erased in it"
            )
        return cipher

    def holds_on(self, stream_id: UUID) -> list[dict[str, Any]]:
        """What keeps a stream from erasure: each `{"reason": HoldReason, ...}`; empty when
        nothing does. The holds of every file of the stream's minor (a case file's or a roster
        entry's; `domain.retention_holds` says what holds and what "the same minor" is); a user
        record is never held."""
        id_number = self._minor_of_stream(stream_id)
        if id_number is None:
            return []
        return self.holds_of_minor(id_number)

    def erasure_of(self, stream_id: UUID) -> DataKeyDestroyed | None:
        """The erasure fact of a stream, if it was erased."""
        events = list(self.events.get(erasure_id(stream_id)))
        return events[0] if events and isinstance(events[0], DataKeyDestroyed) else None

    def erase(
        self,
        stream_id: UUID,
        *,
        scope: KeyScope,
        rule: str,
        basis: str,
        due_on: date | None,
        by: dict[str, str],
    ) -> DataKeyDestroyed:
        """Erase a stream by destroying its data key, unless held (`ErasureHeld`).

        The fact is stored first, then the key destroyed: a crash between them leaves a fact
        whose key still lives, which `finish_erasures` (and every retention run) completes.
        Erasing a stream twice answers the first erasure."""
        done = self.erasure_of(stream_id)
        if done is not None:
            self._destroy_key(stream_id)
            return done
        holds = self.holds_on(stream_id)
        if holds:
            raise ErasureHeld(
                "this file is held ("
                + ", ".join(sorted({str(h["reason"]) for h in holds}))
                + "): release the hold first",
                holds=holds,
            )
        keyring = self.data_keyring
        # A stream stored before data keys has none yet: made now, so that its destruction is
        # recorded and its old (service-key) events are refused from then on.
        key_hex = keyring.ensure_key(stream_id, str(scope))
        fact = data_key_destroyed(
            stream_id=stream_id,
            scope=scope,
            rule=rule,
            basis=basis,
            due_on=due_on,
            key_id=key_hex,
            by=by,
        )
        self.save(fact)
        self._destroy_key(stream_id)
        return fact

    def _destroy_key(self, stream_id: UUID) -> None:
        """Destroy the stream's data key and drop its kept state from this process's memory,
        under the file's lock: a command of this process holding the file cannot put it back
        after the drop (its save fails once the key is gone)."""
        with self._case_locks[hash(stream_id) % len(self._case_locks)]:
            self.data_keyring.destroy(stream_id)
            self.case_cache.forget(stream_id)

    def _save_case(self, case: Case) -> None:
        """Store a case's new events durably (shared commit unless COMMAND_GROUP_COMMIT=n),
        then its snapshot if one is due: what `save()` does for one aggregate, without the
        Protocol checks (see `store_events`)."""
        if self.command_commits is None:
            self.save(case)
            return
        events = case.collect_events()
        self.command_commits.record_all(events)
        if self.snapshots is not None and (
            case.version // SNAPSHOT_EVERY > (case.version - len(events)) // SNAPSHOT_EVERY
        ):
            # The case in hand is the stored state at its version: snapshot it as it is, not
            # reloaded from the store (the library's `take_snapshot` would replay it again).
            # The change is stored; a snapshot is only a shortcut for later loads. Failing
            # here would report a stored change as failed (and a retry would store it twice);
            # the next multiple of SNAPSHOT_EVERY takes one again.
            with suppress(PersistenceError):
                self.snapshots.put([Snapshot.take(case)])

    def _record_access(self, event: CaseAccessed | AccessDenied | AuthenticationRefused) -> None:
        """Durably store one access event; raises if the store fails."""
        if self.access_commits is None:
            self.store_events([event])
        else:
            self.access_commits.record(event)

    def record_authentication_refusal(self, event: AuthenticationRefused) -> None:
        """Durably store a refused authentication (`domain.refusals`); raises if the store
        fails, so that the refusal is answered 503 rather than left unrecorded."""
        self._record_access(event)

    def authentication_refusals(
        self, *, case_id: UUID | None = None, limit: int = 1000
    ) -> list[AuthenticationRefused]:
        """Refused authentications, newest first (a scan of their topic), optionally only those
        whose path named a case."""
        # Only the newest `limit` are kept while scanning: refusals arrive in floods.
        found: deque[AuthenticationRefused] = deque(maxlen=limit)
        for notification in self.notifications(topics=(get_topic(AuthenticationRefused),)):
            event = self.mapper.to_domain_event(notification)
            if isinstance(event, AuthenticationRefused) and (
                case_id is None or event.case_id == case_id
            ):
                found.append(event)
        return list(reversed(found))

    def store_events(self, events: Sequence[DomainEvent]) -> None:
        """Store events (not aggregates) in one transaction. `save()` would first check each
        object against two runtime-checkable Protocols, about 60 µs per event on Python 3.11,
        more than encrypting it; access events are events already, so they go to the event
        store directly (and then to the `_notify` hook, as `save()` does)."""
        self._notify(self.events.put(events))

    # --- commands ---------------------------------------------------------------------------

    @records_refusals("report_clue")
    def report_clue(self, command: cmd.ReportClue, actor: Actor) -> UUID:
        require_permission(actor, "report_clue", scope=None)
        with self._expecting(self.command_commits):
            case = Case.report(command, street=actor.street, by=actor.as_record())
            self._save_case(case)
        self.case_cache.keep(case)
        return case.id

    @records_refusals(case="case_id")
    def change_case(
        self, case_id: UUID, actor: Actor, action: str, change: Callable[[Case], T]
    ) -> T:
        """Apply one command to a case, after the permission check for `action`.

        Commands on one case take turns within this process (a lock per case, striped), so that
        concurrent requests on a busy case queue instead of all losing the optimistic race and
        running out of retries; the version check still decides between processes (workers),
        and the loser tries again on the case as it now stands."""
        with self._case_locks[hash(case_id) % len(self._case_locks)]:
            for attempt in range(_COMMAND_ATTEMPTS):
                try:
                    # Announced only once this file's lock is held: a command queued behind
                    # another on the same file must not hold up the batch that one is in.
                    with self._expecting(self.command_commits):
                        case = self._case_to_change(case_id)
                        require_permission(actor, action, scope=CaseScope.of(case))
                        result = change(case)
                        self._save_case(case)
                    # Kept only once its new events are stored: a command that failed (even
                    # a refusal, which changed nothing) leaves no state behind to trust.
                    self.case_cache.keep(case)
                except IntegrityError:
                    if attempt == _COMMAND_ATTEMPTS - 1:
                        raise
                    # Another process (API worker) changed this case first: back off a little,
                    # randomly, so that two workers racing on a busy case do not race again.
                    time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # noqa: S311
                    continue
                return result
        raise AssertionError("unreachable")

    def _case_to_change(self, case_id: UUID) -> Case:
        """The case file a command changes: the state this process kept after its last
        change, brought up to date from the store (`domain.case_cache`), or else loaded."""
        kept = self.case_cache.take(case_id)
        if kept is None:
            return self._get_case(case_id)
        if self._keyring is not None and self._keyring.is_destroyed(case_id):
            raise self.erased_error(case_id)
        try:
            newer = self.repository.event_store.get(originator_id=case_id, gt=kept.version)
            case = replay(kept, newer)
        except DataErased:
            raise self.erased_error(case_id) from None
        if not isinstance(case, Case):
            raise errors.CaseNotFound(f"no case {case_id} is visible to you")
        return case

    def _get_case(self, case_id: UUID) -> Case:
        try:
            case: object = self.repository.get(case_id, projector_func=replay)
        except AggregateNotFoundError:
            raise errors.CaseNotFound(f"no case {case_id} is visible to you") from None
        except DataErased:
            raise self.erased_error(case_id) from None
        if not isinstance(case, Case):
            raise errors.CaseNotFound(f"no case {case_id} is visible to you")
        return case

    # --- audited reads ------------------------------------------------------------------------

    def read_case(
        self,
        case_id: UUID,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        *,
        break_glass_reason: str | None = None,
        need: str | None = None,
        channel: Channel = Channel.API,
        client: Client = IN_PROCESS_CLIENT,
    ) -> dict[str, Any]:
        """Decide, store the access event durably, and only then build the answer.

        If storing the access event fails the exception propagates and nothing is disclosed.
        A refusal is stored as `AccessDenied` and raised as `AccessRefused`. `need` names a field
        the caller requires (e.g. `access_log`): a grant without it is refused instead.
        `channel` and `client` are recorded with the event (a read inside the process, with
        neither given, is recorded as such: `IN_PROCESS_CLIENT`).
        """
        case, decision = self.authorise_read(
            case_id,
            actor,
            purpose,
            request_id,
            break_glass_reason=break_glass_reason,
            need=need,
            channel=channel,
            client=client,
        )
        if need == "access_log":
            return self._access_log_answer(case_id, actor, RecordPage(kinds=_LOGGED))
        return disclose(case, decision.fields, reader_unit=actor.unit)

    def read_access_log(
        self,
        case_id: UUID,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        channel: Channel = Channel.API,
        client: Client = IN_PROCESS_CLIENT,
    ) -> dict[str, Any]:
        """One page of the case's access log (`read_case` with `need="access_log"`): the reads
        stored after position `after`, at most `limit` of them, oldest first; `next_after` is
        where the following page starts (None on the last). The read is decided and stored
        first, as every read."""
        self.authorise_read(
            case_id, actor, purpose, request_id, need="access_log", channel=channel, client=client
        )
        return self._access_log_answer(case_id, actor, RecordPage(after, limit, _LOGGED))

    def _access_log_answer(self, case_id: UUID, actor: Actor, page: RecordPage) -> dict[str, Any]:
        records = self.access_records(case_id, page)
        # A read under a county order is left out for the street's roles: a page may then hold
        # fewer entries than its limit; `next_after` still follows the records scanned.
        log = [access_log_entry(r) for r in records if not hidden_from_street(r.rule, actor.role)]
        return {"id": str(case_id), "access_log": log, "next_after": page.next_after(records)}

    def begin_read(
        self,
        case_id: UUID,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        *,
        channel: Channel,
        client: Client,
    ) -> PendingRead:
        """`read_case` without waiting for the store: decide, hand the access event to the
        shared commit and return; `PendingRead.answer()` discloses once it is durable. The
        HTTP API's case read waits for that in its event loop (`gateway.http.durability`),
        holding no thread while the commit is made."""
        with self._expecting(self.access_commits):
            read = self._read_decided(
                case_id, actor, purpose, request_id, channel=channel, client=client
            )
            committing = self._submit_accesses(read.events)
        return PendingRead(read, committing, actor.unit)

    def authorise_read(
        self,
        case_id: UUID,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        *,
        break_glass_reason: str | None = None,
        need: str | None = None,
        also_need: str | None = None,
        narrow: Callable[[Decision], Decision] | None = None,
        channel: Channel,
        client: Client,
        disclosed_version: Callable[[], int | None] | None = None,
    ) -> tuple[Case, Decision]:
        """`read_case` up to its record: decide, let `narrow` restrict the decision (a read
        of the case in another form, e.g. its evidence bundle, granted to fewer rules), store
        the access event durably, and only then hand back the case and the grant (for `need`).
        With `also_need`, the same read discloses a second form too (a bundle with the access
        log): both events are stored in one write, or, if either is refused, only that refusal.
        A refusal is stored as `AccessDenied` and raised as `AccessRefused`. Each event records
        the version of the case decided on (None when there is no such case; what
        `disclosed_version` gives, after `narrow`, when the read discloses an earlier version, as
        a point-in-time read does), the `channel` and the `client`."""
        with self._expecting(self.access_commits):
            read = self._read_decided(
                case_id,
                actor,
                purpose,
                request_id,
                break_glass_reason=break_glass_reason,
                need=need,
                also_need=also_need,
                narrow=narrow,
                channel=channel,
                client=client,
                disclosed_version=disclosed_version,
            )
            self._record_accesses(read.events)
        return read.granted()

    def authorise_reads(
        self,
        case_ids: Sequence[UUID],
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        *,
        also_need: str | None = None,
        channel: Channel,
        client: Client,
    ) -> list[tuple[Case, Decision]]:
        """`authorise_read` for several case files disclosed together (an investigation's
        report): all granted and stored in one write, or, if any is refused, only the first
        refusal stored (nothing recorded as disclosed that was not) and raised."""
        with self._expecting(self.access_commits):
            reads = [
                self._read_decided(
                    case_id,
                    actor,
                    purpose,
                    request_id,
                    also_need=also_need,
                    channel=channel,
                    client=client,
                )
                for case_id in case_ids
            ]
            refused = next((r for r in reads if r.refused), None)
            if refused is not None:
                self._record_accesses(refused.events)
                refused.granted()  # raises AccessRefused
            self._record_accesses([e for r in reads for e in r.events])
        return [r.granted() for r in reads]

    def _read_decided(
        self,
        case_id: UUID,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        *,
        break_glass_reason: str | None = None,
        need: str | None = None,
        also_need: str | None = None,
        narrow: Callable[[Decision], Decision] | None = None,
        channel: Channel,
        client: Client,
        disclosed_version: Callable[[], int | None] | None = None,
    ) -> _DecidedRead:
        """One read decided and its access events made (the grants', or the refusal's alone):
        nothing stored yet."""
        try:
            case, decided = self._decide(case_id, actor, purpose, break_glass_reason)
        except DataErased as erased:
            # Issue 19: the attempt is recorded (rule `erased`), then answered 410 with when
            # and under which rule; nothing of the file is left to decide on.
            refusal = Decision(False, ERASED_RULE)
            event = access_event(
                refusal,
                case_id=case_id,
                actor=actor,
                purpose=purpose,
                request_id=request_id,
                case_version=None,
                channel=channel,
                client=client,
                break_glass_reason=break_glass_reason,
            )
            return _DecidedRead(None, [refusal], [event], True, erased)
        if narrow is not None:
            decided = narrow(decided)
        decisions = [_for_need(decided, need)]
        if also_need is not None:
            decisions.append(_for_need(decided, also_need))
        refused = [d for d in decisions if not d.granted][:1]
        version = None if case is None else case.version
        if case is not None and disclosed_version is not None:
            version = disclosed_version() or version
        events = [
            access_event(
                d,
                case_id=case_id,
                actor=actor,
                purpose=purpose,
                request_id=request_id,
                case_version=version,
                channel=channel,
                client=client,
                break_glass_reason=break_glass_reason,
            )
            for d in (refused or decisions)
        ]
        return _DecidedRead(case, refused or decisions, events, bool(refused) or case is None)

    @staticmethod
    def _expecting(committer: GroupCommit | None) -> AbstractContextManager[None]:
        """While a read is decided or a change applied, the shared commit its events will join
        waits for them instead of committing without them (`GroupCommit.expecting`)."""
        return nullcontext() if committer is None else committer.expecting()

    def _submit_accesses(self, events: Sequence[CaseAccessed | AccessDenied]) -> Committing:
        """Hand the access events of one read to the shared commit, in one write (stored at
        once where there is none); the handle tells when they are durable."""
        if self.access_commits is None:
            self._record_accesses(events)
            return Committing.stored()
        return self.access_commits.submit(events)

    def _record_accesses(self, events: Sequence[CaseAccessed | AccessDenied]) -> None:
        """Durably store the access events of one read, in one write."""
        if len(events) == 1:
            self._record_access(events[0])
        elif self.access_commits is None:
            self.store_events(events)
        else:
            self.access_commits.record_all(events)

    def record_refusal(
        self,
        rule: str,
        *,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        channel: Channel,
        client: Client,
    ) -> NoReturn:
        """Store a refused read that named no case (ledgers, lookups, exports, worklists,
        reports) as `AccessDenied` with `rule`, the `channel` and the `client` (no case, no
        case version), then raise `AccessRefused`; if the store fails its error propagates
        instead (answered 503, as for a case read)."""
        self._record_access(
            access_event(
                Decision(False, rule),
                case_id=NO_CASE,
                actor=actor,
                purpose=purpose,
                request_id=request_id,
                case_version=None,
                channel=channel,
                client=client,
            )
        )
        raise AccessRefused(rule)

    def _decide(
        self, case_id: UUID, actor: Actor, purpose: Purpose, break_glass_reason: str | None
    ) -> tuple[Case | None, Decision]:
        case: Case | None
        try:
            case = self._get_case(case_id)
        except errors.CaseNotFound:
            case = None
        now = datetime.now(UTC)
        order_expires_at, county_order = (
            self._any_order_in_force(case_id, actor.user, now)
            if actor.role is Role.INVESTIGATOR and case is not None
            else (None, False)
        )
        context = ReadContext(
            scope=CaseScope.of(case) if case is not None else None,
            now=now,
            grace=self.assignment_grace,
            order_expires_at=order_expires_at,
            break_glass_reason=break_glass_reason,
            county_order=county_order,
            # Issue 19: a guardian's copy is read only while their access request is open.
            guardian_request_open=purpose is Purpose.GUARDIAN_REQUEST
            and case is not None
            and open_access_request(self, case_id) is not None,
        )
        return case, decide(actor, context, purpose)

    # --- investigation orders -------------------------------------------------------------------

    @records_refusals("issue_investigation_order", case="command.case_id")
    def issue_investigation_order(self, command: cmd.IssueInvestigationOrder, actor: Actor) -> UUID:
        """Issue (or renew) the order for this case and investigator."""
        case = self._get_case(command.case_id)
        require_permission(actor, "issue_investigation_order", scope=CaseScope.of(case))
        now = datetime.now(UTC)
        check_expiry(command.expires_at, now)
        order = self._get_order(command.case_id, command.investigator)
        if order is None:
            order = InvestigationOrder(
                case_id=command.case_id,
                investigator=command.investigator,
                reason=command.reason,
                expires_at=command.expires_at.isoformat(),
                by=actor.as_record(),
            )
        else:
            order.renew(
                reason=command.reason, expires_at=command.expires_at, now=now, by=actor.as_record()
            )
        self.save(order)
        return order.id

    @records_refusals("revoke_investigation_order")
    def revoke_investigation_order(
        self, order: UUID, command: cmd.RevokeInvestigationOrder, actor: Actor
    ) -> None:
        try:
            found: object = self.repository.get(order, projector_func=replay)
        except AggregateNotFoundError:
            raise errors.OrderNotActive(f"no investigation order {order}") from None
        if not isinstance(found, InvestigationOrder):
            raise errors.OrderNotActive(f"no investigation order {order}")
        case = self._get_case(found.case_id)
        require_permission(actor, "revoke_investigation_order", scope=CaseScope.of(case))
        found.revoke(reason=command.reason, now=datetime.now(UTC), by=actor.as_record())
        self.save(found)

    def _get_order(self, case_id: UUID, investigator: str) -> InvestigationOrder | None:
        try:
            order: object = self.repository.get(
                order_id(case_id, investigator), projector_func=replay
            )
        except AggregateNotFoundError:
            return None
        return order if isinstance(order, InvestigationOrder) else None

    def _order_in_force(self, case_id: UUID, investigator: str, now: datetime) -> datetime | None:
        order = self._get_order(case_id, investigator)
        return order.active_until(now) if order is not None else None

    def _any_order_in_force(
        self, case_id: UUID, investigator: str, now: datetime
    ) -> tuple[datetime | None, bool]:
        """The expiry of an order in force naming the investigator and the case, and whether it
        is the county's: the street's order first (the street knows of reads under its own)."""
        street = self._order_in_force(case_id, investigator, now)
        if street is not None:
            return street, False
        county = self._get_county_order(case_id, investigator)
        expires = county.active_until(now) if county is not None else None
        return expires, expires is not None

    # --- investigations (domain/investigations.py): the county's reverse investigations ---------

    @records_refusals("open_investigation")
    def open_investigation(
        self, command: OpenInvestigation, case_ids: Sequence[UUID], actor: Actor
    ) -> UUID:
        """Open an investigation of the minor's files: `case_ids` are those the read models'
        blind index found for the minor's ID number; each is kept only if the file itself names
        that ID number. Every (file, investigator) gets a county order covering the minor; all
        stored in one transaction."""
        _require_county(actor, "open investigations")

        def attempt() -> UUID:
            now = datetime.now(UTC)
            check_expiry(command.expires_at, now)
            linked = self._files_of_minor(case_ids, command.minor.id_number)
            investigation = Investigation.open(
                kind=command.kind,
                incident_on=command.incident_on,
                id_number=command.minor.id_number,
                name=command.minor.name or "",
                case_ids=linked,
                by=actor.as_record(),
            )
            investigation.assign_investigators(
                list(command.investigators), reason=command.reason, by=actor.as_record()
            )
            orders = [
                self._county_order(
                    investigation,
                    case_id,
                    investigator,
                    covers="minor",
                    reason=command.reason,
                    expires_at=command.expires_at,
                    now=now,
                    actor=actor,
                )
                for case_id in linked
                for investigator in command.investigators
            ]
            self.save(investigation, *orders)
            return investigation.id

        return self._retrying(NO_CASE, attempt)

    @records_refusals("issue_county_order", case="command.case_id")
    def issue_county_order(
        self,
        investigation_id: UUID,
        command: IssueCountyOrder,
        minor_case_ids: Sequence[UUID],
        actor: Actor,
    ) -> list[UUID]:
        """Issue (or renew) county orders for one investigator: for `command.case_id`, which
        must be linked to the investigation, or (`minor`) for every file of the minor, linking
        first the files of `minor_case_ids` (the blind index's answer now) not linked yet."""
        _require_county(actor, "issue county orders")

        def attempt() -> list[UUID]:
            investigation = self._get_investigation(investigation_id)
            now = datetime.now(UTC)
            check_expiry(command.expires_at, now)
            if command.minor:
                investigation.link_cases(
                    self._files_of_minor(minor_case_ids, investigation.minor["id_number"]),
                    by=actor.as_record(),
                )
                targets = [UUID(c) for c in investigation.case_ids]
            else:
                if command.case_id is None or str(command.case_id) not in investigation.case_ids:
                    raise errors.InvestigationInvalid(
                        "the case is not linked to this investigation; give a file of its minor",
                        field="case_id",
                    )
                targets = [command.case_id]
            orders = [
                self._county_order(
                    investigation,
                    case_id,
                    command.investigator,
                    covers="minor" if command.minor else "case",
                    reason=command.reason,
                    expires_at=command.expires_at,
                    now=now,
                    actor=actor,
                )
                for case_id in targets
            ]
            self.save(investigation, *orders)
            return [o.id for o in orders]

        return self._retrying(investigation_id, attempt)

    @records_refusals("revoke_county_order")
    def revoke_county_order(
        self, investigation_id: UUID, order: UUID, command: RevokeCountyOrder, actor: Actor
    ) -> None:
        _require_county(actor, "revoke county orders")

        def attempt() -> None:
            investigation = self._get_investigation(investigation_id)
            try:
                found: object = self.repository.get(order, projector_func=replay)
            except AggregateNotFoundError:
                found = None
            # The order stream is per (file, investigator): a later investigation of the same
            # minor renews it and holds it now; an earlier one may not revoke it.
            if not isinstance(found, CountyOrder) or found.investigation_id != investigation.id:
                raise errors.OrderNotActive("no order of this investigation has this id")
            # Every rule checked before any event is triggered.
            found.revoke(reason=command.reason, now=datetime.now(UTC), by=actor.as_record())
            investigation.record_order_revoked(order, reason=command.reason, by=actor.as_record())
            self.save(investigation, found)

        self._retrying(investigation_id, attempt)

    def read_investigation(
        self,
        investigation_id: UUID,
        actor: Actor,
        request_id: str,
        *,
        client: Client,
        channel: Channel = Channel.API,
    ) -> dict[str, Any]:
        """The investigation, for the county (without the minor's identity) and for the
        investigators it names (with it: an audited disclosure, one `CaseAccessed` of the
        minor's identity per linked file, purpose `investigation`, stored before the answer).
        Anyone else is refused as if it did not exist, the refusal stored as `AccessDenied`.
        `channel`: `web` for the investigator's workbench page (issue 18), else `api`."""
        try:
            investigation = self._get_investigation(investigation_id)
        except errors.InvestigationNotFound:
            investigation = None
        if investigation is not None and actor.role in COUNTY_ROLES:
            return investigation.summary(with_minor=False)
        if (
            investigation is None
            or actor.role is not Role.INVESTIGATOR
            or not investigation.names(actor.user)
        ):
            self._record_access(
                access_event(
                    Decision(False, f"{INVESTIGATION_NOT_FOR_READER}:{actor.role}"),
                    case_id=NO_CASE,
                    actor=actor,
                    purpose=Purpose.INVESTIGATION,
                    request_id=request_id,
                    case_version=None,
                    channel=channel,
                    client=client,
                )
            )
            raise errors.InvestigationNotFound(
                "no investigation with this id is visible to you; the attempt was recorded"
            )
        fields = frozenset({"minor.id_number", "minor.name"})
        self.record_disclosures(
            [(UUID(c), fields, INVESTIGATION_MEMBER_RULE, None) for c in investigation.case_ids]
            or [(NO_CASE, fields, INVESTIGATION_MEMBER_RULE, None)],
            actor=actor,
            purpose=Purpose.INVESTIGATION,
            request_id=request_id,
            channel=channel,
            client=client,
        )
        return investigation.summary(with_minor=True)

    @records_refusals("record_investigation_finding")
    def record_finding(self, investigation_id: UUID, command: RecordFinding, actor: Actor) -> None:
        """A finding on a duty; every store position it cites must hold an event."""

        def attempt() -> None:
            investigation = self._investigation_for_work(investigation_id, actor)
            end = self.recorder.max_notification_id() or 0
            for index, position in enumerate(command.evidence):
                if position > end:
                    raise errors.EvidenceUnknown(
                        f"evidence cites a store position past the store's end ({end}); "
                        "cite positions of stored events",
                        field=f"evidence.{index}",
                    )
            investigation.record_finding(
                duty=command.duty,
                unit=command.unit,
                person=command.person,
                determination=command.determination,
                evidence=list(command.evidence),
                note=command.note,
                by=actor.as_record(),
            )
            self.save(investigation)

        self._retrying(investigation_id, attempt)

    @records_refusals("add_rectification")
    def add_rectification(
        self, investigation_id: UUID, command: AddRectification, actor: Actor
    ) -> UUID:
        def attempt() -> UUID:
            investigation = self._investigation_for_work(investigation_id, actor)
            item_id = investigation.add_rectification(
                item=command.item, owner=command.owner, due_on=command.due_on, by=actor.as_record()
            )
            self.save(investigation)
            return item_id

        return self._retrying(investigation_id, attempt)

    @records_refusals("complete_rectification")
    def complete_rectification(
        self, investigation_id: UUID, item_id: UUID, command: CompleteRectification, actor: Actor
    ) -> None:
        def attempt() -> None:
            investigation = self._investigation_for_work(investigation_id, actor)
            investigation.complete_rectification(
                item_id, on=command.completed_on, note=command.note, by=actor.as_record()
            )
            self.save(investigation)

        self._retrying(investigation_id, attempt)

    @records_refusals("record_report_issued")
    def record_report_issued(
        self,
        investigation_id: UUID,
        format: str,
        sha256: str,
        actor: Actor,
    ) -> None:
        """The report of the investigation was issued (`format` html, pdf or json; `sha256` of
        its bytes, lowercase hex): for the report's producer, by a county lead or one of the
        investigators."""

        def attempt() -> None:
            investigation = self._investigation_for_work(investigation_id, actor)
            investigation.issue_report(format=format, sha256=sha256, by=actor.as_record())
            self.save(investigation)

        self._retrying(investigation_id, attempt)

    def _retrying(self, key: UUID, attempt: Callable[[], T]) -> T:
        """Run one read-change-save of an investigation (and its orders) again, on fresh state,
        when another writer stored first (optimistic concurrency, as `change_case`); writers of
        the same investigation in this process take turns."""
        with self._case_locks[hash(key) % len(self._case_locks)]:
            for tried in range(_COMMAND_ATTEMPTS):
                try:
                    return attempt()
                except IntegrityError:
                    if tried == _COMMAND_ATTEMPTS - 1:
                        raise
                    time.sleep(random.uniform(0, min(0.05, 0.001 * 2**tried)))  # noqa: S311
        raise AssertionError("unreachable")

    def investigation(self, investigation_id: UUID) -> Investigation:
        """The aggregate itself, for a caller that decided and recorded the read (the report)."""
        return self._get_investigation(investigation_id)

    def _get_investigation(self, investigation_id: UUID) -> Investigation:
        try:
            found: object = self.repository.get(investigation_id, projector_func=replay)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, Investigation):
            raise errors.InvestigationNotFound("no investigation with this id is visible to you")
        return found

    def _investigation_for_work(self, investigation_id: UUID, actor: Actor) -> Investigation:
        """The investigation, for a county lead or one of its investigators; anyone else is
        answered as if it did not exist (an admin: not permitted, it holds no case content)."""
        investigation = self._get_investigation(investigation_id)
        if actor.role is Role.COUNTY_LEAD or (
            actor.role is Role.INVESTIGATOR and investigation.names(actor.user)
        ):
            return investigation
        if actor.role is Role.ADMIN:
            raise errors.NotPermitted(
                "findings, rectifications and reports are the county lead's and the "
                "investigators'; an admin issues and revokes orders"
            )
        raise errors.InvestigationNotFound("no investigation with this id is visible to you")

    def _files_of_minor(self, case_ids: Sequence[UUID], id_number: str) -> list[UUID]:
        """The files among `case_ids` that name this ID number (the read models found them;
        the files themselves decide)."""
        found: list[UUID] = []
        for case_id in dict.fromkeys(case_ids):
            with suppress(errors.CaseNotFound, DataErased):  # an erased file names no one
                if self._get_case(case_id).minor["id_number"] == id_number:
                    found.append(case_id)
        return found

    def _county_order(
        self,
        investigation: Investigation,
        case_id: UUID,
        investigator: str,
        *,
        covers: str,
        reason: str,
        expires_at: datetime,
        now: datetime,
        actor: Actor,
    ) -> CountyOrder:
        """Issue or renew the county order of (case, investigator), and record it in the
        investigation; the caller saves both."""
        order = self._get_county_order(case_id, investigator)
        if order is None:
            order = CountyOrder(
                investigation_id=investigation.id,
                case_id=case_id,
                investigator=investigator,
                covers=covers,
                reason=reason,
                expires_at=expires_at.isoformat(),
                by=actor.as_record(),
            )
        else:
            order.renew(
                investigation_id=investigation.id,
                covers=covers,
                reason=reason,
                expires_at=expires_at,
                now=now,
                by=actor.as_record(),
            )
        investigation.record_order(
            order_id=order.id,
            case_id=case_id,
            investigator=investigator,
            covers=covers,
            reason=reason,
            expires_at=expires_at,
            by=actor.as_record(),
        )
        return order

    def _get_county_order(self, case_id: UUID, investigator: str) -> CountyOrder | None:
        try:
            order: object = self.repository.get(
                county_order_id(case_id, investigator), projector_func=replay
            )
        except AggregateNotFoundError:
            return None
        return order if isinstance(order, CountyOrder) else None

    # --- point in time: a case as it stood at an instant (GET /v1/cases/{id}?as_of=T) ---------

    def read_case_as_of(
        self,
        case_id: UUID,
        as_of: datetime,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        *,
        channel: Channel,
        client: Client,
    ) -> dict[str, Any]:
        """The case as it stood at `as_of` (its last event at or before that instant), for an
        investigator holding an order in force now; decided, then recorded, then built, like
        every read. Anyone else is refused as for a case out of scope (`as_of_not_for_role`);
        an instant before the clue was reported is refused as a missing case
        (`no_such_case_as_of`); both stored as `AccessDenied`. A grant is stored with the rule
        `<rule>:as_of:<version>` and that version as the access event's `case_version` (the
        version disclosed, not the file's current one)."""
        at_version: list[int] = []

        def as_of_only(decision: Decision) -> Decision:
            if not decision.granted:
                return decision
            if actor.role is not Role.INVESTIGATOR or decision.break_glass:
                return Decision(False, f"{AS_OF_NOT_FOR_ROLE}:{actor.role}")
            # Timestamps only, nothing disclosed; read only for a reader the rules grant.
            stored: list[Any] = list(self.events.get(case_id))
            version = version_as_of([e.timestamp for e in stored], as_of)
            if version is None:
                return Decision(False, NO_SUCH_CASE_AS_OF)
            at_version.append(version)
            return Decision(True, f"{decision.rule}:as_of:{version}", decision.fields)

        _, decision = self.authorise_read(
            case_id,
            actor,
            purpose,
            request_id,
            narrow=as_of_only,
            channel=channel,
            client=client,
            disclosed_version=lambda: at_version[0] if at_version else None,
        )
        case: object = self.repository.get(case_id, version=at_version[0], projector_func=replay)
        if not isinstance(case, Case):
            raise errors.CaseNotFound(f"no case {case_id} is visible to you")
        return disclose(case, decision.fields, reader_unit=actor.unit)

    # --- break-glass reviews --------------------------------------------------------------------

    def pending_break_glass_reviews(self) -> list[BreakGlassAccessed]:
        """Break-glass accesses no compliance auditor has reviewed yet, oldest first."""
        opened: dict[UUID, BreakGlassAccessed] = {}
        for notification in self.notifications(topics=REVIEW_TOPICS):
            found = self.mapper.to_domain_event(notification)
            if isinstance(found, BreakGlassAccessed):
                opened[found.originator_id] = found
            else:
                opened.pop(found.originator_id, None)
        return list(opened.values())

    @records_refusals("review_break_glass")
    def review_break_glass(
        self, access_id: UUID, command: cmd.ReviewBreakGlass, actor: Actor
    ) -> None:
        if actor.role is not Role.COMPLIANCE_AUDITOR:
            raise errors.NotPermitted("only a compliance auditor reviews break-glass accesses")
        stored = self.events.get(access_id)
        if not any(isinstance(e, BreakGlassAccessed) for e in stored):
            raise errors.UnknownAccessRecord(f"no break-glass access {access_id}")
        if any(isinstance(e, BreakGlassReviewed) for e in stored):
            raise errors.AlreadyReviewed(f"break-glass access {access_id} is already reviewed")
        review = review_event(access_id, command.outcome, command.note, actor)
        try:
            self.save(review)
        except IntegrityError:
            raise errors.AlreadyReviewed(
                f"break-glass access {access_id} is already reviewed"
            ) from None

    def record_disclosures(
        self,
        disclosures: Sequence[tuple[UUID, frozenset[str], str, int | None]],
        *,
        actor: Actor,
        purpose: Purpose,
        request_id: str,
        channel: Channel,
        client: Client,
    ) -> None:
        """Store one `CaseAccessed` per (case, fields, rule, case version) (lists, exports), all
        in one transaction, before the caller returns any of it; the case version is the one
        the disclosed values are of (a ledger row's, or the live case's). Raises if the store
        fails: then nothing may be returned, and nothing of it is recorded. They join the
        shared commit of the reads (one unit: one transaction, never split), as a case read's
        event does: under load lists share the reads' commits instead of paying a transaction
        and an fsync each (a lone lookup's latency is the same: bench/README.md, "fifteenth
        round"). Proven by tests/integration/test_group_commit.py."""
        if not disclosures:
            return
        self._record_accesses(
            [
                access_event(
                    Decision(True, rule, fields),
                    case_id=case_id,
                    actor=actor,
                    purpose=purpose,
                    request_id=request_id,
                    case_version=case_version,
                    channel=channel,
                    client=client,
                )
                for case_id, fields, rule, case_version in disclosures
            ]
        )

    # --- the log ------------------------------------------------------------------------------

    def notifications(
        self, start: int = 1, topics: tuple[str, ...] = (), batch: int = 500
    ) -> Iterator[Notification]:
        """Every stored event in the order it was recorded, from position `start`."""
        while True:
            page = self.recorder.select_notifications(start=start, limit=batch, topics=topics)
            yield from page
            if len(page) < batch:
                return
            start = page[-1].id + 1

    def access_log(
        self, case_id: UUID, *, after: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Who accessed the case, when, why, which fields, of which version of the case, by
        which channel, from which client: an access record, no case content. Reads (granted
        or refused) only, oldest first, those stored after position `after`, at most `limit`;
        from the access-log read model when one is wired (`use_access_records`), else from a
        scan of the store's access events."""
        page = RecordPage(after, limit, _LOGGED)
        return [access_log_entry(r) for r in self.access_records(case_id, page)]

    # --- notice facts (domain.notices) --------------------------------------------------------

    def published_notice(self, message_id: str) -> NoticePublished | None:
        """The relay's record of a notice it published (by its deterministic id), or None."""
        for event in self.events.get(published_id(message_id)):
            if isinstance(event, NoticePublished):
                return event
        return None

    def record_notice_receipt(
        self, message_id: str, actor: Actor, client: dict[str, Any]
    ) -> NoticeReceived:
        """The unit's client holds the notice: store `NoticeReceived` once (its id derives from
        the message id). Only a member of the unit it was published to may confirm it; to
        anyone else it does not exist (no answer tells a unit what another was sent). A second
        receipt stores nothing and answers the first."""
        published = self.published_notice(message_id)
        if published is None or (published.unit, published.street) != (actor.unit, actor.street):
            raise NoticeNotFound(
                "no notice with this id was published to your unit (yet): check the id, "
                "or confirm again in a moment"
            )
        receipt = notice_received(published, client)
        try:
            self.store_events([receipt])
        except IntegrityError:
            for event in self.events.get(received_id(message_id)):
                if isinstance(event, NoticeReceived):
                    return event
            raise
        return receipt

    def undeliverable_notices(self, street: str | None = None) -> list[NoticeUndeliverable]:
        """Notices that could not be sent, oldest first; with `street`, those about that street
        (for its coordinator's worklist). Read incrementally: each call scans the events stored
        since the last one, and `RESCAN_WINDOW` positions before them again, since on
        PostgreSQL a position may become visible after higher ones (its transaction committed
        later); a fact is kept once (by its id)."""
        seen: UndeliverableSeen = self.__dict__.setdefault("_undeliverable", UndeliverableSeen())
        with seen.lock:
            topics = (get_topic(NoticeUndeliverable),)
            start = max(1, seen.next - UndeliverableSeen.RESCAN_WINDOW)
            for notification in self.notifications(start, topics=topics):
                event = self.mapper.to_domain_event(notification)
                if isinstance(event, NoticeUndeliverable):
                    seen.events.setdefault(event.originator_id, event)
                seen.next = max(seen.next, notification.id + 1)
            found = list(seen.events.values())
        return [e for e in found if street is None or e.street == street]

    # --- the unit registry (domain.units) ---------------------------------------------------------

    def register_unit(self, command: RegisterUnit, keys: UnitKeys, by: dict[str, str]) -> Unit:
        unit = Unit.register(command, keys, by=by)
        try:
            self.save(unit)
        except IntegrityError:
            raise UnitAlreadyRegistered(
                f"unit '{command.unit_id}' is already registered; rotate its keys instead",
                field="unit_id",
            ) from None
        return unit

    def rotate_unit_keys(self, unit_id: str, keys: UnitKeys, by: dict[str, str]) -> Unit:
        unit = self.unit(unit_id)
        unit.rotate_keys(keys, by=by)
        self.save(unit)
        return unit

    def unit(self, unit_id: str) -> Unit:
        try:
            found: object = self.repository.get(unit_stream_id(unit_id))
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, Unit):
            raise UnknownUnit(f"no unit '{unit_id}' is registered", field="unit_id")
        return found

    def assignable(self, unit_id: str, case: Case) -> Case:
        """The case, once checked that the unit may be assigned to it: a unit is the pair
        (street, code), so a registered unit of another street is refused, and so is a code no
        unit is registered under: its notice could never be delivered, and a task nobody is told
        of is a silent drop (issue 14; tests/integration/test_duty_cycle.py).

        The unit's street is read from the store the first time only (`_unit_streets`): a
        store read and a decryption a command saved (bench/README.md, seventeenth round)."""
        street = self._unit_streets.get(unit_id)
        if street is None:
            street = self._registered_street(unit_id)
        if street != case.street:
            raise errors.UnitOfAnotherStreet(
                "this unit is registered in another street; assign a member unit of the "
                "case's own street",
                field="unit",
            )
        return case

    def _registered_street(self, unit_id: str) -> str:
        try:
            registered = self.unit(unit_id)
        except UnknownUnit:
            # The message names neither the code given nor the registered ones (no echo).
            raise errors.UnitNotRegistered(
                "no unit is registered under this code, so it would never receive the task; "
                "register it first (casetrail unit add --unit CODE --name NAME --type TYPE "
                "--street STREET, docs/messaging.md), then assign it",
                field="unit",
            ) from None
        if len(self._unit_streets) >= _UNIT_STREETS_KEPT:
            self._unit_streets.clear()  # a bound, far above any street's member units
        self._unit_streets[unit_id] = registered.street
        return registered.street

    def units(self) -> list[Unit]:
        """Every registered unit, by code."""
        registered = (get_topic(Unit.UnitRegistered),)  # type: ignore[attr-defined]
        ids = {UUID(str(n.originator_id)) for n in self.notifications(topics=registered)}
        found: list[object] = [self.repository.get(i) for i in ids]
        return sorted((u for u in found if isinstance(u, Unit)), key=lambda u: u.unit_id)

    # --- missed deadlines (domain.deadlines) ---------------------------------------------------

    def record_missed_deadlines(
        self, now: datetime, duties: Iterable[CaseDuties] | None = None
    ) -> list[DomainEvent]:
        """Store the deadline facts due by `now` that are not stored yet; returns those this
        call stored (a fact another scan stored first is refused by the store and skipped).

        `duties`: the open duties as the scheduler keeps them (`gateway.messaging.scheduler`,
        a table following the log: O(new events) + O(open duties) a scan). Without it, the
        whole log's case events are folded here: O(the log), for a one-off look or a test."""
        periods = Periods.from_env(self.env.get)
        if duties is None:
            folded: dict[UUID, CaseDuties] = {}
            fold(
                folded,
                readable_events(
                    self.mapper.to_domain_event, self.notifications(topics=DUTY_TOPICS)
                ),
            )
            duties = folded.values()
        offices: dict[str, str] = {}
        for unit in self.units():  # sorted by code: the first office of a street is named
            if unit.type == UnitType.GOVERNANCE_OFFICE.value:
                offices.setdefault(unit.street, unit.unit_id)
        facts = [fact for case in duties for fact in case.due(now, periods, offices)]
        if not facts:
            return []
        try:
            # Usually none is stored yet: one commit for all of them.
            self.store_events(facts)
            return facts
        except IntegrityError:
            pass  # some were stored by another scan: one at a time, skipping those
        stored: list[DomainEvent] = []
        for fact in facts:
            try:
                self.store_events([fact])
            except IntegrityError:
                continue
            stored.append(fact)
        return stored

    def access_events(self, case_id: UUID) -> list[CaseAccessed | AccessDenied]:
        """All access events about one case, oldest first (a full scan; projections index it)."""
        found: list[CaseAccessed | AccessDenied] = []
        for notification in self.notifications(topics=ACCESS_TOPICS):
            event = self.mapper.to_domain_event(notification)
            if isinstance(event, CaseAccessed | AccessDenied) and event.case_id == case_id:
                found.append(event)
        return found

    # --- screening: the roster of minors, campaigns and visits (issue 17) ---
    #
    # A roster entry is one stream per minor and street (`domain.roster`); the gateway computes
    # the blind index of the ID number (the domain never holds the index key) and hands rows in
    # with it. An import is all or nothing unless `store_valid`; a visit is stored in one write
    # with the case file it opens, so that neither exists without the other.

    def roster_entry(self, entry_id: UUID) -> roster.RosterEntry:
        try:
            found: object = self.repository.get(entry_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, roster.RosterEntry):
            raise roster.RosterEntryNotFound(
                "no minor with this id is on the roster of your street", field="entry_id"
            )
        return found

    @records_refusals("import_roster")
    def import_roster(
        self,
        rows: Sequence[tuple[int, roster.RosterMinor, str]],
        *,
        village: str,
        actor: Actor,
        source: dict[str, Any],
        rejected_rows: int,
        store_valid: bool,
    ) -> RosterImport:
        """List the valid rows (row number, minor, blind index of the ID number) of a file for
        `village`: a minor already on the street's roster with the same details stores nothing,
        changed details store `DetailsUpdated`, a minor listed in another village is refused
        (a conflict row). Nothing is stored when the file had rejected rows (`rejected_rows`,
        found by the importer) or conflicts, unless `store_valid`; then the valid rows are
        stored, all in one write."""
        roster.require_roster(actor, actor.street, village, "import into")
        by = actor.as_record()
        changed: list[roster.RosterEntry] = []
        outcome = RosterImport()
        for row, minor, id_index in rows:
            record = minor.model_dump(mode="json")
            entry_id = roster.roster_entry_id(actor.street, id_index)
            try:
                entry: roster.RosterEntry | None = self.roster_entry(entry_id)
            except roster.RosterEntryNotFound:
                entry = None
            if entry is None:
                changed.append(
                    roster.RosterEntry(
                        street=actor.street,
                        id_index=id_index,
                        minor=record,
                        source={**source, "row": row},
                        by=by,
                    )
                )
                outcome.listed += 1
                continue
            try:
                if entry.listed_again(record, {**source, "row": row}, by):
                    changed.append(entry)
                    outcome.updated += 1
                else:
                    outcome.unchanged += 1
            except roster.RosterConflict as exc:
                outcome.conflicts.append((row, exc.field or "village", exc.message))
        if (rejected_rows or outcome.conflicts) and not store_valid:
            return outcome
        if changed:
            self.save(*changed)
        outcome.stored = True
        return outcome

    @records_refusals("open_campaign")
    def open_campaign(self, command: screening.OpenCampaign, actor: Actor) -> UUID:
        if actor.role not in (Role.COORDINATOR, Role.SUPERVISOR):
            raise errors.NotPermitted(
                "only the street's coordinator or supervisor opens a screening campaign"
            )
        campaign = screening.Campaign(
            street=actor.street,
            name=command.name,
            villages=list(command.villages),
            starts_on=command.starts_on.isoformat(),
            ends_on=command.ends_on.isoformat(),
            by=actor.as_record(),
        )
        self.save(campaign)
        return campaign.id

    @records_refusals("campaign")
    def campaign(self, campaign_id: UUID, actor: Actor) -> screening.Campaign:
        """The campaign, if it is of the actor's street (else as if it did not exist)."""
        try:
            found: object = self.repository.get(campaign_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, screening.Campaign) or found.street != actor.street:
            raise CampaignNotFound("no screening campaign with this id in your street")
        return found

    @records_refusals("record_visit")
    def record_visit(
        self,
        campaign_id: UUID,
        entry_id: UUID,
        command: screening.RecordVisit,
        actor: Actor,
        *,
        open_files: Sequence[UUID] = (),
    ) -> VisitOutcome:
        """Store a visit of a minor on the roster. A clue links the minor's open case file
        (one opened from an earlier visit of this entry, or one of `open_files`: the files the
        ledger finds under the same blind index) instead of opening a second; else it opens one
        through the rules of `report_clue`, stored in the same write as the visit. The outcome
        names the linked file only when the actor may see it."""
        campaign = self.campaign(campaign_id, actor)
        for attempt in range(_COMMAND_ATTEMPTS):
            entry = self._visitable(campaign, entry_id, actor, "entry_id")
            if not campaign.in_period(command.visited_on):
                raise errors.DateOutOfOrder(
                    "visited_on lies outside the campaign's period", field="visited_on"
                )
            # The other minors of the household seen on the same visit: nothing found for them.
            household = [
                self._visitable(campaign, other, actor, "household")
                for other in dict.fromkeys(command.household)
                if other != entry_id
            ]
            for other in household:
                other._visited(
                    campaign_id=str(campaign.id),
                    visited_on=command.visited_on.isoformat(),
                    method=str(command.method),
                    result=str(screening.VisitResult.NO_ISSUE),
                    case_id=None,
                    linked=False,
                    notes=command.notes,
                    clue=None,
                    by=actor.as_record(),
                )
            case, linked = self._visit_case(entry, command, actor, open_files)
            entry._visited(
                campaign_id=str(campaign.id),
                visited_on=command.visited_on.isoformat(),
                method=str(command.method),
                result=str(command.result),
                case_id=None if case is None else str(case.id),
                linked=linked,
                notes=command.notes,
                clue=None if command.clue is None else command.clue.model_dump(mode="json"),
                by=actor.as_record(),
            )
            try:
                if case is not None and not linked:
                    self.save(case, entry, *household)
                else:
                    self.save(entry, *household)
            except IntegrityError:
                if attempt == _COMMAND_ATTEMPTS - 1:
                    raise
                continue
            visible = case is not None and can_see(actor, CaseScope.of(case), datetime.now(UTC))
            return VisitOutcome(
                entry_id=entry.id,
                case_id=case.id if case is not None and visible else None,
                opened=case is not None and not linked,
                linked=linked,
                household=tuple(other.id for other in household),
            )
        raise AssertionError("unreachable")

    def _visitable(
        self, campaign: screening.Campaign, entry_id: UUID, actor: Actor, field: str
    ) -> roster.RosterEntry:
        """The roster entry, once checked that the actor may record its visit in the campaign."""
        entry = self.roster_entry(entry_id)
        if entry.street != actor.street:
            raise roster.RosterEntryNotFound(
                "no minor with this id is on the roster of your street", field=field
            )
        roster.require_roster(actor, entry.street, entry.village, "record a visit on")
        if not campaign.covers(entry.village):
            raise screening.VisitOutsideCampaign(
                "the campaign does not cover this minor's village", field=field
            )
        return entry

    def _visit_case(
        self,
        entry: roster.RosterEntry,
        command: screening.RecordVisit,
        actor: Actor,
        open_files: Sequence[UUID],
    ) -> tuple[Case | None, bool]:
        """(the case of a clue, whether it is an existing open file); (None, False) for a
        visit that found nothing."""
        if command.clue is None:
            return None, False
        for known in dict.fromkeys([*(UUID(c) for c in entry.case_ids), *open_files]):
            try:
                case = self._get_case(known)
            except (errors.CaseNotFound, DataErased):  # an erased file takes no more visits
                continue
            if not case.is_closed and case.street == entry.street:
                return case, True
        require_permission(actor, "report_clue", scope=None)
        clue = command.clue
        minor = {k: entry.minor[k] for k in cmd.Minor.model_fields}
        try:
            report = cmd.ReportClue.model_validate(
                {
                    "minor": minor,
                    "guardians": [g.model_dump(mode="json") for g in clue.guardians],
                    "issues": [i.model_dump(mode="json") for i in clue.issues],
                    "description": clue.description,
                    "found_by": {"role": str(clue.found_by), "unit": actor.unit},
                    "method": str(screening.DISCOVERY_OF_VISIT[command.method]),
                    "found_on": command.visited_on.isoformat(),
                    "risk": str(clue.risk),
                }
            )
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise screening.ClueNotReportable(
                f"the clue cannot open a case file as the roster lists the minor ({where} "
                "does not meet the case file's rules, e.g. the minor is no longer under 18); "
                "report it through POST /v1/cases",
                field="clue",
            ) from None
        return Case.report(report, street=actor.street, by=actor.as_record()), False

    def clues_reported_since(
        self, position: int, about: Callable[[str], bool], street: str
    ) -> list[UUID]:
        """Case files of `street` reported after `position` (what a read model has not
        followed yet) whose minor's ID number `about` accepts: a visit's clue links one of them
        rather than opening a second file while the ledger lags. Nothing is disclosed."""
        found: list[UUID] = []
        topics = (get_topic(Case.ClueReported),)  # type: ignore[attr-defined]
        for event in readable_events(
            self.mapper.to_domain_event, self.notifications(position + 1, topics=topics)
        ):
            if getattr(event, "street", None) == street and about(
                str(getattr(event, "minor", {}).get("id_number", ""))
            ):
                found.append(UUID(str(event.originator_id)))
        return found[::-1]

    @records_refusals("sign_roster_letter")
    def sign_roster_letter(
        self, entry_id: UUID, command: screening.SignRosterLetter, actor: Actor
    ) -> None:
        for attempt in range(_COMMAND_ATTEMPTS):
            entry = self.roster_entry(entry_id)
            if entry.street != actor.street:
                raise roster.RosterEntryNotFound(
                    "no minor with this id is on the roster of your street", field="entry_id"
                )
            roster.require_roster(actor, entry.street, entry.village, "sign a letter on")
            entry.sign_letter(command.reason, command.signed_on, actor.as_record())
            try:
                self.save(entry)
            except IntegrityError:
                if attempt == _COMMAND_ATTEMPTS - 1:
                    raise
                continue
            return

    # --- ledger submissions (报送, issue 17) ---------------------------------------------------
    #
    # A village (its committee: a reporter whose unit is the village's code) signs off its
    # ledger for a period; the street's coordinator or supervisor receives it (for the office
    # the plan names, 街道社会事务办); a period without a submission at the end of its due day
    # is a fact (`LedgerSubmissionMissed`), stored by the deadline scan. `domain.submissions`;
    # proven by tests/integration/test_submissions.py.

    @property
    def initial_submission_due(self) -> date:
        return date.fromisoformat(self.env.get("INITIAL_SUBMISSION_DUE") or DEFAULT_INITIAL_DUE)

    @records_refusals("submit_ledger")
    def submit_ledger(
        self,
        actor: Actor,
        period: Period,
        rows: Sequence[Mapping[str, Any]],
        *,
        now: datetime | None = None,
    ) -> LedgerSubmission:
        """Store `LedgerSubmitted` for the actor's village (its unit code), the period and the
        rows its ledger lists (`projections.ledger.submissions.submission_rows`)."""
        if actor.role is not Role.REPORTER:
            raise errors.NotPermitted(
                f"role '{actor.role}' may not submit a ledger; a village's committee (reporter) "
                "submits its own"
            )
        now = now or datetime.now(UTC)
        first = period.first_day()
        # The period begins on the street office's day (UTC+8), not the server's UTC date.
        if first is not None and first > local_date(now):
            raise errors.SubmissionInvalid(
                "the period has not begun; submit the current quarter or an earlier one",
                field="period",
            )
        digest = ledger_digest(actor.street, actor.unit, period.code, rows)
        by = actor.as_record()

        def attempt() -> LedgerSubmission:
            found = self.ledger_submission(actor.street, actor.unit, period.code)
            submission = found or LedgerSubmission.open(
                street=actor.street, village=actor.unit, period=period.code, by=by
            )
            submission.submit(
                row_count=len(rows),
                digest=digest,
                due_on=period.due_on(self.initial_submission_due),
                now=now,
                by=by,
            )
            self.save(submission)
            return submission

        return self._retrying(submission_id(actor.street, actor.unit, period.code), attempt)

    @records_refusals("receive_ledger")
    def receive_ledger(self, submission: UUID, digest: str, actor: Actor) -> LedgerSubmission:
        """The street's office received the submission holding `digest` (`LedgerReceived`)."""
        if actor.role not in (Role.COORDINATOR, Role.SUPERVISOR):
            raise errors.NotPermitted(
                f"role '{actor.role}' may not receive a ledger submission; the street's "
                "coordinator or supervisor does"
            )

        def attempt() -> LedgerSubmission:
            found = self.submission(submission)
            if found is None or found.street != actor.street:
                raise errors.SubmissionNotFound("no submission with this id is visible to you")
            found.receive(digest, by=actor.as_record())
            self.save(found)
            return found

        return self._retrying(submission, attempt)

    def submission(self, submission: UUID) -> LedgerSubmission | None:
        try:
            found: object = self.repository.get(submission)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, LedgerSubmission) else None

    def ledger_submission(self, street: str, village: str, period: str) -> LedgerSubmission | None:
        return self.submission(submission_id(street, village, period))

    def villages(self, street: str | None = None) -> list[Unit]:
        """The registered village committees (of `street`), by code: who owes submissions."""
        return [
            u
            for u in self.units()
            if u.type == UnitType.VILLAGE.value and (street is None or u.street == street)
        ]

    def record_missed_submissions(self, now: datetime) -> list[LedgerSubmissionMissed]:
        """Store `LedgerSubmissionMissed` for every registered village and every period whose
        due day ended by `now` (within `SCAN_WINDOW_DAYS`) without a submission stored before
        that day's end; each fact once (its id derives from street, village and period)."""
        today = local_date(now)
        periods = periods_due_between(
            self.initial_submission_due, today - timedelta(days=SCAN_WINDOW_DAYS), today
        )
        facts: list[LedgerSubmissionMissed] = []
        for period in periods:
            due = period.due_on(self.initial_submission_due)
            ended = start_of_day(due + timedelta(days=1))
            if ended > now:
                continue
            for village in self.villages():
                found = self.ledger_submission(village.street, village.unit_id, period.code)
                if found is not None and any(
                    s["at"] and datetime.fromisoformat(s["at"]) < ended for s in found.submissions
                ):
                    continue
                facts.append(missed_fact(village.street, village.unit_id, period.code, due, ended))
        stored: list[LedgerSubmissionMissed] = []
        for fact in facts:
            try:
                self.store_events([fact])
            except IntegrityError:
                continue  # stored by an earlier scan
            stored.append(fact)
        return stored

    def missed_submissions(self, street: str) -> list[LedgerSubmissionMissed]:
        """The street's missed-submission facts, oldest first (a scan of their topic)."""
        found: list[LedgerSubmissionMissed] = []
        for notification in self.notifications(topics=(get_topic(LedgerSubmissionMissed),)):
            event = self.mapper.to_domain_event(notification)
            if isinstance(event, LedgerSubmissionMissed) and event.street == street:
                found.append(event)
        return found

    # --- compliance findings (issue 15) ---------------------------------------------------------

    def record_command_refusal(
        self, actor: Actor, command: str, case_id: UUID | None, rule: str
    ) -> CommandRefused:
        """Durably store one refused command (`CommandRefused`) with the request id, channel
        and client of the current origin; raises if the store fails."""
        origin = current_origin()
        refused = command_refused(
            case_id=case_id or NO_CASE,
            actor=actor,
            command=command,
            rule=rule,
            request_id=origin.request_id,
            channel=origin.channel,
            client=origin.client,
        )
        if self.access_commits is None:
            self.store_events([refused])
        else:
            self.access_commits.record(refused)
        return refused

    def command_refusals(self, *, case_id: UUID | None = None) -> list[CommandRefused]:
        """Refused commands, oldest first (a scan of their topic), optionally about one case."""
        found: list[CommandRefused] = []
        for notification in self.notifications(topics=topics_of(CommandRefused)):
            event = self.mapper.to_domain_event(notification)
            if isinstance(event, CommandRefused) and (case_id is None or event.case_id == case_id):
                found.append(event)
        return found

    def record_findings(self, raised: Sequence[Finding]) -> list[Finding]:
        """Store new findings (`domain.compliance.findings.Finding`, each its first event);
        returns those this call stored. A finding's id derives from its rule and evidence, so
        one stored before (by a crashed evaluator, a re-run, another process) is refused by
        the store and skipped: never doubled."""
        pending = [
            (finding, [e for e in finding.collect_events() if isinstance(e, DomainEvent)])
            for finding in raised
        ]
        events = [e for _, found in pending for e in found]
        if not events:
            return []
        try:
            self.store_events(events)  # usually none is stored yet: one commit for all
            return [finding for finding, found in pending if found]
        except IntegrityError:
            pass
        stored: list[Finding] = []
        for finding, found in pending:
            try:
                self.store_events(found)
            except IntegrityError:
                continue
            stored.append(finding)
        return stored

    def findings(self, where: FindingFilter | None = None) -> list[FindingSummary]:
        """Every finding (`FindingSummary`: ids, codes, instants, counts, no case content),
        oldest first, those matching `where`. A scan of the findings' own topics (not of the
        access events): O(findings)."""
        streams: dict[UUID, list[Any]] = {}
        for notification in self.notifications(topics=FINDING_TOPICS):
            event = self.mapper.to_domain_event(notification)
            streams.setdefault(event.originator_id, []).append(event)
        found: list[FindingSummary] = []
        for events in streams.values():
            finding = replay(None, events)
            if isinstance(finding, Finding):
                summary = FindingSummary.of(finding)
                if where is None or where.matches(summary):
                    found.append(summary)
        return found

    def finding(self, finding_id: UUID) -> Finding:
        try:
            found: object = self.repository.get(finding_id, projector_func=replay)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, Finding):
            raise FindingNotFound(
                "no finding with this id; list them with GET /v1/compliance/findings"
            )
        return found

    def _finding_for_auditor(self, finding_id: UUID, actor: Actor, doing: str) -> Finding:
        if actor.role is not Role.COMPLIANCE_AUDITOR:
            raise errors.NotPermitted(f"only a compliance auditor may {doing}")
        return self.finding(finding_id)

    @records_refusals("review_finding")
    def review_finding(
        self, finding_id: UUID, outcome: Outcome, reason: str, actor: Actor
    ) -> Finding:
        """A compliance auditor's review (`justified` / `violation`), once."""

        def attempt() -> Finding:
            finding = self._finding_for_auditor(finding_id, actor, "review findings")
            finding.review_as(outcome, reason, actor.as_record())
            self.save(finding)
            return finding

        return self._retrying(finding_id, attempt)

    @records_refusals("open_finding_follow_up")
    def open_finding_follow_up(
        self, finding_id: UUID, owner: str, due_on: date, actor: Actor
    ) -> Finding:
        """A follow-up item (owner, due date) for a finding reviewed as a violation."""

        def attempt() -> Finding:
            finding = self._finding_for_auditor(finding_id, actor, "open follow-ups")
            finding.open_follow_up(owner, due_on, actor.as_record())
            self.save(finding)
            return finding

        return self._retrying(finding_id, attempt)

    @records_refusals("complete_finding_follow_up")
    def complete_finding_follow_up(
        self, finding_id: UUID, on: date, note: str, actor: Actor
    ) -> Finding:
        def attempt() -> Finding:
            finding = self._finding_for_auditor(finding_id, actor, "complete follow-ups")
            finding.complete_follow_up(on, note, actor.as_record())
            self.save(finding)
            return finding

        return self._retrying(finding_id, attempt)

    def supersede_findings(
        self, finding_ids: Iterable[UUID], config_digest: str, by: dict[str, str]
    ) -> int:
        """Mark findings a re-run no longer raises as superseded (kept, not removed); those
        reviewed or superseded already are left as they are. Returns how many were marked."""
        marked = 0
        for finding_id in finding_ids:

            def attempt(finding_id: UUID = finding_id) -> bool:
                finding = self.finding(finding_id)
                if not finding.supersede(config_digest, by):
                    return False
                self.save(finding)
                return True

            marked += self._retrying(finding_id, attempt)
        return marked

    # --- the access log read model (issue 15) ---

    # Set by `gateway.bootstrap` to the access-log read model's `CaseLog` (a case's records,
    # complete up to the store's end); None: a scan of the store's access events.
    _access_records: AccessRecordSource | None = None

    def use_access_records(self, source: AccessRecordSource | None) -> None:
        """Answer case access logs from `source` (see `access_records`)."""
        self._access_records = source

    @property
    def access_record_source(self) -> AccessRecordSource | None:
        """The wired source of a case's access records (the read model's), or None: the
        workbench's `gather` then reads access events from the store instead."""
        return self._access_records

    def access_records(self, case_id: UUID, page: RecordPage = EVERY_RECORD) -> list[AccessRecord]:
        """The access records naming the case (reads and refused commands) on `page` (every
        one by default), in stored order, complete up to the store's end at the call. From the
        read model when wired, without a scan of the store; otherwise from one scan of the
        access topics."""
        if self._access_records is not None:
            return self._access_records(case_id, page)
        found: list[AccessRecord] = []
        if page.room(0) == 0:
            return found
        for notification in self.notifications(start=page.after + 1, topics=RECORD_TOPICS):
            event = self.mapper.to_domain_event(notification)
            if not isinstance(event, DomainEvent) or getattr(event, "case_id", None) != case_id:
                continue
            record = record_of(notification.id, event)
            if record is not None and page.keeps(record):
                found.append(record)
                if page.room(len(found)) == 0:
                    break
        return found

    # --- the user registry (issue 16, domain.users) ----------------------------------------------

    def register_user(self, command: RegisterUser, by: dict[str, str]) -> User:
        """Register a user with their first role; a user id is registered once only."""
        user = User.register(command, by=by)
        try:
            self.save(user)
        except IntegrityError:
            raise UserAlreadyRegistered(
                "a user with this id is already registered; grant a role or change the post "
                "instead",
                field="user_id",
            ) from None
        return user

    def ensure_user(
        self,
        actor: Actor,
        *,
        display_name: str,
        post: Post | None = None,
        by: dict[str, str],
        reason: str,
    ) -> User:
        """The actor's user, registered (with `post`, or the role's `DEFAULT_POSTS`) or granted
        the actor's role when needed, so that the actor's tokens get in: for set-ups that know
        people by their tokens (the demo, bench, test fixtures). Refuses (UnitMismatch) a user
        registered in another unit or street: a token naming that unit would still be refused.
        """
        try:
            user = self.user(actor.user)
        except UnknownUser:
            command = RegisterUser(
                user_id=actor.user,
                display_name=display_name,
                unit=actor.unit,
                street=actor.street,
                role=actor.role,
                post=post or DEFAULT_POSTS[actor.role],
                reason=reason,
            )
            try:
                return self.register_user(command, by)
            except UserAlreadyRegistered:
                user = self.user(actor.user)  # registered meanwhile: check it below
        if (user.unit, user.street) != (actor.unit, actor.street):
            raise UserOfAnotherUnit(
                "this user id is registered in another unit or street; use another user id",
                field="user_id",
            )
        if actor.role not in user.roles:
            try:
                user = self.grant_role(user.user_id, ChangeRole(role=actor.role, reason=reason), by)
            except RoleAlreadyHeld:
                user = self.user(actor.user)
        return user

    def user(self, user_id: str) -> User:
        """The registered user, or `UnknownUser` (404; the message does not quote the id)."""
        return self.user_at(user_stream_id(user_id))

    def user_at(self, stream_id: UUID) -> User:
        try:
            found: object = self.repository.get(stream_id)
        except (AggregateNotFoundError, DataErased):  # an erased user record is no user
            found = None
        if not isinstance(found, User):
            raise UnknownUser("no user is registered under this id", field="user_id")
        return found

    def users(self) -> list[User]:
        """Every registered user, by id."""
        registered = (get_topic(User.UserRegistered),)  # type: ignore[attr-defined]
        ids = {UUID(str(n.originator_id)) for n in self.notifications(topics=registered)}
        found: list[object] = []
        for i in ids:
            try:
                found.append(self.repository.get(i))
            except DataErased:  # an erased user record (issue 19) is no user any more
                continue
        return sorted((u for u in found if isinstance(u, User)), key=lambda u: u.user_id)

    def _change_user(self, user_id: str, change: Callable[[User], None], attempts: int = 3) -> User:
        """Apply a rule to the stored user and save it; a concurrent change of the same user
        (the version was taken) is retried on the new state, whose rules then decide."""
        for attempt in range(attempts):
            user = self.user(user_id)
            change(user)
            try:
                self.save(user)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
                continue
            return user
        raise AssertionError("unreachable")  # pragma: no cover

    def grant_role(self, user_id: str, command: ChangeRole, by: dict[str, str]) -> User:
        return self._change_user(
            user_id, lambda u: u.grant(command.role, by=by, reason=command.reason)
        )

    def revoke_role(self, user_id: str, command: ChangeRole, by: dict[str, str]) -> User:
        return self._change_user(
            user_id, lambda u: u.revoke(command.role, by=by, reason=command.reason)
        )

    def suspend_user(self, user_id: str, command: ChangeStatus, by: dict[str, str]) -> User:
        return self._change_user(user_id, lambda u: u.suspend(by=by, reason=command.reason))

    def reinstate_user(self, user_id: str, command: ChangeStatus, by: dict[str, str]) -> User:
        return self._change_user(user_id, lambda u: u.reinstate(by=by, reason=command.reason))

    def change_post(self, user_id: str, command: ChangePost, by: dict[str, str]) -> User:
        return self._change_user(
            user_id, lambda u: u.change_post(command.post, by=by, reason=command.reason)
        )

    @records_refusals("read_user_history", case="case_id")
    def user_history_for(
        self, user_id: str, actor: Actor, case_id: UUID | None = None
    ) -> list[dict[str, Any]]:
        """The user's history for a reader who may see it: an admin, a compliance auditor, or
        an investigator under an order in force naming `case_id` (street's or county's)."""
        if actor.role in (Role.ADMIN, Role.COMPLIANCE_AUDITOR):
            return self.user_history(user_id)
        if actor.role is Role.INVESTIGATOR:
            if case_id is None:
                raise errors.NotPermitted(
                    "an investigator reads a user's history under an order: name the case "
                    "your order covers (?case_id=)",
                    field="case_id",
                )
            expires, _ = self._any_order_in_force(case_id, actor.user, datetime.now(UTC))
            if expires is None:
                raise errors.NotPermitted(
                    "no investigation order in force names you and this case", field="case_id"
                )
            return self.user_history(user_id)
        raise errors.NotPermitted(
            "only administrators, compliance auditors and investigators under an order read "
            "a user's history"
        )

    def user_history(self, user_id: str) -> list[dict[str, Any]]:
        """Who held which post and roles when, and who changed them why (`domain.users.history`)."""
        stream_id = user_stream_id(user_id)
        self.user_at(stream_id)  # UnknownUser when none
        return user_history(list(self.events.get(stream_id)))

    def user_changes_since(
        self, position: int, limit: int = 1000
    ) -> tuple[list[tuple[UUID, int]], int]:
        """The user events stored after store position `position`, as (stream id, version) in
        stored order, and the last position read: what a registry snapshot refreshes from
        (`gateway.auth.UserRegistry`). Nothing is decrypted.

        The position read is the store's head (taken before the read) when the page is not
        full, not the last user event's: user events are rare, and a registry that refreshed
        from the last one read every event stored since, every refresh, a scan growing with
        the store (issue 23: 59% of the API workers' time at 1M events, bench/README.md,
        "scale"). An event committed late below the head is still read: the registry reads
        from the position it reached `OVERLAP_SECONDS` ago. Proven by
        tests/integration/test_user_registry_position.py."""
        head = self.recorder.max_notification_id() or 0
        page = self.recorder.select_notifications(
            start=position + 1, limit=limit, stop=head, topics=USER_TOPICS
        )
        changed = [(UUID(str(n.originator_id)), n.originator_version) for n in page]
        if len(page) == limit:
            return changed, page[-1].id
        return changed, max(position, head)

    # --- sign-in: credentials and browser sessions (issue 16, domain.credentials) ---------------

    def credentials(self, user_id: str) -> Credentials | None:
        """The user's credentials (None: never given a password, a TOTP secret or a sign-in)."""
        try:
            found: object = self.repository.get(credentials_stream_id(user_id))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, Credentials) else None

    def _change_credentials(
        self, user_id: str, by: dict[str, str], change: Callable[[Credentials], T]
    ) -> T:
        """Apply a change to the user's credentials (created on the first) and save it; a
        concurrent change (a sign-in meanwhile) is retried on the new state. The user must be
        registered (`UnknownUser` otherwise)."""
        self.user(user_id)
        for attempt in range(_COMMAND_ATTEMPTS):
            found = self.credentials(user_id) or Credentials(user_id=user_id, by=by)
            result = change(found)
            try:
                self.save(found)
            except IntegrityError:
                if attempt == _COMMAND_ATTEMPTS - 1:
                    raise
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def set_password(self, user_id: str, password: str, by: dict[str, str], reason: str) -> None:
        """Store the argon2id hash of a new password (`WeakPassword` if it breaks a rule)."""
        check_password_strength(password)  # before the store is touched
        self._change_credentials(
            user_id, by, lambda c: c.set_password(password, by=by, reason=reason)
        )

    def enrol_totp(self, user_id: str, secret: str, by: dict[str, str]) -> None:
        self._change_credentials(user_id, by, lambda c: c.enrol_totp(secret, by=by))

    def remove_totp(self, user_id: str, by: dict[str, str], reason: str) -> None:
        self._change_credentials(user_id, by, lambda c: c.remove_totp(by=by, reason=reason))

    def unlock_account(
        self, user_id: str, by: dict[str, str], reason: str, now: datetime | None = None
    ) -> None:
        at = now or datetime.now(UTC)
        if self.credentials(user_id) is None:
            raise AccountNotLocked("the account is not locked", field="user_id")
        self._change_credentials(user_id, by, lambda c: c.unlock(by=by, reason=reason, now=at))

    def sign_in_with_password(
        self,
        user_id: str,
        password: str,
        *,
        totp_code: str | None,
        role: Role | None,
        secret: str,
        client: dict[str, str],
        policy: Policy,
        limits: SessionLimits,
        now: datetime | None = None,
    ) -> Session:
        """Check the password (and code), then the registry (registered, active, holding the
        role), and start a session named by `secret`: the session and `SignInSucceeded` in one
        write. Every failure is recorded (`SignInFailed`, `AccountLocked`) and raised as
        `SignInRefused`, the same for every cause; a user id without credentials or a locked
        account leaves the recording to the caller (`SignInRefused.unrecorded`)."""
        at = now or datetime.now(UTC)
        for attempt in range(_COMMAND_ATTEMPTS):
            found = self.credentials(user_id)
            if found is None:
                dummy_verify(password)
                raise SignInRefused("unknown_account", unrecorded=RefusalReason.UNKNOWN_ACCOUNT)
            verdict = found.attempt(password, totp_code, now=at, policy=policy, client=client)
            if verdict.ok:
                session = self._admitted_session(
                    found,
                    role,
                    secret=secret,
                    method="password",
                    client=client,
                    limits=limits,
                    now=at,
                    totp_step=verdict.totp_step,
                )
            try:
                if verdict.ok:
                    self.save(found, session)
                    return session
                if found.pending_events:
                    self.save(found)
            except IntegrityError:
                if attempt == _COMMAND_ATTEMPTS - 1:
                    raise
                continue  # a concurrent attempt on the same account: decide again
            if verdict.reason == SignInReason.TOTP_REQUIRED:
                raise TotpRequired()
            if verdict.locked and verdict.reason is None:
                raise SignInRefused("account_locked", unrecorded=RefusalReason.ACCOUNT_LOCKED)
            raise SignInRefused(str(verdict.reason))
        raise AssertionError("unreachable")  # pragma: no cover

    def sign_in_external(
        self,
        user_id: str,
        *,
        method: str,
        role: Role | None,
        secret: str,
        client: dict[str, str],
        limits: SessionLimits,
        now: datetime | None = None,
    ) -> Session:
        """A sign-in vouched for by an identity provider (OIDC): the registry decides, and the
        sign-in is recorded on the user's credentials (created if needed) with the session."""
        at = now or datetime.now(UTC)
        by = {"user": user_id, "role": "", "unit": "", "street": "", "via": method}
        try:
            self.user(user_id)
        except UnknownUser:
            # No stream for a subject nobody registered: the gateway records the refusal.
            raise SignInRefused("unknown_subject", unrecorded=RefusalReason.OIDC_REFUSED) from None
        for attempt in range(_COMMAND_ATTEMPTS):
            found = self.credentials(user_id) or Credentials(user_id=user_id, by=by)
            session = self._admitted_session(
                found, role, secret=secret, method=method, client=client, limits=limits, now=at
            )
            try:
                self.save(found, session)
            except IntegrityError:
                if attempt == _COMMAND_ATTEMPTS - 1:
                    raise
                continue
            return session
        raise AssertionError("unreachable")  # pragma: no cover

    def _admitted_session(
        self,
        found: Credentials,
        role: Role | None,
        *,
        secret: str,
        method: str,
        client: dict[str, str],
        limits: SessionLimits,
        now: datetime,
        totp_step: int = 0,
    ) -> Session:
        """The registry's word on a user whose secrets were right: a session (its start and
        `SignInSucceeded` pending), or the refusal recorded on the credentials and raised."""
        try:
            user = self.user(found.user_id)
        except UnknownUser:
            user = None
        if user is None or not user.active or not user.roles:
            found.refused(SignInReason.USER_NOT_ADMITTED, client, now)
            self._save_refusal(found)
            raise SignInRefused(str(SignInReason.USER_NOT_ADMITTED))
        if role is None and len(user.roles) > 1:
            # Recorded like every refused sign-in whose secrets were right (the review: a 422
            # left no trace); not counted towards a lockout.
            found.refused(SignInReason.ROLE_NOT_CHOSEN, client, now)
            self._save_refusal(found)
            raise RoleChoice(
                "you hold several roles: choose the one to sign in with (`role`)", field="role"
            )
        chosen = role or next(iter(user.roles))
        if chosen not in user.roles:
            found.refused(SignInReason.ROLE_NOT_HELD, client, now)
            self._save_refusal(found)
            raise RoleChoice("you do not hold this role; choose one you hold", field="role")
        session = Session.start(
            secret,
            user_id=user.user_id,
            role=str(chosen),
            unit=user.unit,
            street=user.street,
            method=method,
            client=client,
            limits=limits,
            now=now,
        )
        found.succeeded(
            method=method, session=session.id, role=str(chosen), client=client, totp_step=totp_step
        )
        return session

    def _save_refusal(self, found: Credentials) -> None:
        # A concurrent change lost this record's race: the refusal stands, unrecorded twice.
        with suppress(IntegrityError):
            self.save(found)

    def session(self, secret: str) -> Session | None:
        """The session named by a cookie's secret (None: there is none)."""
        try:
            found: object = self.repository.get(session_stream_id(secret))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, Session) else None

    def use_session(self, secret: str, now: datetime | None = None) -> Session | None:
        """The live session named by `secret`, its use stored when due; an expired or idle one
        is ended (recorded) and None is returned, as for an ended or unknown one."""
        at = now or datetime.now(UTC)
        stream_id = session_stream_id(secret)
        cache = self._sessions
        with cache.stripe(stream_id):
            found = cache.take(stream_id)
            if found is None:
                found = self.session(secret)
            else:
                found = replay(found, self.events.get(stream_id, gt=found.version))
            if found is None or found.ended is not None:
                return None
            over = found.end_reason_at(at)
            if over is not None:
                found.end(over)
            else:
                found.use(at)
            if found.pending_events:
                try:
                    self.save(found)
                except IntegrityError:
                    # Another worker touched or ended it meanwhile: what it stored stands,
                    # and the next use loads it afresh.
                    return None if over is not None else found
            if over is None:
                cache.put(stream_id, found)
            return None if over is not None else found

    @cached_property
    def _sessions(self) -> SessionCache:
        """This process's loaded sessions (`domain.credentials.SessionCache`)."""
        return SessionCache()

    def end_session(self, secret: str, reason: SessionEndReason) -> bool:
        """End the session (sign-out, or its user refused by the registry); False if it was
        not live."""
        for _ in range(_COMMAND_ATTEMPTS):
            found = self.session(secret)
            if found is None or found.ended is not None:
                return False
            found.end(reason)
            try:
                self.save(found)
            except IntegrityError:
                continue
            return True
        return False

    # --- the investigator's workbench pages (issue 18, gateway/web/routes/workbench.py) ----------
    # Lists only: which investigations and street orders a page may offer its reader. Ids, codes,
    # instants and counts; never the minor's identity nor case content, so nothing is disclosed
    # (opening an investigation or a case from the list is the audited read). Proven by
    # tests/web/test_workbench_pages.py.

    def investigations_of(self, actor: Actor) -> list[Investigation]:
        """The investigations naming `actor` (an investigator), or opened by `actor` (a county
        lead), oldest first; none for anyone else. A scan of the openings: O(investigations)."""
        if actor.role not in (Role.INVESTIGATOR, Role.COUNTY_LEAD):
            return []
        opened = topics_of(Investigation.InvestigationOpened)  # type: ignore[attr-defined]
        found: list[Investigation] = []
        for notification in self.notifications(topics=opened):
            try:
                investigation = self._get_investigation(UUID(str(notification.originator_id)))
            except errors.InvestigationNotFound:
                continue
            if (actor.role is Role.INVESTIGATOR and investigation.names(actor.user)) or (
                actor.role is Role.COUNTY_LEAD and investigation.opened_by.get("user") == actor.user
            ):
                found.append(investigation)
        return found

    def investigation_orders_of(self, investigator: str) -> list[InvestigationOrder]:
        """The street's investigation orders naming `investigator` (in force or not), oldest
        first. A scan of the orders issued: O(orders)."""
        issued = topics_of(InvestigationOrder.InvestigationOrderIssued)  # type: ignore[attr-defined]
        found: list[InvestigationOrder] = []
        for notification in self.notifications(topics=issued):
            event = self.mapper.to_domain_event(notification)
            if getattr(event, "investigator", None) != investigator:
                continue
            order = self._get_order(event.case_id, investigator)  # type: ignore[attr-defined]
            if order is not None:
                found.append(order)
        return found

    # --- retention: holds, status and runs (issue 19; README "Retention") -------------------
    # The rule is `domain.retention.RetentionRules` (years from the application's environment:
    # RETENTION_YEARS_AFTER_CLOSURE, RETENTION_YEARS_AFTER_MAJORITY, set by gateway.settings);
    # the holds are `domain.retention_holds`. A status names ids, streets, dates, states and
    # hold reasons: nothing of a file's content. Proven by tests/retention/.

    @cached_property
    def retention_rules(self) -> RetentionRules:
        defaults = RetentionRules()
        return RetentionRules(
            years_after_closure=int(
                self.env.get("RETENTION_YEARS_AFTER_CLOSURE") or defaults.years_after_closure
            ),
            years_after_majority=int(
                self.env.get("RETENTION_YEARS_AFTER_MAJORITY") or defaults.years_after_majority
            ),
        )

    @cached_property
    def _hold_index(self) -> HoldIndex:
        return HoldIndex(
            load=self._stream_state,
            minor_of=self._minor_of_stream,
            notifications=lambda start, topics: self.notifications(start=start, topics=topics),
        )

    def _stream_state(self, stream_id: UUID) -> object | None:
        """An aggregate as it stands, or None (no such stream, or erased)."""
        try:
            found: object = self.repository.get(stream_id, projector_func=replay)
        except (AggregateNotFoundError, DataErased):
            return None
        return found

    def _minor_of_stream(self, stream_id: UUID) -> str | None:
        """The ID number a case file or roster entry holds now; None for any other stream,
        or one erased."""
        found = self._stream_state(stream_id)
        if isinstance(found, Case | roster.RosterEntry):
            return str(found.minor["id_number"])
        return None

    def holds_of_minor(self, id_number: str, now: datetime | None = None) -> list[dict[str, Any]]:
        """Every hold on the minor with this ID number (`domain.retention_holds.Hold.as_json`)."""
        holds = self._hold_index.holds_of_minor(id_number, now or datetime.now(UTC))
        return [h.as_json() for h in holds]

    def erased_error(self, stream_id: UUID) -> DataErased:
        """The answer to a read or command of an erased record: when, and under which rule."""
        fact = self.erasure_of(stream_id)
        if fact is None:
            found = DataErased(
                f"record {stream_id} was erased (its data key was destroyed); its content can "
                "no longer be read by anyone",
                stream_id=stream_id,
            )
        else:
            found = DataErased(
                f"record {stream_id} was erased on {fact.timestamp.isoformat()} under the rule "
                f"'{fact.rule}' ({fact.basis}); its content can no longer be read by anyone",
                stream_id=stream_id,
            )
        return found

    def erasures(self) -> dict[UUID, DataKeyDestroyed]:
        """Every erasure fact, by the stream it erased (a scan of their topic)."""
        found: dict[UUID, DataKeyDestroyed] = {}
        for notification in self.notifications(topics=(get_topic(DataKeyDestroyed),)):
            fact = self.mapper.to_domain_event(notification)
            if isinstance(fact, DataKeyDestroyed):
                found[UUID(str(fact.stream_id))] = fact
        return found

    def _streams_created_by(self, created: type) -> list[UUID]:
        return list(
            dict.fromkeys(
                UUID(str(n.originator_id)) for n in self.notifications(topics=topics_of(created))
            )
        )

    def retention_status(self, today: date, *, street: str | None = None) -> list[dict[str, Any]]:
        """Every closed case file and every roster entry, with its state on `today`:

        - a closed file: `closed_on` (the street office's day), `due_on` (`RetentionRules`),
          `state` `kept` (not due yet), `due`, `held` (due, but held: `holds`), `erased`;
        - a roster entry (`kind` `minor`): due when the minor has been of age for
          `years_after_majority` years and none of the minor's files is open, kept or held.

        `held` lists the reasons of the holds on the minor whatever the state. Open files are
        not listed. `street`: only that street's (erased records name no street: left out)."""
        rules = self.retention_rules
        now = datetime.now(UTC)
        erased = self.erasures()
        holds: dict[str, list[dict[str, Any]]] = {}
        files: dict[str, list[str]] = {}  # the states of each minor's files, open ones too
        rows: list[dict[str, Any]] = []

        def held(id_number: str) -> list[dict[str, Any]]:
            if id_number not in holds:
                holds[id_number] = self.holds_of_minor(id_number, now)
            return holds[id_number]

        def row(stream_id: UUID, kind: str, **values: Any) -> dict[str, Any]:
            found: dict[str, Any] = {"stream_id": str(stream_id), "kind": kind, "street": None}
            found.update(closed_on=None, due_on=None, state="erased", held=[], holds=[])
            found.update(values)
            return found

        def erased_row(stream_id: UUID, kind: str) -> dict[str, Any]:
            fact = erased.get(stream_id)
            return row(
                stream_id,
                kind,
                due_on=fact.due_on if fact else None,
                erased_at=fact.timestamp.isoformat() if fact else None,
                rule=fact.rule if fact else None,
            )

        def state(due_on: date, holding: list[dict[str, Any]]) -> str:
            if due_on > today:
                return "kept"
            return "held" if holding else "due"

        for case_id in self._streams_created_by(Case.ClueReported):  # type: ignore[attr-defined]
            if case_id in erased:
                rows.append(erased_row(case_id, "case"))
                continue
            case = self._stream_state(case_id)
            if case is None and self.erasure_of(case_id) is None:
                continue
            if not isinstance(case, Case):
                rows.append(erased_row(case_id, "case"))
                continue
            id_number = str(case.minor["id_number"])
            if not case.is_closed or case.closure is None:
                files.setdefault(id_number, []).append("open")
                continue
            closed_on = local_date(datetime.fromisoformat(case.closure["at"]))
            due_on = rules.due_on(
                closed_on=closed_on, date_of_birth=date.fromisoformat(case.minor["date_of_birth"])
            )
            holding = held(id_number)
            rows.append(
                row(
                    case_id,
                    "case",
                    street=case.street,
                    closed_on=closed_on.isoformat(),
                    due_on=due_on.isoformat(),
                    state=state(due_on, holding),
                    held=sorted({str(h["reason"]) for h in holding}),
                    holds=holding,
                )
            )
            files.setdefault(id_number, []).append(rows[-1]["state"])
        for entry_id in self._streams_created_by(roster.RosterEntry.Listed):  # type: ignore[attr-defined]
            entry = self._stream_state(entry_id)
            if not isinstance(entry, roster.RosterEntry):
                if entry_id in erased:
                    rows.append(erased_row(entry_id, "minor"))
                continue
            id_number = str(entry.minor["id_number"])
            due_on = minor_due_on(rules, date.fromisoformat(entry.minor["date_of_birth"]))
            holding = held(id_number)
            found = state(due_on, holding)
            if found == "due" and any(s not in ("due", "erased") for s in files.get(id_number, [])):
                found = "kept"  # a file of the minor is open or kept: the roster entry too
            rows.append(
                row(
                    entry_id,
                    "minor",
                    street=entry.street,
                    due_on=due_on.isoformat(),
                    state=found,
                    held=sorted({str(h["reason"]) for h in holding}),
                    holds=holding,
                )
            )
        if street is not None:
            rows = [r for r in rows if r["street"] == street]
        return rows

    def apply_retention(
        self, today: date, by: dict[str, str], *, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        """Erase what is due on `today` and not held (`retention_status`), case files first,
        then roster entries, each through `erase` (rule `retention`, the rule's basis, its due
        day, `by`); first, complete every erasure whose fact is stored but whose key still lives
        (a run stopped between the two). Each row of the answer: `stream_id`, `kind`,
        `due_on` and `outcome`: `completed` (a stored erasure finished), `erased`, `held` (a
        hold placed since the status was read), `unavailable` (no data key of its own: written
        before data keys), or with `dry_run` `would_complete` / `would_erase` (nothing done).
        Running it twice erases nothing twice."""
        outcomes: list[dict[str, Any]] = []
        keyring = self.mapper.cipher if isinstance(self.mapper.cipher, DataKeyring) else None
        for stream_id, fact in self.erasures().items():
            if keyring is not None and keyring.has_key(stream_id):
                if not dry_run:
                    self.erase(
                        stream_id,
                        scope=KeyScope(fact.scope),
                        rule=fact.rule,
                        basis=fact.basis,
                        due_on=None,
                        by=by,
                    )
                outcomes.append(
                    {
                        "stream_id": str(stream_id),
                        "kind": fact.scope,
                        "due_on": fact.due_on,
                        "outcome": "would_complete" if dry_run else "completed",
                    }
                )
        rules = self.retention_rules
        rows = self.retention_status(today)
        for kind, scope in (("case", KeyScope.CASE), ("minor", KeyScope.MINOR)):
            for row in rows:
                if row["kind"] != kind or row["state"] != "due":
                    continue
                outcome = "would_erase"
                if not dry_run:
                    try:
                        self.erase(
                            UUID(row["stream_id"]),
                            scope=scope,
                            rule=RETENTION_RULE,
                            basis=rules.basis(),
                            due_on=date.fromisoformat(row["due_on"]),
                            by=by,
                        )
                        outcome = "erased"
                    except ErasureHeld:
                        outcome = "held"
                    except ErasureUnavailable:
                        outcome = "unavailable"
                outcomes.append(
                    {
                        "stream_id": row["stream_id"],
                        "kind": kind,
                        "due_on": row["due_on"],
                        "outcome": outcome,
                    }
                )
        return outcomes

    # Explicit holds (`domain.retention_holds.LegalHold`): a compliance auditor, or the
    # coordinator of the file's street (domain.permissions); from the command line, the
    # server's operator (`by`, as `casetrail user ...` records it).

    @records_refusals("place_retention_hold", case="command.case_id")
    def place_hold(self, command: PlaceHold, actor: Actor) -> LegalHold:
        case = self._get_case(command.case_id)
        require_permission(actor, "place_retention_hold", scope=CaseScope.of(case))
        return self._hold_placed(command, actor.as_record())

    def place_hold_by_operator(self, command: PlaceHold, by: dict[str, str]) -> LegalHold:
        self._get_case(command.case_id)  # a file that exists and is not erased
        return self._hold_placed(command, by)

    def _hold_placed(self, command: PlaceHold, by: dict[str, str]) -> LegalHold:
        hold = LegalHold(case_id=str(command.case_id), reason=command.reason, by=by)
        self.save(hold)
        return hold

    @records_refusals("release_retention_hold")
    def release_hold(self, hold_id: UUID, command: ReleaseHold, actor: Actor) -> LegalHold:
        hold = self.legal_hold(hold_id)
        case = self._get_case(UUID(hold.case_id))
        require_permission(actor, "release_retention_hold", scope=CaseScope.of(case))
        return self._hold_released(hold, command, actor.as_record())

    def release_hold_by_operator(
        self, hold_id: UUID, command: ReleaseHold, by: dict[str, str]
    ) -> LegalHold:
        return self._hold_released(self.legal_hold(hold_id), command, by)

    def _hold_released(
        self, hold: LegalHold, command: ReleaseHold, by: dict[str, str]
    ) -> LegalHold:
        hold.release(reason=command.reason, by=by)
        self.save(hold)
        return hold

    def legal_hold(self, hold_id: UUID) -> LegalHold:
        found = self._stream_state(hold_id)
        if not isinstance(found, LegalHold):
            raise HoldNotFound(
                "no hold with this id; list the holds with `casetrail retention status`",
                field="hold_id",
            )
        return found


class CampaignNotFound(errors.DomainError):
    status = 404
    code = "campaign_not_found"


@dataclass
class RosterImport:
    """What an import did: minors listed, updated, unchanged, and rows in conflict with the
    roster (row number, field, reason); `stored` False when nothing was written."""

    listed: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: list[tuple[int, str, str]] = field(default_factory=list)
    stored: bool = False


@dataclass(frozen=True)
class VisitOutcome:
    """A visit stored: the case file opened or linked (its id only when visible to the
    visitor)."""

    entry_id: UUID
    case_id: UUID | None
    opened: bool
    linked: bool
    household: tuple[UUID, ...] = ()


def access_log_entry(record: AccessRecord) -> dict[str, Any]:
    """One entry of a case's access log, as `GET /v1/cases/{id}/accesses` answers it;
    `position` is the record's place in the store (a page's `after`)."""
    return {
        "position": record.position,
        "at": record.at.isoformat(),
        "granted": record.granted,
        "actor": {
            "user": record.user,
            "role": record.role,
            "unit": record.unit,
            "street": record.street,
        },
        "purpose": record.purpose,
        "rule": record.rule,
        "fields": list(record.fields),
        "break_glass": record.break_glass,
        "request_id": record.request_id,
        "case_version": record.case_version,
        "channel": record.channel,
        "client": {"address": record.client_address, "user_agent": record.client_user_agent},
    }
