"""Synthetic data for one street: villages, schools, member units, and case files at every stage.

Names come from Faker's zh_CN locale and ID numbers are built to be well-formed; none is a real
person's. Tests and benchmarks use `synthetic_report` too. The demo's people are registered
users (issue 16, `domain.users`) with their posts, registered before they act, so that their
tokens get in and the investigation timeline names their posts.

The people shown (one per role) also get a password, new and random on every run
(`demo_passwords`, from `secrets`, within `domain.credentials.check_password_strength`), so that
they can sign in to the pages at `PAGES_URL`; `casetrail demo` prints them to the terminal and
nowhere else (only their argon2id hashes are stored). Proven by tests/web/test_demo_signin.py.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from faker import Faker

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.credentials import check_password_strength
from domain.identity import make_id_number
from domain.taxonomy import (
    HIGH_RISK_FLOOR,
    SUBTYPES,
    Category,
    ProtectionFunction,
    RiskLevel,
    Role,
)
from domain.users import Post

VILLAGES = ("dongshan-village", "xihe-village", "nanqiao-community", "beiyuan-village")
SCHOOLS = ("城关镇中心小学", "城关镇初级中学", "东山村小学")
GOVERNANCE_OFFICE = "chengguan-governance-office"
MEMBER_UNITS = {
    ProtectionFunction.JUDICIAL: "chengguan-police-station",
    ProtectionFunction.GOVERNMENT: "chengguan-social-affairs-office",
    ProtectionFunction.SCHOOL: "chengguan-school-district-office",
    ProtectionFunction.FAMILY: "chengguan-health-centre",
}
AREA_CODE = "330102"


# The posts of the demo's member units' people.
MEMBER_POSTS = {
    MEMBER_UNITS[ProtectionFunction.JUDICIAL]: Post.POLICE_OFFICER,
    MEMBER_UNITS[ProtectionFunction.GOVERNMENT]: Post.SOCIAL_AFFAIRS_OFFICER,
    MEMBER_UNITS[ProtectionFunction.SCHOOL]: Post.SCHOOL_DISTRICT_OFFICER,
    MEMBER_UNITS[ProtectionFunction.FAMILY]: Post.HEALTH_WORKER,
}
DEMO_BY = {"user": "demo", "role": "operator", "unit": "", "street": ""}
# Where `make run` serves the pages (and `casetrail demo` tells people to sign in).
PAGES_URL = "http://127.0.0.1:8000/"


@dataclass(frozen=True)
class DemoPerson:
    user: str
    role: Role
    unit: str
    post: Post = Post.OTHER


@dataclass
class DemoSummary:
    cases: int
    sample_case: str
    people: list[DemoPerson] = field(default_factory=list)


def synthetic_report(
    faker: Faker, rng: random.Random, *, village: str, today: date | None = None
) -> dict[str, Any]:
    """A valid ReportClue body for a synthetic minor of the given village."""
    today = today or date.today()
    born = today - timedelta(days=rng.randint(6 * 365, 17 * 365))
    is_male = rng.random() < 0.5
    sequence = rng.randrange(0, 1000, 2) + (1 if is_male else 0)
    sequence = min(sequence, 999 if is_male else 998)
    categories = rng.sample(list(Category), k=rng.choice((1, 1, 2)))
    issues = [{"category": str(c), "subtype": rng.choice(list(SUBTYPES[c]))} for c in categories]
    floor_hit = any((Category(i["category"]), i["subtype"]) in HIGH_RISK_FLOOR for i in issues)
    risk = rng.choice((RiskLevel.HIGH, RiskLevel.URGENT) if floor_hit else tuple(RiskLevel))
    surname = faker.last_name()
    return {
        "minor": {
            "name": surname + faker.first_name(),
            "gender": "male" if is_male else "female",
            "date_of_birth": born.isoformat(),
            "id_number": make_id_number(AREA_CODE, born, sequence),
            "school": rng.choice(SCHOOLS),
            "grade_class": f"{rng.randint(1, 9)}年级({rng.randint(1, 6)})班",
            "village": village,
        },
        "guardians": [
            {
                "name": surname + faker.first_name(),
                "relation": rng.choice(("father", "mother", "grandparent")),
                "phone": faker.phone_number().replace("-", "")[:11],
                "works_away": rng.random() < 0.4,
            }
        ],
        "issues": issues,
        "description": faker.sentence(nb_words=12),
        "found_by": {
            "role": rng.choice(("child_director", "grid_worker", "teacher")),
            "unit": village,
        },
        "method": rng.choice(("home_visit", "grid_patrol", "school", "tip_off")),
        "found_on": (today - timedelta(days=rng.randint(0, 120))).isoformat(),
        "risk": str(risk),
    }


def fill_demo(application: CaseTrail, *, cases: int, seed: int, street: str) -> DemoSummary:
    faker = Faker("zh_CN")
    faker.seed_instance(seed)
    rng = random.Random(seed)
    coordinator = Actor("demo-coordinator", Role.COORDINATOR, GOVERNANCE_OFFICE, street)
    people = [
        DemoPerson(
            "demo-reporter-dongshan-village", Role.REPORTER, VILLAGES[0], Post.CHILD_DIRECTOR
        ),
        *(
            DemoPerson(f"demo-reporter-{v}", Role.REPORTER, v, Post.GRID_WORKER)
            for v in VILLAGES[1:]
        ),
        DemoPerson(
            "demo-coordinator", Role.COORDINATOR, GOVERNANCE_OFFICE, Post.GOVERNANCE_OFFICER
        ),
        DemoPerson("demo-supervisor", Role.SUPERVISOR, GOVERNANCE_OFFICE, Post.STREET_LEADER),
        DemoPerson(
            "demo-police",
            Role.UNIT_MEMBER,
            MEMBER_UNITS[ProtectionFunction.JUDICIAL],
            Post.POLICE_OFFICER,
        ),
        *(
            DemoPerson(f"demo-member-{unit}", Role.UNIT_MEMBER, unit, post)
            for unit, post in MEMBER_POSTS.items()
        ),
        DemoPerson(
            "demo-investigator", Role.INVESTIGATOR, "county-investigation-team", Post.INVESTIGATOR
        ),
        DemoPerson(
            "demo-auditor",
            Role.COMPLIANCE_AUDITOR,
            "county-compliance-office",
            Post.COMPLIANCE_REVIEWER,
        ),
        DemoPerson("demo-admin", Role.ADMIN, "county-admin", Post.SYSTEM_ADMINISTRATOR),
    ]
    # Their names from a Faker of their own: the cases stay those of the same seed as before.
    names = Faker("zh_CN")
    names.seed_instance(seed)
    for person in people:  # registered before they act: a second demo run finds them
        application.ensure_user(
            Actor(person.user, person.role, person.unit, street),
            display_name=names.name(),
            post=person.post,
            by=DEMO_BY,
            reason="演示数据",
        )
    first = ""
    for n in range(cases):
        village = VILLAGES[n % len(VILLAGES)]
        reporter = Actor(f"demo-reporter-{village}", Role.REPORTER, village, street)
        body = synthetic_report(faker, rng, village=village)
        case_id = application.report_clue(cmd.ReportClue.model_validate(body), reporter)
        first = first or str(case_id)
        _advance(application, case_id, coordinator, street, stage=n % 5, rng=rng)
    # The tokens printed: one person per role (the other members act in the cases only).
    shown = [p for p in people if p.user in _SHOWN]
    return DemoSummary(cases=cases, sample_case=first, people=shown)


_SHOWN = frozenset(
    {
        "demo-reporter-dongshan-village",
        "demo-coordinator",
        "demo-supervisor",
        "demo-police",
        "demo-investigator",
        "demo-auditor",
        "demo-admin",
    }
)


def new_demo_password() -> str:
    """A random password within the password rules: 16 bytes of `secrets` in URL-safe base64
    (22 characters, nothing a terminal or a shell would mangle), with a fixed prefix that says
    what it is."""
    password = "demo-" + secrets.token_urlsafe(16)
    check_password_strength(password)  # the rules may tighten: fail here, not at sign-in
    return password


def demo_passwords(application: CaseTrail, people: list[DemoPerson]) -> dict[str, str]:
    """A new password for each of `people` (user id -> password), their hashes stored: a
    second run replaces the first run's passwords, which are not kept anywhere."""
    found: dict[str, str] = {}
    for person in people:
        password = new_demo_password()
        application.set_password(person.user, password, DEMO_BY, "演示账户的登录密码")
        found[person.user] = password
    return found


def _advance(
    application: CaseTrail,
    case_id: Any,
    coordinator: Actor,
    street: str,
    *,
    stage: int,
    rng: random.Random,
) -> None:
    """Stage 0: just reported; 1: consulted and assigned; 2: acknowledged and intervened;
    3: followed up; 4: closed."""
    if stage == 0:
        return
    today = date.today()
    by = coordinator.as_record()
    application.change_case(
        case_id,
        coordinator,
        "hold_consultation",
        lambda c: c.hold_consultation(
            cmd.HoldConsultation(
                held_on=date.fromisoformat(c.found_on),
                participants=[GOVERNANCE_OFFICE, *MEMBER_UNITS.values()],
                decision="会商决定:由成员单位分工介入。",
            ),
            by=by,
        ),
    )
    function, unit = rng.choice(list(MEMBER_UNITS.items()))
    assignment = application.change_case(
        case_id,
        coordinator,
        "assign_unit",
        lambda c: c.assign_unit(
            cmd.AssignUnit(
                unit=unit,
                function=function,
                task="入户走访,了解情况并开展帮扶。",
                due_on=today + timedelta(days=14),
            ),
            by=by,
        ),
    )
    if stage < 2:
        return
    member = Actor(f"demo-member-{unit}", Role.UNIT_MEMBER, unit, street)
    application.change_case(
        case_id,
        member,
        "acknowledge_assignment",
        lambda c: c.acknowledge_assignment(assignment, unit=unit, by=member.as_record()),
    )
    application.change_case(
        case_id,
        member,
        "record_intervention",
        lambda c: c.record_intervention(
            cmd.RecordIntervention(
                assignment_id=assignment,
                function=function,
                measure="home_visit",
                notes="已入户走访,家庭配合。",
                done_on=today,
            ),
            by=member.as_record(),
        ),
    )
    if stage < 3:
        return
    application.change_case(
        case_id,
        coordinator,
        "record_follow_up",
        lambda c: c.record_follow_up(
            cmd.RecordFollowUp(visited_on=today, notes="季度回访:情况稳定。"), by=by
        ),
    )
    if stage < 4:
        return
    application.change_case(
        case_id,
        coordinator,
        "close",
        lambda c: c.close(cmd.CloseCase(reason="resolved", note="问题已化解。"), by=by),
    )
