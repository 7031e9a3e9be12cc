"""Example bodies for the OpenAPI schema: synthetic people only, valid as they stand."""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.identity import make_id_number

_BORN = date(2013, 3, 15)

REPORT_CLUE_BODY: dict[str, Any] = {
    "minor": {
        "name": "林小雨",
        "gender": "female",
        "date_of_birth": _BORN.isoformat(),
        # Synthetic: a well-formed number built for this example, not a real person's.
        "id_number": make_id_number("330102", _BORN, 482),
        "school": "城关镇中心小学",
        "grade_class": "六年级(2)班",
        "village": "dongshan-village",
    },
    "guardians": [
        {"name": "林建国", "relation": "father", "phone": "13800001234", "works_away": True},
        {"name": "陈秀英", "relation": "grandparent", "phone": "13900005678", "works_away": False},
    ],
    "issues": [
        {"category": "growth_environment", "subtype": "left_behind"},
        {"category": "mental_health", "subtype": "anxiety"},
    ],
    "description": "父亲外出务工,孩子由祖母照看;近期上课注意力不集中,夜间难以入睡。",
    "found_by": {"role": "child_director", "unit": "dongshan-village"},
    "method": "home_visit",
    "found_on": "2026-07-10",
    "risk": "medium",
}

REPORT_CLUE_EXAMPLE: dict[str, Any] = {
    "left_behind_child": {
        "summary": "A left-behind child found on a home visit (synthetic person)",
        "value": REPORT_CLUE_BODY,
    }
}
