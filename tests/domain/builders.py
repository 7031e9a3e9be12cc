"""Synthetic inputs for the pure-domain tests: no real person, no database, no HTTP.

Names come from Faker's zh_CN locale (seeded); ID numbers are built with an area code that no
province uses ("99"), so no generated number can be a real person's.
"""

from __future__ import annotations

import base64
import secrets
from datetime import date, timedelta
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from faker import Faker

from domain import commands as cmd
from domain.access import Actor
from domain.case import Case
from domain.identity import make_id_number
from domain.taxonomy import Role, UnitType
from domain.units import RegisterUnit, UnitKeys

SYNTHETIC_AREA = "990101"
STREET = "chengguan-street"
OTHER_STREET = "xiaoxi-street"
VILLAGE = "dongshan-village"
OTHER_VILLAGE = "xihe-village"
GOVERNANCE_OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
HEALTH_CENTRE = "chengguan-health-centre"

_faker = Faker("zh_CN")
_faker.seed_instance(20260723)

REPORTER = Actor("reporter-1", Role.REPORTER, VILLAGE, STREET)
COORDINATOR = Actor("coordinator-1", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)
POLICE_MEMBER = Actor("police-1", Role.UNIT_MEMBER, POLICE, STREET)
HEALTH_MEMBER = Actor("health-1", Role.UNIT_MEMBER, HEALTH_CENTRE, STREET)


def years_before(day: date, years: int) -> date:
    """The same calendar day `years` earlier; 29 February becomes 28 February."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def id_number_for(born: date, *, male: bool) -> str:
    """A well-formed ID number; the sequence's last digit is odd for a man, even for a woman."""
    return make_id_number(SYNTHETIC_AREA, born, 101 if male else 102)


def report_body(
    *,
    born: date | None = None,
    male: bool = True,
    issues: list[dict[str, str]] | None = None,
    risk: str = "low",
    found_on: date | None = None,
    works_away: bool = False,
) -> dict[str, Any]:
    """A valid ReportClue body (JSON shape) for a synthetic ten-year-old, unless told otherwise."""
    today = date.today()
    born = born or years_before(today, 10)
    surname: str = _faker.last_name()
    return {
        "minor": {
            "name": surname + _faker.first_name(),
            "gender": "male" if male else "female",
            "date_of_birth": born.isoformat(),
            "id_number": id_number_for(born, male=male),
            "school": "城关镇中心小学",
            "grade_class": "4年级(2)班",
            "village": VILLAGE,
        },
        "guardians": [
            {
                "name": surname + _faker.first_name(),
                "relation": "grandparent",
                "phone": "13900000000",
                "works_away": works_away,
            }
        ],
        "issues": issues or [{"category": "mental_health", "subtype": "anxiety"}],
        "description": "走访时发现该生近期情绪低落,上课注意力不集中。",
        "found_by": {"role": "child_director", "unit": VILLAGE},
        "method": "home_visit",
        "found_on": (found_on or today - timedelta(days=3)).isoformat(),
        "risk": risk,
    }


def report_clue(**kwargs: Any) -> cmd.ReportClue:
    return cmd.ReportClue.model_validate(report_body(**kwargs))


def new_case(**kwargs: Any) -> Case:
    """A case reported by REPORTER in STREET; its ClueReported event is still pending."""
    return Case.report(report_clue(**kwargs), street=STREET, by=REPORTER.as_record())


# --- member units: only a registered unit can be assigned (domain.application.assignable) ------


class _Registry(Protocol):
    def register_unit(self, command: RegisterUnit, keys: UnitKeys, by: dict[str, str]) -> Any: ...


def _kind_of(unit_id: str) -> str:
    """The unit type its code ends with (`chengguan-police-station` -> police_station)."""
    for kind in sorted(UnitType, key=lambda k: -len(k.value)):
        if unit_id.replace("-", "_").endswith(kind.value):
            return kind.value
    return UnitType.VILLAGE.value


def register_units(application: _Registry, *unit_ids: str, street: str = STREET) -> None:
    """Register member units of `street` with synthetic public keys, as `casetrail unit add`
    stores them (no credentials file, no broker): the one helper every test that assigns a
    unit uses, since an unregistered unit is refused (422 `unit-not-registered`)."""
    for unit_id in unit_ids:
        public = (
            X25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        keys = UnitKeys(
            sealing_key=base64.b64encode(public).decode("ascii"),
            nats_user="u" + secrets.token_hex(8),
            street_token="s" + secrets.token_hex(8),
            tls_fingerprint=secrets.token_hex(32),
        )
        command = RegisterUnit(
            unit_id=unit_id, name="测试单位", type=_kind_of(unit_id), street=street
        )
        application.register_unit(command, keys, {"user": "test-admin", "role": "admin"})
