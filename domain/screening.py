"""Screening campaigns (走访排查) and their visits.

A campaign (`Campaign`) covers villages of one street over a period; its visits are events of
the roster entries visited (`domain.roster.RosterEntry`, `Visited`), so that the first question
of a reverse investigation, "was this child's household visited, by whom, when?", is one stream.
A visit whose result is a clue opens a case file through the ordinary `report_clue` path, or,
when the minor already has an open file (found by the blind index of the ID number), links to
it instead of opening a second (`CaseTrail.record_visit`).

Proven by `tests/integration/test_screening.py` and `tests/projections/test_coverage.py`.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final, Self
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from pydantic import Field, StringConstraints, field_validator, model_validator

from domain import commands as cmd
from domain import errors
from domain.taxonomy import DiscoveryMethod, FinderRole, LetterReason, RiskLevel

Record = dict[str, Any]


class VisitMethod(StrEnum):
    HOME_VISIT = "home_visit"
    PHONE = "phone"
    SCHOOL = "school"
    GRID_PATROL = "grid_patrol"


VISIT_METHOD_LABELS: Final = MappingProxyType(
    {
        VisitMethod.HOME_VISIT: "入户",
        VisitMethod.PHONE: "电话",
        VisitMethod.SCHOOL: "学校",
        VisitMethod.GRID_PATROL: "网格",
    }
)
# How a clue found on a visit was found, for its case file.
DISCOVERY_OF_VISIT: Final = MappingProxyType(
    {
        VisitMethod.HOME_VISIT: DiscoveryMethod.HOME_VISIT,
        VisitMethod.PHONE: DiscoveryMethod.HOME_VISIT,
        VisitMethod.SCHOOL: DiscoveryMethod.SCHOOL,
        VisitMethod.GRID_PATROL: DiscoveryMethod.GRID_PATROL,
    }
)


class VisitResult(StrEnum):
    NO_ISSUE = "no_issue"
    CLUE = "clue"


VISIT_RESULT_LABELS: Final = MappingProxyType(
    {VisitResult.NO_ISSUE: "未发现问题", VisitResult.CLUE: "发现线索"}
)

MAX_CAMPAIGN_DAYS: Final = 366


class VisitOutsideCampaign(errors.DomainError):
    status = 422
    code = "visit_outside_campaign"


class ClueNotReportable(errors.DomainError):
    status = 422
    code = "clue_not_reportable"


class OpenCampaign(cmd.Command):
    """A screening campaign: a name, the villages it covers (all of the street's roster when
    empty), and its period."""

    name: cmd.ShortText
    villages: Annotated[list[cmd.Code], Field(default_factory=list, max_length=200)]
    starts_on: cmd.Day
    ends_on: cmd.Day

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on; give the campaign's last day")
        if (self.ends_on - self.starts_on).days > MAX_CAMPAIGN_DAYS:
            raise ValueError(f"a campaign lasts at most {MAX_CAMPAIGN_DAYS} days")
        return self


class VisitClue(cmd.Command):
    """What a visit found: the clue's issues, description and risk (the minor's identity comes
    from the roster entry), the guardians if known, and who found it."""

    issues: cmd.Issues
    description: cmd.Description
    risk: RiskLevel
    found_by: FinderRole
    guardians: Annotated[list[cmd.Guardian], Field(default_factory=list, max_length=6)]

    _distinct = field_validator("issues")(cmd._issues_are_distinct)


class RecordVisit(cmd.Command):
    """A visit (走访) of one minor on the roster, named by the roster entry's id or by the
    minor's ID number, and of the other minors of the household seen with them."""

    entry_id: UUID | None = None
    id_number: Annotated[str, Field(max_length=32)] | None = None
    visited_on: cmd.PastDay
    method: VisitMethod
    result: VisitResult
    notes: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=cmd.MAX_NOTE), cmd._NFC, cmd._CLEAN
    ] = ""
    clue: VisitClue | None = None
    # The household's other minors seen on the same visit (roster entry ids): each is recorded
    # as visited, with nothing found (a clue about one of them is a visit of its own).
    household: Annotated[list[UUID], Field(default_factory=list, max_length=10)]

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if (self.entry_id is None) == (self.id_number is None):
            raise ValueError("name the minor visited by entry_id or by id_number (one of them)")
        if (self.result is VisitResult.CLUE) != (self.clue is not None):
            raise ValueError("a visit with result 'clue' carries a clue; 'no_issue' carries none")
        return self


class SignRosterLetter(cmd.Command):
    """A guardianship responsibility letter (监护责任书) signed for a minor on the roster."""

    reason: LetterReason
    signed_on: cmd.PastDay


class Campaign(Aggregate):
    """A screening campaign of one street."""

    @event("Opened")
    def __init__(
        self,
        *,
        street: str,
        name: str,
        villages: list[str],
        starts_on: str,
        ends_on: str,
        by: Record,
    ) -> None:
        self.street = street
        self.name = name
        self.villages = villages
        self.starts_on = starts_on
        self.ends_on = ends_on

    def covers(self, village: str) -> bool:
        return not self.villages or village in self.villages

    def in_period(self, day: date) -> bool:
        return date.fromisoformat(self.starts_on) <= day <= date.fromisoformat(self.ends_on)
