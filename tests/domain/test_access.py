"""Need-to-know: who may read which case and fields (decide, disclose), and who may change it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.access import (
    FIELDS,
    ROLE_PURPOSES,
    Actor,
    CaseScope,
    HeldAssignment,
    ReadContext,
    decide,
    disclose,
)
from domain.errors import CaseNotFound, NotPermitted
from domain.permissions import require_permission
from domain.taxonomy import ProtectionFunction, Purpose, Role
from tests.domain.builders import (
    COORDINATOR,
    OTHER_STREET,
    OTHER_VILLAGE,
    POLICE,
    POLICE_MEMBER,
    REPORTER,
    STREET,
    VILLAGE,
    new_case,
)

# Written out here rather than taken from domain.access.
IDENTITY_FIELDS = {
    "minor.name",
    "minor.gender",
    "minor.date_of_birth",
    "minor.id_number",
    "minor.school",
    "minor.grade_class",
    "guardians",
}
SENSITIVE_FIELDS = {
    "issues.mental_health",
    "issues.unlawful_harm",
    "description",
    "consultations",
    "interventions",
    "letters",
    "follow_ups",
}
OPERATIONAL = frozenset(
    {
        "id",
        "street",
        "village",
        "reporting_unit",
        "status",
        "risk",
        "found_on",
        "method",
        "found_by",
        "reported_at",
        "updated_at",
        "version",
        "categories",
        "issues.growth_environment",
        "issues.social_abnormality",
        "assignments",
        "escalations",
        "closure",
        # issue 17: the corrections' and transfers' history (values filtered per field)
        "corrections",
        "transfers",
    }
)
EVERY_FIELD = frozenset(IDENTITY_FIELDS | SENSITIVE_FIELDS | OPERATIONAL)
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

OTHER_COORDINATOR = Actor(
    "coordinator-2", Role.COORDINATOR, "xiaoxi-governance-office", OTHER_STREET
)
OTHER_REPORTER = Actor("reporter-2", Role.REPORTER, OTHER_VILLAGE, STREET)
INVESTIGATOR = Actor("inv-1", Role.INVESTIGATOR, "county-team", "county")


def scope(
    *,
    street: str = STREET,
    assigned_units: frozenset[str] = frozenset({POLICE}),
    ended_at: datetime | None = None,
) -> CaseScope:
    """A case of VILLAGE's reporter in `street`, with POLICE assigned (judicial) unless told
    otherwise; `ended_at` ends those assignments."""
    return CaseScope(
        case_id=uuid4(),
        street=street,
        reporting_unit=VILLAGE,
        assignments=tuple(
            HeldAssignment(unit, ProtectionFunction.JUDICIAL, ended_at) for unit in assigned_units
        ),
    )


def ctx(case_scope: CaseScope | None = None, **kwargs: object) -> ReadContext:
    return ReadContext(scope=case_scope if case_scope is not None else scope(), now=NOW, **kwargs)  # type: ignore[arg-type]


def test_fields_table_holds_exactly_the_expected_fields() -> None:
    assert set(FIELDS) == EVERY_FIELD | {"interventions.own_unit", "access_log"}


# --- decide ---------------------------------------------------------------------------------


def test_coordinator_of_the_same_street_gets_every_field() -> None:
    decision = decide(COORDINATOR, ctx(), Purpose.CONSULTATION)
    assert decision.granted
    assert decision.rule == "coordinator_same_street"
    assert decision.fields == EVERY_FIELD


def test_coordinator_of_another_street_is_refused_out_of_scope() -> None:
    decision = decide(OTHER_COORDINATOR, ctx(), Purpose.CONSULTATION)
    assert not decision.granted
    assert decision.rule == "out_of_scope"
    assert decision.fields == frozenset()


def test_reporter_of_the_reporting_unit_is_granted_without_consultations() -> None:
    decision = decide(REPORTER, ctx(), Purpose.FOLLOW_UP)
    assert decision.granted
    assert decision.rule == "reporter_own_unit"
    assert decision.fields >= IDENTITY_FIELDS
    assert "consultations" not in decision.fields


def test_reporter_of_the_same_unit_code_in_another_street_is_refused() -> None:
    elsewhere = Actor("reporter-9", Role.REPORTER, VILLAGE, OTHER_STREET)
    assert not decide(elsewhere, ctx(), Purpose.FOLLOW_UP).granted


def test_reporter_of_another_unit_is_refused() -> None:
    decision = decide(OTHER_REPORTER, ctx(), Purpose.FOLLOW_UP)
    assert not decision.granted
    assert decision.rule == "out_of_scope"
    assert decision.fields == frozenset()


def test_assigned_police_see_identity_and_unlawful_harm_but_not_mental_health() -> None:
    decision = decide(POLICE_MEMBER, ctx(), Purpose.INTERVENTION)
    assert decision.granted
    assert decision.rule == "unit_member_assigned"
    assert decision.fields >= OPERATIONAL | IDENTITY_FIELDS
    assert {"issues.unlawful_harm", "description"} <= decision.fields
    assert not decision.fields & {"issues.mental_health", "consultations", "interventions"}


def test_unit_member_keeps_sight_during_the_grace_period_only() -> None:
    recently = scope(ended_at=NOW - timedelta(hours=1))
    long_ago = scope(ended_at=NOW - timedelta(days=30))
    grace = timedelta(hours=72)
    assert decide(POLICE_MEMBER, ctx(recently, grace=grace), Purpose.FOLLOW_UP).rule == (
        "unit_member_grace"
    )
    assert decide(POLICE_MEMBER, ctx(long_ago, grace=grace), Purpose.FOLLOW_UP).rule == (
        "out_of_scope"
    )


def test_unit_member_without_an_assignment_is_refused() -> None:
    decision = decide(POLICE_MEMBER, ctx(scope(assigned_units=frozenset())), Purpose.INTERVENTION)
    assert not decision.granted
    assert decision.rule == "out_of_scope"


def test_investigator_needs_an_order_in_force() -> None:
    assert not decide(INVESTIGATOR, ctx(), Purpose.INVESTIGATION).granted
    in_force = decide(
        INVESTIGATOR, ctx(order_expires_at=NOW + timedelta(days=1)), Purpose.INVESTIGATION
    )
    assert in_force.granted
    assert "access_log" in in_force.fields
    expired = decide(
        INVESTIGATOR, ctx(order_expires_at=NOW - timedelta(seconds=1)), Purpose.INVESTIGATION
    )
    assert not expired.granted


def test_break_glass_needs_emergency_and_a_reason() -> None:
    without = decide(OTHER_REPORTER, ctx(), Purpose.EMERGENCY)
    assert (without.granted, without.rule) == (False, "break_glass_without_reason")
    granted = decide(
        OTHER_REPORTER, ctx(break_glass_reason="孩子失联,需要联系监护人"), Purpose.EMERGENCY
    )
    assert granted.granted and granted.break_glass
    assert "minor.name" in granted.fields
    assert "consultations" not in granted.fields
    wrong_purpose = decide(
        OTHER_REPORTER, ctx(break_glass_reason="理由充分的说明"), Purpose.FOLLOW_UP
    )
    assert not wrong_purpose.granted


def test_compliance_auditor_sees_the_access_log_only_and_admin_nothing() -> None:
    auditor = Actor("aud-1", Role.COMPLIANCE_AUDITOR, "county-compliance", "county")
    decision = decide(auditor, ctx(), Purpose.COMPLIANCE_REVIEW)
    assert decision.fields == frozenset({"access_log"})
    admin = Actor("adm-1", Role.ADMIN, "county-admin", STREET)
    for purpose in Purpose:
        assert not decide(admin, ctx(), purpose).granted


@pytest.mark.parametrize("actor", [COORDINATOR, REPORTER, POLICE_MEMBER])
def test_nonexistent_case_is_refused_with_no_such_case(actor: Actor) -> None:
    decision = decide(actor, ReadContext(scope=None, now=NOW), Purpose.INTERVENTION)
    assert not decision.granted
    assert decision.rule == "no_such_case"
    assert decision.fields == frozenset()


FORBIDDEN_PURPOSES = [
    (role, purpose) for role in Role for purpose in Purpose if purpose not in ROLE_PURPOSES[role]
]


def test_some_purposes_are_forbidden_to_each_role() -> None:
    # Every role has at least one purpose it may not declare; admin may declare none.
    assert {role for role, _ in FORBIDDEN_PURPOSES} == set(Role)
    assert {p for r, p in FORBIDDEN_PURPOSES if r is Role.ADMIN} == set(Purpose)
    assert (Role.REPORTER, Purpose.INVESTIGATION) in FORBIDDEN_PURPOSES
    assert (Role.COORDINATOR, Purpose.COMPLIANCE_REVIEW) in FORBIDDEN_PURPOSES


@pytest.mark.parametrize(("role", "purpose"), FORBIDDEN_PURPOSES)
def test_a_purpose_not_allowed_for_the_role_is_refused(role: Role, purpose: Purpose) -> None:
    # The actor's own street and unit: only the purpose is wrong.
    actor = Actor("someone", role, VILLAGE, STREET)
    for context in (ctx(scope(assigned_units=frozenset({VILLAGE}))), ReadContext(None, NOW)):
        decision = decide(actor, context, purpose)
        assert not decision.granted
        assert decision.rule.startswith("purpose_not_allowed")
        assert decision.fields == frozenset()


def test_coordinator_with_an_investigation_purpose_is_refused_even_in_scope() -> None:
    decision = decide(COORDINATOR, ctx(), Purpose.INVESTIGATION)
    assert not decision.granted
    assert decision.rule.startswith("purpose_not_allowed")


# --- disclose -------------------------------------------------------------------------------


def test_disclose_with_operational_fields_leaves_the_rest_absent() -> None:
    case = new_case()
    answer = disclose(case, OPERATIONAL, reader_unit=POLICE)
    assert set(answer) == (
        OPERATIONAL - {"issues.growth_environment", "issues.social_abnormality"}
    ) | {"issues"}
    for absent in ("minor", "description", "guardians", "follow_ups"):
        assert absent not in answer
    assert answer["id"] == str(case.id)
    assert answer["village"] == VILLAGE
    assert answer["version"] == 1


def test_disclose_filters_issues_by_category() -> None:
    case = new_case()
    shown = disclose(case, frozenset({"issues.growth_environment"}), reader_unit=POLICE)
    assert all(i["category"] == "growth_environment" for i in shown["issues"])
    assert len(shown["issues"]) == sum(
        1 for i in case.issues if i["category"] == "growth_environment"
    )


def test_disclose_everything() -> None:
    case = new_case()
    answer = disclose(case, EVERY_FIELD, reader_unit=VILLAGE)
    top_level = {f for f in EVERY_FIELD if "." not in f} | {"minor", "issues"}
    assert set(answer) == top_level
    assert answer["minor"] == {
        key: case.minor[key]
        for key in ("name", "gender", "date_of_birth", "id_number", "school", "grade_class")
    }
    assert answer["description"] == case.description
    assert answer["guardians"] == case.guardians
    assert answer["issues"] == case.issues


def test_disclose_exactly_the_requested_minor_fields() -> None:
    case = new_case()
    answer = disclose(case, frozenset({"minor.name", "risk"}), reader_unit=VILLAGE)
    assert answer == {"risk": case.risk, "minor": {"name": case.minor["name"]}}


def test_disclose_nothing() -> None:
    assert disclose(new_case(), frozenset(), reader_unit=VILLAGE) == {}


def test_disclose_what_decide_granted() -> None:
    case = new_case()
    context = ReadContext(scope=CaseScope.of(case), now=NOW)
    answer = disclose(
        case, decide(REPORTER, context, Purpose.FOLLOW_UP).fields, reader_unit=VILLAGE
    )
    assert answer["minor"]["id_number"] == case.minor["id_number"]
    refused = decide(OTHER_REPORTER, context, Purpose.FOLLOW_UP).fields
    assert disclose(case, refused, reader_unit=OTHER_VILLAGE) == {}


# --- require_permission ---------------------------------------------------------------------


def test_reporter_may_not_assign_a_unit() -> None:
    with pytest.raises(NotPermitted):
        require_permission(REPORTER, "assign_unit", scope())


def test_coordinator_of_the_street_may_assign_a_unit() -> None:
    require_permission(COORDINATOR, "assign_unit", scope())


def test_coordinator_of_another_street_gets_case_not_found() -> None:
    with pytest.raises(CaseNotFound) as caught:
        require_permission(OTHER_COORDINATOR, "assign_unit", scope())
    assert type(caught.value) is CaseNotFound
    assert not isinstance(caught.value, NotPermitted)


def test_case_not_found_is_the_same_whether_or_not_the_case_exists_for_its_outsider() -> None:
    for action in ("assign_unit", "close", "reclassify", "record_follow_up"):
        with pytest.raises(CaseNotFound):
            require_permission(OTHER_COORDINATOR, action, scope())


def test_assigned_unit_member_may_acknowledge_and_another_unit_may_not() -> None:
    require_permission(POLICE_MEMBER, "acknowledge_assignment", scope())
    with pytest.raises(CaseNotFound):
        require_permission(
            POLICE_MEMBER, "acknowledge_assignment", scope(assigned_units=frozenset())
        )


def test_anyone_with_the_role_may_report_a_clue_but_not_a_unit_member() -> None:
    require_permission(REPORTER, "report_clue", None)
    require_permission(COORDINATOR, "report_clue", None)
    with pytest.raises(NotPermitted):
        require_permission(POLICE_MEMBER, "report_clue", None)


def test_reporter_of_the_case_may_record_a_follow_up_but_not_close() -> None:
    require_permission(REPORTER, "record_follow_up", scope())
    with pytest.raises(NotPermitted):
        require_permission(REPORTER, "close", scope())
