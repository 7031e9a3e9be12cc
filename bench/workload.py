"""Deterministic workloads shared by the scenarios: synthetic case files, their histories, and
who reads them.

Everything is drawn from seeded generators (`random.Random`, Faker `zh_CN` seeded), so two runs
with the same seed store the same case files (ids and timestamps aside) and send the same
requests. Event payloads are the domain's own, built through the aggregate's methods: a
`ClueReported` of about 1.3 KB of JSON (minor, guardians, issues, description), follow-ups and
interventions with notes of 8 to 40 words, consultations naming five units.

Building a command object (pydantic validation) and a Faker report costs more than storing the
event, so a pool of commands is built once and reused across cases: sizes stay realistic, and a
store of a million events builds in about a minute.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final
from uuid import UUID

from faker import Faker

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.case import Case
from domain.commands import MEASURES
from domain.taxonomy import ProtectionFunction, RiskLevel, Role
from gateway.cli.demo import GOVERNANCE_OFFICE, MEMBER_UNITS, VILLAGES, synthetic_report

STREET: Final = "chengguan-street"
DEFAULT_SEED: Final = 20261129
COORDINATOR: Final = Actor("bench-coordinator", Role.COORDINATOR, GOVERNANCE_OFFICE, STREET)


def reporter_of(village: str) -> Actor:
    return Actor(f"bench-reporter-{village}", Role.REPORTER, village, STREET)


def member_of(unit: str) -> Actor:
    return Actor(f"bench-member-{unit}", Role.UNIT_MEMBER, unit, STREET)


@dataclass(frozen=True)
class StoredCase:
    """A case file in a benchmark store: enough to address it and to choose who reads it."""

    id: UUID
    village: str
    events: int


class CommandPool:
    """Validated commands, built once from a seed and drawn from during a run."""

    def __init__(self, seed: int, *, reports: int = 400, notes: int = 300) -> None:
        faker = Faker("zh_CN")
        faker.seed_instance(seed)
        rng = random.Random(seed)
        today = date.today()
        self.today = today
        self.reports: list[tuple[str, cmd.ReportClue]] = []
        for n in range(reports):
            village = VILLAGES[n % len(VILLAGES)]
            body = synthetic_report(faker, rng, village=village, today=today)
            self.reports.append((village, cmd.ReportClue.model_validate(body)))
        # Found today at the latest, so a consultation held today is never before the finding.
        self.consultation = cmd.HoldConsultation(
            held_on=today,
            participants=[GOVERNANCE_OFFICE, *MEMBER_UNITS.values()],
            decision="会商决定:由成员单位分工介入,每两周反馈一次进展。",
        )
        self.follow_ups = [
            cmd.RecordFollowUp(visited_on=today, notes=faker.sentence(nb_words=rng.randint(8, 40)))
            for _ in range(notes)
        ]
        self.intervention_notes = [
            faker.sentence(nb_words=rng.randint(8, 40)) for _ in range(notes)
        ]
        self.risk = [
            cmd.AssessRisk(level=RiskLevel.URGENT, reason=faker.sentence(nb_words=12)),
            cmd.AssessRisk(level=RiskLevel.HIGH, reason=faker.sentence(nb_words=10)),
        ]
        self.assignment_task = "入户走访,了解家庭情况,落实帮扶措施并按期反馈。"

    def report(self, rng: random.Random) -> tuple[str, cmd.ReportClue]:
        return rng.choice(self.reports)


def new_case(pool: CommandPool, rng: random.Random, extra_events: int) -> tuple[Case, str]:
    """A case file with its report and `extra_events` more events, in memory (not saved).

    The history follows the plan's course: a consultation, an assignment to a member unit, its
    acknowledgement, then interventions, follow-ups and risk assessments in a seeded mix. Risk
    assessments are `high`/`urgent`, never below any issue's floor.
    """
    village, report = pool.report(rng)
    reporter = reporter_of(village)
    case = Case.report(report, street=STREET, by=reporter.as_record())
    by = COORDINATOR.as_record()
    assignment: UUID | None = None
    function, unit = ProtectionFunction.FAMILY, MEMBER_UNITS[ProtectionFunction.FAMILY]
    for n in range(extra_events):
        if n == 0:
            case.hold_consultation(pool.consultation, by=by)
        elif n == 1:
            function, unit = rng.choice(list(MEMBER_UNITS.items()))
            assignment = case.assign_unit(
                cmd.AssignUnit(
                    unit=unit,
                    function=function,
                    task=pool.assignment_task,
                    due_on=pool.today + timedelta(days=14),
                ),
                by=by,
            )
        elif n == 2 and assignment is not None:
            member = member_of(unit)
            case.acknowledge_assignment(assignment, unit=unit, by=member.as_record())
        else:
            draw = rng.random()
            if draw < 0.5:
                case.record_follow_up(rng.choice(pool.follow_ups), by=by)
            elif draw < 0.85 and assignment is not None:
                member = member_of(unit)
                case.record_intervention(
                    cmd.RecordIntervention.model_construct(
                        assignment_id=assignment,
                        function=function,
                        measure=rng.choice(MEASURES),
                        notes=rng.choice(pool.intervention_notes),
                        done_on=pool.today,
                    ),
                    by=member.as_record(),
                )
            else:
                case.assess_risk(rng.choice(pool.risk), by=by)
    return case, village


def event_counts(cases: int, events: int, seed: int, *, most: int = 400) -> list[int]:
    """How many events each of `cases` case files holds, `events` in all (at least one each).

    Skewed like real files: most have a handful of events, a few have hundreds (an exponential
    draw, capped at `most`, then adjusted so that the total is exact).
    """
    if events < cases:
        raise ValueError("every case file holds at least its report")
    rng = random.Random(seed)
    mean_extra = (events - cases) / cases
    counts = [
        1 + min(int(rng.expovariate(1 / mean_extra)) if mean_extra else 0, most - 1)
        for _ in range(cases)
    ]
    difference = events - sum(counts)
    while difference:
        i = rng.randrange(cases)
        if difference > 0 and counts[i] < most:
            counts[i] += 1
            difference -= 1
        elif difference < 0 and counts[i] > 1:
            counts[i] -= 1
            difference += 1
    return counts


def register_people(app: CaseTrail) -> None:
    """Register the workload's people (issue 16: only registered users' tokens get in): the
    coordinator, each village's reporter and each member unit's member."""
    people = [COORDINATOR, *(reporter_of(v) for v in VILLAGES)]
    register_actors(app, *people, *(member_of(u) for u in MEMBER_UNITS.values()))


def register_actors(app: CaseTrail, *actors: Actor) -> None:
    """Register each actor's user with its role, unit and street (or grant the role)."""
    for actor in actors:
        app.ensure_user(
            actor,
            display_name=f"基准{actor.role}",
            by={"user": "bench", "role": "operator", "unit": "", "street": ""},
            reason="bench set-up",
        )


def populate(
    app: CaseTrail,
    counts: Sequence[int],
    seed: int,
    *,
    pool: CommandPool | None = None,
    events_per_transaction: int = 5000,
    progress: Callable[[int, int], None] | None = None,
    save: Callable[[CaseTrail, Sequence[Case]], None] | None = None,
) -> list[StoredCase]:
    """Store one case file per entry of `counts` (its number of events), many per transaction,
    after registering the workload's people (`register_people`). `save`: how a transaction's
    files are saved (default `app.save`; `bench.seeding.save_in_bulk` makes their data keys
    in one transaction first)."""
    save = save or _save
    register_people(app)
    pool = pool or CommandPool(seed)
    rng = random.Random(seed + 1)
    stored: list[StoredCase] = []
    pending: list[Case] = []
    pending_events = 0
    total = sum(counts)
    done = 0
    for count in counts:
        case, village = new_case(pool, rng, count - 1)
        stored.append(StoredCase(case.id, village, count))
        pending.append(case)
        pending_events += count
        if pending_events >= events_per_transaction:
            save(app, pending)
            done += pending_events
            pending, pending_events = [], 0
            if progress is not None:
                progress(done, total)
    if pending:
        save(app, pending)
        done += pending_events
        if progress is not None:
            progress(done, total)
    return stored


def _save(app: CaseTrail, cases: Sequence[Case]) -> None:
    app.save(*cases)


def readers_of(case: StoredCase, rng: random.Random) -> Actor:
    """Who reads a case: the street's coordinator (70%) or the reporting village (30%); both are
    granted, so that every read is a disclosure and none waits out the refusal floor."""
    return COORDINATOR if rng.random() < 0.7 else reporter_of(case.village)


def chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
