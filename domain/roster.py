"""The roster of minors (底数): one aggregate per minor on a street's roster, its events encrypted
like every other, and the need-to-know rule of who may see it.

The plan's first step is to know every minor of each village (全面摸清底数) and the key students
among them (重点学生: 留守, 单亲, 困境; and the children the plan names beside them: 残疾,
事实无人抚养, 孤儿), so that a screening campaign (`domain.screening`) can show who was visited
and who was not, and so that a guardianship responsibility letter (监护责任书) is signed for every
left-behind or unsupervised minor, not only for those with a case file.

- A roster entry's stream id is derived from the street and the minor's blind index (the keyed
  HMAC of the ID number, `projections.blind_index`, computed by the gateway: the domain never
  sees the index key): the same minor listed twice in a street is the same stream, so a
  re-import stores nothing new (`RosterEntry.listed_again` answers whether anything changed).
- `RosterMinor` is the case file's `Minor` (ID checksum, date of birth agreeing with the ID
  number, gender with its 17th digit, a minor's age, names without invisible characters), plus
  the grid, the guardian and the key-student markers.
- Who may see a village's roster (names): the street's coordinator, and the village's own
  reporters (the village committee's unit code is the village's); supervisors see counts; unit
  members, investigators, auditors and admins never see the roster (`roster_rule`).

Proven by `tests/domain/test_roster.py`; over HTTP by `tests/integration/test_screening*.py`.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import Field, field_validator

from domain import commands as cmd
from domain import errors
from domain.access import Actor
from domain.taxonomy import LetterReason, Role

Record = dict[str, Any]

# Stream ids of roster entries: uuid5 of the street and the minor's blind index under this.
_ROSTER_NAMESPACE: Final = UUID("6f3d1a0e-2b7c-5e4f-9a61-0c2d8e5b7a14")


class KeyMarker(StrEnum):
    """Key-student markers (重点学生) a roster may carry for a minor."""

    LEFT_BEHIND = "left_behind"
    SINGLE_PARENT = "single_parent"
    IN_DIFFICULTY = "in_difficulty"
    DISABLED = "disabled"
    DE_FACTO_UNSUPPORTED = "de_facto_unsupported"
    ORPHAN = "orphan"


KEY_MARKER_LABELS: Final = MappingProxyType(
    {
        KeyMarker.LEFT_BEHIND: "留守",
        KeyMarker.SINGLE_PARENT: "单亲",
        KeyMarker.IN_DIFFICULTY: "困境",
        KeyMarker.DISABLED: "残疾",
        KeyMarker.DE_FACTO_UNSUPPORTED: "事实无人抚养",
        KeyMarker.ORPHAN: "孤儿",
    }
)
# What a roster file may write in its 重点类型 column for each marker (the labels, and the
# taxonomy's longer forms: 留守儿童, 残疾儿童, 事实无人抚养儿童; 困境儿童).
MARKER_SPELLINGS: Final = MappingProxyType(
    {
        **{label: marker for marker, label in KEY_MARKER_LABELS.items()},
        "留守儿童": KeyMarker.LEFT_BEHIND,
        "困境儿童": KeyMarker.IN_DIFFICULTY,
        "残疾儿童": KeyMarker.DISABLED,
        "事实无人抚养儿童": KeyMarker.DE_FACTO_UNSUPPORTED,
        **{str(marker): marker for marker in KeyMarker},
    }
)
# 全面签订监护责任书: "for minors whose parents work away, and for unsupervised minors" (plan, item
# 9). Left-behind children are the first; de facto unsupported children and orphans the second.
LETTER_MARKERS: Final = MappingProxyType(
    {
        KeyMarker.LEFT_BEHIND: LetterReason.PARENTS_WORKING_AWAY,
        KeyMarker.DE_FACTO_UNSUPPORTED: LetterReason.UNSUPERVISED,
        KeyMarker.ORPHAN: LetterReason.UNSUPERVISED,
    }
)


def needs_letter(markers: list[str] | tuple[str, ...]) -> bool:
    return any(m in LETTER_MARKERS for m in markers)


def is_key_student(markers: list[str] | tuple[str, ...]) -> bool:
    return bool(markers)


class RosterMinor(cmd.Minor):
    """One row of a roster: the case file's `Minor`, and the grid (网格), the guardian and the
    key-student markers."""

    grid: cmd.OptionalShortText = ""
    guardian: cmd.OptionalShortText = ""
    markers: Annotated[list[KeyMarker], Field(default_factory=list, max_length=len(KeyMarker))]

    @field_validator("markers")
    @classmethod
    def _markers_distinct(cls, value: list[KeyMarker]) -> list[KeyMarker]:
        return sorted(set(value), key=list(KeyMarker).index)


def roster_entry_id(street: str, id_index: str) -> UUID:
    """The stream of a minor on a street's roster, from the blind index of the ID number."""
    return uuid5(_ROSTER_NAMESPACE, f"roster-entry\x00{street}\x00{id_index}")


# --- who may see or change a village's roster ----------------------------------------------------


class RosterNotPermitted(errors.NotPermitted):
    """A permission refusal like any other (`errors.NotPermitted`), about a village's roster."""

    code = "roster_not_permitted"


class RosterEntryNotFound(errors.DomainError):
    status = 404
    code = "roster_entry_not_found"


class RosterConflict(errors.DomainError):
    status = 409
    code = "roster_conflict"


# The rules of a roster read, as recorded with its access events.
ROSTER_COORDINATOR_RULE: Final = "roster_street_coordinator"
ROSTER_VILLAGE_RULE: Final = "roster_village_reporter"


def roster_rule(actor: Actor, street: str, village: str) -> str | None:
    """The rule under which `actor` may see the names on `village`'s roster in `street` (and
    list minors on it, record visits, import), or None: the street's coordinator for every
    village; a reporter of the village's own unit (its committee: unit code = village code)."""
    if actor.street != street:
        return None
    if actor.role is Role.COORDINATOR:
        return ROSTER_COORDINATOR_RULE
    if actor.role is Role.REPORTER and actor.unit == village:
        return ROSTER_VILLAGE_RULE
    return None


def may_see_counts(actor: Actor, street: str, village: str | None = None) -> bool:
    """Coverage figures (counts, no names): the roster's readers, and the street's supervisor."""
    if actor.street != street:
        return False
    if actor.role in (Role.COORDINATOR, Role.SUPERVISOR):
        return True
    return actor.role is Role.REPORTER and village is not None and actor.unit == village


def require_roster(actor: Actor, street: str, village: str, doing: str) -> str:
    rule = roster_rule(actor, street, village)
    if rule is None:
        raise RosterNotPermitted(
            f"only the street's coordinator, or a reporter of the village's own unit, may "
            f"{doing} the village's roster",
            field="village",
        )
    return rule


# --- the aggregate -------------------------------------------------------------------------------


class RosterEntry(Aggregate):
    """One minor on one street's roster: listed, its details updated by later imports, the
    guardianship letters signed for it, and the visits of screening campaigns."""

    @classmethod
    def create_id(cls, street: str, id_index: str, **_: Any) -> UUID:
        return roster_entry_id(street, id_index)

    @event("Listed")
    def __init__(
        self, *, street: str, id_index: str, minor: Record, source: Record, by: Record
    ) -> None:
        self.street = street
        self.id_index = id_index
        self.minor = minor
        self.letters: list[Record] = []
        self.visits: list[Record] = []
        # Case files opened from visits of this entry (the link rule reads them first).
        self.case_ids: list[str] = []

    @property
    def village(self) -> str:
        return str(self.minor["village"])

    @property
    def markers(self) -> list[str]:
        return list(self.minor.get("markers", []))

    def listed_again(self, minor: Record, source: Record, by: Record) -> bool:
        """A later import names this minor: store the details if they changed (动态更新);
        answers whether anything was stored."""
        if minor == self.minor:
            return False
        if minor["village"] != self.minor["village"]:
            raise RosterConflict(
                "this minor is on the roster of another village of the street; correct the "
                "village, or have that village remove the row first",
                field="village",
            )
        self._details_updated(minor=minor, source=source, by=by)
        return True

    @event("DetailsUpdated")
    def _details_updated(self, minor: Record, source: Record, by: Record) -> None:
        self.minor = minor

    def sign_letter(self, reason: LetterReason, signed_on: date, by: Record) -> None:
        applicable = {LETTER_MARKERS[KeyMarker(m)] for m in self.markers if m in LETTER_MARKERS}
        if reason not in applicable:
            raise errors.GuardianshipLetterNotApplicable(
                "a guardianship letter for this reason applies to minors listed as left-behind "
                "(parents working away) or unsupervised (事实无人抚养, 孤儿); the roster does not "
                "list this minor so: correct the roster first",
                field="reason",
            )
        if signed_on < date.fromisoformat(self.minor["date_of_birth"]):
            raise errors.DateOutOfOrder(
                "signed_on is before the minor's date of birth", field="signed_on"
            )
        self._letter_signed(reason=str(reason), signed_on=signed_on.isoformat(), by=by)

    @event("GuardianshipLetterSigned")
    def _letter_signed(self, reason: str, signed_on: str, by: Record) -> None:
        self.letters.append({"reason": reason, "signed_on": signed_on, "unit": by["unit"]})

    @event("Visited")
    def _visited(
        self,
        campaign_id: str,
        visited_on: str,
        method: str,
        result: str,
        case_id: str | None,
        linked: bool,
        notes: str,
        clue: Record | None,
        by: Record,
    ) -> None:
        # `clue` (issues, description, risk, who found it) is kept with the visit itself: when
        # it linked an existing file instead of opening one, this is where it is recorded.
        self.visits.append(
            {
                "campaign_id": campaign_id,
                "visited_on": visited_on,
                "method": method,
                "result": result,
                "case_id": case_id,
                "linked": linked,
                "unit": by["unit"],
            }
        )
        if case_id is not None and not linked:
            self.case_ids.append(case_id)
