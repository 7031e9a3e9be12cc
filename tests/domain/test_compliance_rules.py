"""The compliance rules (`domain.compliance.rules`), their configuration, and their determinism.

- Table-driven: for each rule a scenario that triggers it and a near miss that does not.
- Property (hypothesis): over a random access history, evaluating incrementally (random batch
  boundaries, the state stored and reloaded between batches, clock ticks between them) raises
  exactly the findings a re-run over the whole history raises, for random thresholds.
- The configuration: the repository's TOML file equals the defaults; a bad file is refused with
  one message naming the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

import pytest
from eventsourcing.domain import DomainEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import clock
from domain import commands as cmd
from domain.compliance.config import (
    BulkBrowsing,
    CuriosityBrowsing,
    RepeatedRefusals,
    RulesConfig,
    RulesConfigError,
)
from domain.compliance.records import AccessRecord, RecordKind
from domain.compliance.rules import (
    RULES,
    CaseFact,
    Raised,
    ReviewFact,
    RuleEngine,
    case_fact_of,
)
from domain.taxonomy import ProtectionFunction
from gateway.compliance.config import DEFAULT_RULES_FILE, load_rules
from tests.domain.builders import COORDINATOR, OTHER_STREET, POLICE, new_case

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)  # a Monday, 09:00 local
NS = UUID("9a1f0c3e-7b2d-4e5f-8a6b-1c2d3e4f5a6b")


def case_id(name: str) -> UUID:
    return uuid5(NS, name)


Fact = AccessRecord | CaseFact | ReviewFact


@dataclass
class History:
    """A history of facts, each at T0 + minutes, positions in order."""

    facts: list[Fact] = field(default_factory=list)

    def _next(self) -> int:
        return len(self.facts) + 1

    def read(
        self,
        minutes: float,
        case: str = "c1",
        *,
        user: str = "u-1",
        role: str = "unit_member",
        unit: str = "pcs-1",
        street: str = "s-1",
        purpose: str = "intervention",
        channel: str = "api",
        fields: tuple[str, ...] = ("id", "status"),
        break_glass: bool = False,
        request: str = "",
    ) -> AccessRecord:
        position = self._next()
        record = AccessRecord(
            position=position,
            event_id=uuid5(NS, f"access-{position}"),
            at=T0 + timedelta(minutes=minutes),
            kind=RecordKind.READ,
            case_id=case_id(case),
            user=user,
            role=role,
            unit=unit,
            street=street,
            purpose=purpose,
            rule="break_glass" if break_glass else "unit_member_assigned",
            channel=channel,
            fields=fields,
            break_glass=break_glass,
            request_id=request or f"r-{position}",
            case_version=1,
            client_address="10.0.0.1",
            client_user_agent="t",
        )
        self.facts.append(record)
        return record

    def refused(self, minutes: float, *, user: str = "u-1", command: str = "") -> None:
        position = self._next()
        self.facts.append(
            AccessRecord(
                position=position,
                event_id=uuid5(NS, f"access-{position}"),
                at=T0 + timedelta(minutes=minutes),
                kind=RecordKind.REFUSED_COMMAND if command else RecordKind.REFUSED_READ,
                case_id=case_id("c9"),
                user=user,
                role="unit_member",
                unit="pcs-1",
                street="s-1",
                purpose="" if command else "intervention",
                rule="out_of_scope",
                channel="api",
                fields=(),
                break_glass=False,
                request_id=f"r-{position}",
                case_version=None,
                client_address="10.0.0.1",
                client_user_agent="t",
                command=command,
            )
        )

    def case(
        self,
        minutes: float,
        kind: str,
        case: str = "c1",
        *,
        user: str = "",
        unit: str = "",
        street: str = "s-1",
    ) -> None:
        self.facts.append(
            CaseFact(
                position=self._next(),
                at=T0 + timedelta(minutes=minutes),
                case_id=case_id(case),
                kind=kind,
                user=user,
                street=street,
                unit=unit,
                assignment_id=f"a-{case}-{unit}",
            )
        )

    def review(self, minutes: float, access: AccessRecord) -> None:
        self.facts.append(
            ReviewFact(self._next(), T0 + timedelta(minutes=minutes), access.event_id)
        )


def base(*cases: str) -> History:
    """Files reported (by reporter r-1) and assigned to pcs-1, an hour before T0."""
    history = History()
    for name in cases or ("c1",):
        history.case(-60, "reported", name, user="r-1")
        history.case(-59, "assigned", name, user="coord", unit="pcs-1")
    return history


def feed(engine: RuleEngine, fact: Fact) -> list[Raised]:
    if isinstance(fact, AccessRecord):
        return engine.feed_record(fact)
    if isinstance(fact, CaseFact):
        return engine.feed_case(fact)
    return engine.feed_review(fact)


def evaluate(
    history: History, config: RulesConfig | None = None, now_minutes: float = 0
) -> list[Raised]:
    engine = RuleEngine(config or RulesConfig())
    raised = [r for fact in history.facts for r in feed(engine, fact)]
    last = max((f.at for f in history.facts), default=T0)
    now = max(last, T0 + timedelta(minutes=now_minutes))
    return raised + engine.due(now)


def of_rule(raised: list[Raised], rule: str) -> list[Raised]:
    return [r for r in raised if r.rule == rule]


# --- each rule: a scenario that triggers it, a near miss that does not ---------------------------


def refusals_in(span: float) -> History:
    history = base()
    for i in range(5):
        history.refused(span * i / 4, command="close" if i % 2 else "")
    return history


def break_glass(review_after_hours: float | None) -> History:
    history = base("c2")
    access = history.read(0, "c2", user="u-7", unit="school-1", break_glass=True,
                          purpose="emergency")  # fmt: skip
    if review_after_hours is not None:
        history.review(review_after_hours * 60, access)
    return history


def after_closure(role: str) -> History:
    history = base()
    history.case(0, "closed", user="coord")
    history.read(10, user="reader", role=role, unit="office", purpose="follow_up")
    return history


def bulk(distinct: int) -> History:
    names = [f"b{i}" for i in range(distinct)]
    history = base(*names)
    for i, name in enumerate(names):
        history.read(i, name)
    history.read(distinct, names[0])  # a file read again is no new file
    return history


def listed(channel: str, fields: tuple[str, ...] = ("id", "status")) -> History:
    """20 distinct files read by one person within minutes, through `channel`."""
    names = [f"l{i}" for i in range(20)]
    history = base(*names)
    for i, name in enumerate(names):
        history.read(i, name, channel=channel, fields=fields, purpose="follow_up")
    return history


def read_at(hour: int, minute: int) -> History:
    history = base()
    history.read((hour - 9) * 60 + minute)
    return history


def export(fields: tuple[str, ...]) -> History:
    history = base("e1", "e2")
    for name in ("e1", "e2"):
        history.read(5, name, role="coordinator", unit="office", channel="export",
                     fields=fields, request="export-1", purpose="follow_up")  # fmt: skip
    return history


def purpose(ended: bool) -> History:
    history = base()
    if ended:
        history.case(1, "assignment_ended", user="u-1", unit="pcs-1")
    history.read(10)
    return history


def transferred(to_street: str) -> History:
    """The file (assigned to s-1's pcs-1) transferred to `to_street`, then the receiving
    street's unit pcs-2 is assigned and both units read it for intervention: the transfer to
    another street ended pcs-1's assignment (inside Transferred), a transfer within s-1 did not.
    """
    history = base()
    history.case(1, "transferred", user="coord", street=to_street)
    if to_street != "s-1":
        history.case(2, "assigned", user="coord2", unit="pcs-2", street=to_street)
        history.read(9, user="u-2", unit="pcs-2", street=to_street)
    history.read(10)  # s-1's pcs-1
    return history


def curiosity(acted: bool) -> History:
    history = base()
    for i in range(5):
        history.read(i * 60)
        if acted and i == 2:
            history.case(i * 60 + 1, "action", user="u-1")
    return history


Scenario = tuple[str, Callable[[], History], Callable[[], History], float]

SCENARIOS: list[Scenario] = [
    # rule, triggers, near miss, evaluated at T0 + minutes
    ("repeated_refusals", lambda: refusals_in(50), lambda: refusals_in(70), 0),
    ("break_glass_unreviewed", lambda: break_glass(None), lambda: break_glass(23), 25 * 60),
    ("read_after_closure", lambda: after_closure("coordinator"),
     lambda: after_closure("investigator"), 0),
    ("bulk_browsing", lambda: bulk(20), lambda: bulk(19), 0),
    # Sanctioned list reads are no browsing: a compliance report's, or only the access log.
    ("bulk_browsing", lambda: listed("ledger"), lambda: listed("compliance"), 0),
    ("bulk_browsing", lambda: listed("api"), lambda: listed("api", ("access_log",)), 0),
    ("after_hours", lambda: read_at(18, 0), lambda: read_at(17, 59), 0),
    ("identity_export", lambda: export(("id", "minor.name", "minor.id_number")),
     lambda: export(("id", "status")), 10),
    ("purpose_not_borne_out", lambda: purpose(True), lambda: purpose(False), 0),
    ("purpose_not_borne_out", lambda: transferred("s-2"), lambda: transferred("s-1"), 0),
    ("curiosity_browsing", lambda: curiosity(False), lambda: curiosity(True), 48 * 60),
]  # fmt: skip


def test_every_rule_has_a_scenario_and_a_description_in_both_languages() -> None:
    assert sorted({s[0] for s in SCENARIOS}) == sorted(RULES)
    for rule in RULES.values():
        assert rule.zh and rule.en and rule.zh != rule.en


@pytest.mark.parametrize(("rule", "triggers", "near_miss", "now"), SCENARIOS)
def test_the_rule_triggers_and_the_near_miss_does_not(
    rule: str, triggers: Callable[[], History], near_miss: Callable[[], History], now: float
) -> None:
    found = of_rule(evaluate(triggers(), now_minutes=now), rule)
    assert len({r.id for r in found}) == 1, found
    assert of_rule(evaluate(near_miss(), now_minutes=now), rule) == []
    (finding,) = {r.id: r for r in found}.values()
    assert finding.person and finding.evidence and finding.case_ids
    assert all(p >= 1 for p in finding.evidence)


def test_a_transfer_moves_the_file_and_ends_the_sending_streets_assignments() -> None:
    """After a transfer to s-2, the sending street's unit (its assignment ended inside
    Transferred) reading for intervention is flagged, the receiving street's assigned unit not.
    """
    found = of_rule(evaluate(transferred("s-2")), "purpose_not_borne_out")
    assert [(r.person, r.street) for r in found] == [("u-1", "s-1")]
    assert of_rule(evaluate(transferred("s-1")), "purpose_not_borne_out") == []


def test_a_stored_transfer_is_a_transferred_fact_naming_the_receiving_street() -> None:
    case = new_case()
    case.assign_unit(
        cmd.AssignUnit(
            unit=POLICE, function=ProtectionFunction.JUDICIAL, task="核查",
            due_on=clock.local_today(),
        ),
        by=COORDINATOR.as_record(),
    )  # fmt: skip
    case.transfer(
        cmd.TransferCase(to_street=OTHER_STREET, to_village="xiaoxi-village", reason="随父母迁居"),
        by=COORDINATOR.as_record(),
    )
    events = [e for e in case.collect_events() if isinstance(e, DomainEvent)]
    facts = [case_fact_of(i, e) for i, e in enumerate(events, 1)]
    assert [f.kind for f in facts if f is not None][-1] == "transferred"
    engine = RuleEngine(RulesConfig())
    for position, event in enumerate(events, 1):
        engine.feed(position, event)
    state = engine.state[f"case|{case.id}"]
    assert state["street"] == OTHER_STREET and state["units"] == {}


def test_a_finding_names_its_evidence_person_unit_and_window() -> None:
    (found,) = of_rule(evaluate(refusals_in(50)), "repeated_refusals")
    assert found.evidence == (3, 4, 5, 6, 7)  # after the two case facts of base()
    assert (found.person, found.role, found.unit, found.street) == (
        "u-1",
        "unit_member",
        "pcs-1",
        "s-1",
    )
    assert found.window_end - found.window_start == 50 * 60
    assert found.detail == {"refusals": 5, "threshold": 5, "window_minutes": 60}


def test_thresholds_come_from_the_configuration() -> None:
    stricter = replace(RulesConfig(), bulk_browsing=BulkBrowsing(distinct_cases=19))
    assert len(of_rule(evaluate(bulk(19), stricter), "bulk_browsing")) == 1
    looser = replace(RulesConfig(), repeated_refusals=RepeatedRefusals(window_minutes=80))
    assert len(of_rule(evaluate(refusals_in(70), looser), "repeated_refusals")) == 1
    only = RulesConfig(enabled=("after_hours",))
    assert {r.rule for r in evaluate(curiosity(False), only, 48 * 60)} <= {"after_hours"}


def test_due_changes_nothing_and_the_next_fact_settles_the_same_finding() -> None:
    history = curiosity(False)
    engine = RuleEngine(RulesConfig())
    for fact in history.facts:
        feed(engine, fact)
    later = T0 + timedelta(hours=48)
    first, second = engine.due(later), engine.due(later)
    assert [r.id for r in first] == [r.id for r in second]
    history.read(48 * 60, "c2", user="someone-else")
    settled = feed(engine, history.facts[-1])
    assert [r.id for r in of_rule(settled, "curiosity_browsing")] == [r.id for r in first]
    assert engine.due(later) == []


# --- incremental == re-run (hypothesis) --------------------------------------------------------

USERS = ("u-1", "u-2", "u-3")
CASES = ("c1", "c2", "c3", "c4")


@st.composite
def histories(draw: Any) -> History:
    history = base(*CASES)
    minutes = 0.0
    glass: list[AccessRecord] = []
    for _ in range(draw(st.integers(0, 60))):
        minutes += draw(st.sampled_from([0, 0.5, 3, 17, 45, 200, 700, 1500]))
        op = draw(st.sampled_from(["read", "read", "read", "refused", "case", "glass", "review",
                                   "export"]))  # fmt: skip
        user, case = draw(st.sampled_from(USERS)), draw(st.sampled_from(CASES))
        if op == "read":
            history.read(minutes, case, user=user,
                         role=draw(st.sampled_from(["unit_member", "coordinator"])))  # fmt: skip
        elif op == "refused":
            history.refused(minutes, user=user, command=draw(st.sampled_from(["", "close"])))
        elif op == "case":
            kind = draw(st.sampled_from(["closed", "reopened", "assigned", "assignment_ended",
                                         "action"]))  # fmt: skip
            history.case(minutes, kind, case, user=user, unit="pcs-1")
        elif op == "glass":
            glass.append(history.read(minutes, case, user=user, break_glass=True))
        elif op == "review" and glass:
            history.review(minutes, draw(st.sampled_from(glass)))
        elif op == "export":
            history.read(minutes, case, user=user, channel="export", request=f"x-{user}",
                         fields=("id", "minor.name"))  # fmt: skip
    return history


configs = st.builds(
    lambda count, window, distinct, reads, hours: replace(
        RulesConfig(),
        repeated_refusals=RepeatedRefusals(count=count, window_minutes=window),
        bulk_browsing=BulkBrowsing(distinct_cases=distinct, window_minutes=window),
        curiosity_browsing=CuriosityBrowsing(reads=reads, window_hours=hours),
    ),
    st.integers(1, 4),
    st.integers(1, 240),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 12),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), config=configs, data=st.data())
def test_incremental_evaluation_raises_exactly_what_a_rerun_raises(
    history: History, config: RulesConfig, data: Any
) -> None:
    facts = history.facts
    now = (facts[-1].at if facts else T0) + timedelta(hours=30)
    rerun = {r.id: r for r in evaluate(history, config, (now - T0).total_seconds() / 60)}

    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(facts)), max_size=8))))
    rows: dict[str, str] = {}
    incremental: dict[UUID, Raised] = {}
    engine = RuleEngine(config)
    start = 0
    for end in [*cuts, len(facts)]:
        for fact in facts[start:end]:
            incremental.update((r.id, r) for r in feed(engine, fact))
        upserts, removed = engine.take_changes()
        rows.update(upserts)
        for key in removed:
            rows.pop(key, None)
        # The evaluator's process restarts from the stored rows, and the clock ticks up to the
        # next fact (never past it: a tick is a look at the state, not a fact).
        engine = RuleEngine.from_rows(config, sorted(rows.items()))
        tick = facts[end].at if end < len(facts) else now
        incremental.update((r.id, r) for r in engine.due(tick))
        start = end
    assert incremental.keys() == rerun.keys()
    assert all(incremental[i] == rerun[i] for i in rerun)


# --- the configuration -------------------------------------------------------------------------


def test_the_repository_file_holds_the_defaults() -> None:
    assert load_rules() == RulesConfig()
    assert load_rules(DEFAULT_RULES_FILE).digest() == RulesConfig().digest()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[bulk_browsing]\ndistinct_case = 3\n", "bulk_browsing.distinct_case"),
        ("[no_such_rule]\nx = 1\n", "no_such_rule"),
        ("[bulk_browsing]\ndistinct_cases = 0\n", "bulk_browsing.distinct_cases"),
        ('[after_hours]\ntimezone = "Mars/Base"\n', "after_hours.timezone"),
        ('[after_hours]\nstart = "19:00"\n', "after_hours.start"),
        ('[read_after_closure]\nexempt_roles = ["janitor"]\n', "read_after_closure"),
        ('enabled = ["bulk"]\n', "enabled"),
        ('[curiosity_browsing]\nreads = "5"\n', "curiosity_browsing.reads"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesConfigError, match=named.replace(".", r"\.")):
        load_rules(path)


def test_a_file_may_name_only_what_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[bulk_browsing]\ndistinct_cases = 50\n", encoding="utf-8")
    found = load_rules(path)
    assert found.bulk_browsing == BulkBrowsing(distinct_cases=50, window_minutes=60)
    assert found.digest() != RulesConfig().digest()
    assert found.after_hours == RulesConfig().after_hours


@pytest.mark.parametrize(
    ("day_offset", "hour", "minute", "flagged"),
    [(5, 10, 0, True), (6, 12, 0, True), (0, 8, 0, False), (0, 7, 59, True), (4, 17, 30, False)],
)
def test_working_days_and_hours_are_local_to_shanghai(
    day_offset: int, hour: int, minute: int, flagged: bool
) -> None:
    """T0 is a Monday: +5 days is Saturday, +6 Sunday, +4 Friday."""
    history = base()
    history.read(day_offset * 24 * 60 + (hour - 9) * 60 + minute)
    found = of_rule(evaluate(history), "after_hours")
    assert bool(found) is flagged
    if found:
        local = history.facts[-1].at.astimezone(SHANGHAI)
        assert found[0].detail == {
            "local_time": local.strftime("%Y-%m-%d %H:%M"),
            "weekday": local.isoweekday(),
        }
