"""Every code the workbench answers with has a Chinese label (projections/investigation/labels.py):
each stored event class the history gathers, each `how`, role, channel, purpose, unit type, duty
and status; the taxonomy's own labels are the ones used, not copies."""

from __future__ import annotations

from typing import Any

from eventsourcing.utils import resolve_topic

from domain.access import Channel
from domain.case import Case
from domain.taxonomy import (
    CATEGORY_LABELS,
    SUBTYPES,
    CaseStatus,
    ProtectionFunction,
    Purpose,
    RiskLevel,
    Role,
    UnitType,
)
from projections.investigation import deadlines, gather, knowledge, timeline
from projections.investigation.history import ALL_TOPICS, kind_of
from projections.investigation.knowledge import _CHANNEL_HOW
from projections.investigation.labels import (
    CHANNEL_LABELS,
    DUTY_LABELS,
    HOW_LABELS,
    KIND_LABELS,
    PURPOSE_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    STEP_LABELS,
    fact_label,
    function_label,
    issue_label,
    risk_label,
    status_label,
    unit_type_label,
)


class _Ack:
    """Stands for an acknowledgement event: `kind_of` reads its class name and `receipt`."""

    def __init__(self, receipt: bool) -> None:
        self.receipt = receipt


_Ack.__name__ = "AssignmentAcknowledged"


def test_every_gathered_event_class_has_a_kind_label() -> None:
    kinds = set()
    for topic in ALL_TOPICS:
        cls: Any = resolve_topic(topic)
        if cls is Case.AssignmentAcknowledged:
            kinds |= {kind_of(_Ack(True)), kind_of(_Ack(False))}
        elif cls.__name__ not in ("Created",):
            kinds.add(kind_of(object.__new__(cls)))
    assert kinds - set(KIND_LABELS) == set()
    assert {"assignment_received", "assignment_signed_for"} <= kinds


def test_every_code_has_its_label() -> None:
    assert {str(r) for r in Role} <= set(ROLE_LABELS)
    assert {str(c) for c in Channel} | {"unrecorded"} <= set(CHANNEL_LABELS)
    assert {str(p) for p in Purpose} <= set(PURPOSE_LABELS)
    assert set(_CHANNEL_HOW.values()) | {
        "reported",
        "consultation",
        "notice_published",
        "notice_received",
        "signed_for",
    } == set(HOW_LABELS)
    assert set(DUTY_LABELS) == {"consultation", "sign_for", "assignment_due", "quarterly_update"}
    assert set(STATUS_LABELS) == {"met", "late", "missed", "open", "ended"}
    assert set(STEP_LABELS) >= {"reported", "consultation", "assignment", "signed_for"}
    assert all(label and label != code for code, label in KIND_LABELS.items())


def test_the_taxonomys_labels_are_the_ones_used() -> None:
    assert risk_label(RiskLevel.URGENT) == "紧急" and risk_label("nonsense") == "nonsense"
    assert status_label(CaseStatus.CLOSED) == "已结案"
    assert unit_type_label(UnitType.POLICE_STATION) == "公安派出所"
    assert function_label(ProtectionFunction.JUDICIAL) == "司法保护"
    for category, subtypes in SUBTYPES.items():
        for subtype, label in subtypes.items():
            assert issue_label(category, subtype) == f"{CATEGORY_LABELS[category]}/{label}"
    assert fact_label("issue:unlawful_harm:maltreatment") == "问题类别:遭受不法侵害/虐待"
    assert fact_label("escalation:2", {"to_level": "county"}) == "上报升级:县级"
    assert fact_label("clue") == "线索存在"


def test_the_public_functions_are_exported() -> None:
    assert all(callable(f) for f in (gather, timeline, knowledge, deadlines))
