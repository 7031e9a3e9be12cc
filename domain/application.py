"""The event-sourced application: the services that orchestrate the domain.

Storage and cipher arrive through the environment given to `CaseTrail(env=...)` (see
`gateway.eventstore.store_environment`); nothing here imports them. Every change is a new event;
no code path updates or deletes one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Notification
from eventsourcing.utils import get_topic

from domain import commands as cmd
from domain import errors
from domain.access import (
    AccessDenied,
    Actor,
    CaseAccessed,
    CaseScope,
    Decision,
    access_event,
    decide,
    disclose,
)
from domain.case import Case
from domain.permissions import require_permission
from domain.taxonomy import Purpose

T = TypeVar("T")

# Optimistic concurrency: a command that lost a race on the same case is retried on fresh state.
_COMMAND_ATTEMPTS: Final = 5

ACCESS_TOPICS: Final = (get_topic(CaseAccessed), get_topic(AccessDenied))


class AccessRefused(Exception):
    """A read was refused; its `AccessDenied` event is already stored."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


class CaseTrail(Application[UUID]):
    """Reports, changes and audited reads of case files."""

    name = "casetrail"

    # --- commands ---------------------------------------------------------------------------

    def report_clue(self, command: cmd.ReportClue, actor: Actor) -> UUID:
        require_permission(actor, "report_clue", scope=None)
        case = Case.report(command, street=actor.street, by=actor.as_record())
        self.save(case)
        return case.id

    def change_case(
        self, case_id: UUID, actor: Actor, action: str, change: Callable[[Case], T]
    ) -> T:
        """Apply one command to a case, after the permission check for `action`."""
        for attempt in range(_COMMAND_ATTEMPTS):
            case = self._get_case(case_id)
            require_permission(actor, action, scope=CaseScope.of(case))
            result = change(case)
            try:
                self.save(case)
            except IntegrityError:
                if attempt == _COMMAND_ATTEMPTS - 1:
                    raise
                continue
            return result
        raise AssertionError("unreachable")

    def _get_case(self, case_id: UUID) -> Case:
        try:
            case: object = self.repository.get(case_id)
        except AggregateNotFoundError:
            raise errors.CaseNotFound(f"no case {case_id} is visible to you") from None
        if not isinstance(case, Case):
            raise errors.CaseNotFound(f"no case {case_id} is visible to you")
        return case

    # --- audited reads ------------------------------------------------------------------------

    def read_case(
        self, case_id: UUID, actor: Actor, purpose: Purpose, request_id: str
    ) -> dict[str, Any]:
        """Decide, store the access event durably, and only then build the answer.

        If storing the access event fails the exception propagates and nothing is disclosed.
        A refusal is stored as `AccessDenied` and raised as `AccessRefused`.
        """
        case: Case | None
        try:
            case = self._get_case(case_id)
        except errors.CaseNotFound:
            case = None
        scope = CaseScope.of(case) if case is not None else None
        decision = decide(actor, scope, purpose)
        self.save(
            access_event(
                decision, case_id=case_id, actor=actor, purpose=purpose, request_id=request_id
            )
        )
        if not decision.granted or case is None:
            raise AccessRefused(decision.rule)
        return disclose(case, decision.fields)

    def record_disclosures(
        self,
        disclosures: list[tuple[UUID, frozenset[str]]],
        *,
        actor: Actor,
        purpose: Purpose,
        rule: str,
        request_id: str,
    ) -> None:
        """Store one `CaseAccessed` per case (lists, exports) in one transaction, before the
        caller returns any of it. Raises if the store fails: then nothing may be returned."""
        if not disclosures:
            return
        self.save(
            *(
                access_event(
                    Decision(True, rule, fields),
                    case_id=case_id,
                    actor=actor,
                    purpose=purpose,
                    request_id=request_id,
                )
                for case_id, fields in disclosures
            )
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

    def access_events(self, case_id: UUID) -> list[CaseAccessed | AccessDenied]:
        """All access events about one case, oldest first (a full scan; projections index it)."""
        found: list[CaseAccessed | AccessDenied] = []
        for notification in self.notifications(topics=ACCESS_TOPICS):
            event = self.mapper.to_domain_event(notification)
            if isinstance(event, CaseAccessed | AccessDenied) and event.case_id == case_id:
                found.append(event)
        return found
