"""Canaries: distinctive synthetic personal data planted through the API, and the search for them
in bytes, in every form a careless layer could keep them in.

Each canary is a Faker zh_CN value made unique by a random marker (names by three random
characters, free texts by a hex marker, the ID number by a random date and sequence with a valid
checksum). `forms` lists what to search for: UTF-8, UTF-16 (both orders), GB18030, JSON
`\\uXXXX` escapes, percent-encoding (upper and lower hex, `+` for spaces), hex (PostgreSQL's
`bytea::text`), and for the ID number its 17 digits without the check character and a lowercase
`x`; for free texts also the marker alone, which survives truncation.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote, quote_plus

from faker import Faker

from domain.clock import local_today
from domain.identity import make_id_number

# Given-name characters, so that a minor's or guardian's name is unlike any demo name.
_GIVEN = "晓雨泽宸涵瑾萱昊睿琪璇婧珂玥彤昕煜钰祺"
_AREAS = ("330102", "110105", "440305", "510104", "320106")


@dataclass(frozen=True)
class Canaries:
    """What was planted: each canary's name (`minor.name`, `intervention.notes`...) and text."""

    texts: dict[str, str]
    markers: dict[str, str] = field(default_factory=dict)
    born: date = date(2014, 1, 1)
    male: bool = True

    def __getitem__(self, what: str) -> str:
        return self.texts[what]

    def forms(self, only: Iterable[str] | None = None) -> dict[str, list[tuple[str, bytes]]]:
        """For each canary: (form, bytes) to search for, each form named (never the value)."""
        found: dict[str, list[tuple[str, bytes]]] = {}
        for what in only or self.texts:
            text = self.texts[what]
            variants = [("", text)]
            if what.endswith("id_number"):
                variants += [(", its 17 digits", text[:17]), (", lowercase", text.lower())]
            if what in self.markers:
                variants.append((", its marker", self.markers[what]))
            listed: dict[bytes, str] = {}
            for suffix, variant in variants:
                for form, needle in encodings(variant):
                    listed.setdefault(needle, form + suffix)
            found[what] = [(form, needle) for needle, form in listed.items()]
        return found


def encodings(text: str) -> list[tuple[str, bytes]]:
    forms = [
        ("utf-8", text.encode()),
        ("utf-16-le", text.encode("utf-16-le")),
        ("utf-16-be", text.encode("utf-16-be")),
        ("gb18030", text.encode("gb18030")),
        ("json-escaped", json.dumps(text)[1:-1].encode()),
        ("percent-encoded", quote(text, safe="").encode()),
        ("percent-encoded-lower", _lower_percent(quote(text, safe="")).encode()),
        ("form-encoded", quote_plus(text, safe="").encode()),
        ("hex", text.encode().hex().encode()),
    ]
    # A form equal to another one (ASCII text) is searched once, under its first name.
    seen: set[bytes] = set()
    unique = []
    for name, value in forms:
        if value not in seen:
            seen.add(value)
            unique.append((name, value))
    return unique


def _lower_percent(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def found_in(data: bytes, forms: dict[str, list[tuple[str, bytes]]]) -> list[str]:
    """Which canaries `data` holds, as `what (form)`; never the canary itself."""
    return [
        f"{what} ({form})"
        for what, listed in forms.items()
        for form, needle in listed
        if needle in data
    ]


def plant(seed: int | None = None) -> tuple[Canaries, dict[str, Any]]:
    """Fresh canaries, and the report body (POST /v1/cases) that carries the identity ones."""
    rng = random.Random(seed)
    faker = Faker("zh_CN")
    faker.seed_instance(rng.randrange(1 << 30))
    today = local_today()
    born = today - timedelta(days=rng.randint(8 * 365, 15 * 365))
    male = rng.random() < 0.5
    sequence = rng.randrange(0, 998, 2) + (1 if male else 0)
    marker: dict[str, str] = {}

    def free(what: str, text: str) -> str:
        marker[what] = f"K{uuid.uuid4().hex[:12]}"
        return f"{text}#{marker[what]}"

    texts = {
        "minor.name": faker.last_name() + "".join(rng.sample(_GIVEN, 3)),
        "minor.id_number": make_id_number(rng.choice(_AREAS), born, sequence),
        "guardian.name": faker.last_name() + "".join(rng.sample(_GIVEN, 3)),
        "guardian.phone": f"1{rng.choice('3589')}{rng.randrange(10**8, 10**9)}",
        "minor.school": free("minor.school", f"{faker.city_name()}实验小学"),
        "description": free("description", f"孩子近期情绪低落,{faker.sentence(nb_words=6)}"),
        "consultation.decision": free("consultation.decision", "会商决定:由派出所跟进。"),
        "assignment.task": free("assignment.task", "入户走访,了解家庭情况。"),
        "intervention.notes": free("intervention.notes", "已入户走访,监护人配合。"),
        "follow_up.notes": free("follow_up.notes", "季度回访:情绪好转。"),
        "risk.reason": free("risk.reason", "家访后重新评估风险。"),
        "escalation.reason": free("escalation.reason", "需县级部门协调。"),
        "break_glass.reason": free("break_glass.reason", "紧急情况:学生失联,需联系监护人。"),
        "order.reason": free("order.reason", "一案一倒查:核查处置经过。"),
        "review.note": free("review.note", "核查后认定紧急访问合理。"),
        "closure.note": free("closure.note", "问题已化解,结案。"),
        "reopening.reason": free("reopening.reason", "再次出现苗头,重新立档。"),
    }
    found_on = today - timedelta(days=3)
    body = {
        "minor": {
            "name": texts["minor.name"],
            "gender": "male" if male else "female",
            "date_of_birth": born.isoformat(),
            "id_number": texts["minor.id_number"],
            "school": texts["minor.school"],
            "grade_class": "5年级(2)班",
            "village": "dongshan-village",
        },
        "guardians": [
            {
                "name": texts["guardian.name"],
                "relation": "mother",
                "phone": texts["guardian.phone"],
                "works_away": True,
            }
        ],
        "issues": [
            {"category": "growth_environment", "subtype": "left_behind"},
            {"category": "mental_health", "subtype": "anxiety"},
        ],
        "description": texts["description"],
        "found_by": {"role": "child_director", "unit": "dongshan-village"},
        "method": "home_visit",
        "found_on": found_on.isoformat(),
        "risk": "high",
    }
    return Canaries(texts, marker, born, male), body
