"""The knowledge matrix (知情矩阵): who knew which fact about the case, from when, and how.

Facts (codes): `clue` (the clue exists), `minor.identity` (who the child is), `issue:<category>:
<subtype>` (each issue the file listed), `risk:<level>` (each risk level the file reached),
`description`, `assignment:<id>` (each assignment), `escalation:<n>` (each escalation, from 1).
For each, `known_by` lists every person (or unit, `user` null) who learned it, once, with the
first instant (`first_at`), the store position of the event that taught it (`position`) and
`how`:

- `reported`: they put it on the file (the report; a reclassification, a risk assessment, an
  assignment or an escalation they recorded);
- `consultation`: the units named as participants of a consultation (问题会商), and whoever
  recorded it, learn every fact on the file at that time;
- `notice_published` / `notice_received`: a notice to a unit (its publication to the unit's
  stream, then its client's automatic receipt) teaches the unit what the notice carried: an
  assignment notice its assignment; a new-clue notice that the clue exists and its risk level.
  An acknowledgement stored before signing was told apart is such a receipt;
- `signed_for`: a person of the assigned unit signing for the assignment (签收) learns it;
- `read`, `ledger`, `lookup`, `export`, `bundle` (by the access event's channel; other channels
  count as `read`): a granted read teaches exactly the facts its `fields` disclosed (field names
  of `domain.access`; `issues.<category>` teaches that category's subtypes on the file), as the
  file stood at the version it disclosed (the version stored with the access event; before
  access events carried it, the file as it stood when the read was recorded). Any case content
  teaches that the clue exists; `minor.name` or `minor.id_number` the identity; `risk` the
  current level; `assignments`, `escalations` each one on the file. A refused read teaches
  nothing; neither does an access log alone (it names readers, not the child).

Facts learned after `as_of` are absent. Linear: one loop over the gathered steps, a dict lookup
per (fact, knower). Proven by tests/projections/test_investigation_scenario.py (fact by fact).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from domain.access import CASE_CONTENT
from domain.users import post_label
from projections.investigation.history import CaseHistory, FileState, Step
from projections.investigation.labels import fact_label
from projections.investigation.timeline import channel_of

_CHANNEL_HOW: Final = {
    "api": "read",
    "ledger": "ledger",
    "lookup": "lookup",
    "export": "export",
    "bundle": "bundle",
}
_IDENTITY: Final = frozenset({"minor.name", "minor.id_number"})
_CONTENT: Final = frozenset(CASE_CONTENT)

# What a knowledge matrix discloses of the file (field names of `domain.access`), recorded with
# its read: the facts it names (subtypes, risk levels, assignments, escalations) and who took
# part in consultations; with the access log (who read), in a second access event.
KNOWLEDGE_FIELDS: Final = frozenset(
    {
        "id",
        "risk",
        "issues.growth_environment",
        "issues.social_abnormality",
        "issues.mental_health",
        "issues.unlawful_harm",
        "assignments",
        "escalations",
        "consultations",
    }
)


def _all_facts(state: FileState) -> list[str]:
    return [
        "clue",
        "minor.identity",
        *(f"issue:{c}:{s}" for c, s in state.issues),
        f"risk:{state.risk}",
        "description",
        *(f"assignment:{a}" for a, _, _ in state.assignments),
        *(f"escalation:{n}" for n, _ in state.escalations),
    ]


def _read_facts(state: FileState, fields: frozenset[str]) -> list[str]:
    if not fields & _CONTENT:
        return []
    found = ["clue"]
    if fields & _IDENTITY:
        found.append("minor.identity")
    found.extend(f"issue:{c}:{s}" for c, s in state.issues if f"issues.{c}" in fields)
    if "risk" in fields:
        found.append(f"risk:{state.risk}")
    if "description" in fields:
        found.append("description")
    if "assignments" in fields:
        found.extend(f"assignment:{a}" for a, _, _ in state.assignments)
    if "escalations" in fields:
        found.extend(f"escalation:{n}" for n, _ in state.escalations)
    return found


class _Matrix:
    def __init__(self, history: CaseHistory | None = None) -> None:
        # Whose posts name each knower (issue 16): the post held when they first learned.
        self.history = history
        # fact -> (user, unit) -> entry; dicts keep the order facts and knowers appeared in.
        self.facts: dict[str, dict[tuple[str | None, str | None], dict[str, Any]]] = {}
        self.details: dict[str, dict[str, str]] = {}
        # The case version of each escalation -> its number (a notice names its source event).
        self.escalation_at: dict[int, int] = {}
        # Reads already taught: (user, unit, state, fields); facts a (state, fields) discloses.
        # States are the history's own objects, alive as long as it is: their ids are stable.
        self.reads: set[tuple[str | None, str | None, int, tuple[str, ...]]] = set()
        self.read_facts: dict[tuple[int, tuple[str, ...]], list[str]] = {}

    def teach(
        self,
        facts: list[str],
        *,
        user: str | None,
        unit: str | None,
        role: str | None,
        step: Step,
        how: str,
    ) -> None:
        key = (user, unit)
        for fact in facts:
            knowers = self.facts.get(fact)
            if knowers is None:
                knowers = self.facts[fact] = {}
            if key not in knowers:
                post = self.history.post_of(user, step.at) if self.history else None
                knowers[key] = {
                    "user": user,
                    "unit": unit,
                    "role": role,
                    "post": post,
                    "post_label_zh": post_label(post) if post is not None else None,
                    "first_at": step.at.isoformat(),
                    "how": how,
                    "position": step.position,
                }

    def note(self, state: FileState | None) -> None:
        """Remember the unit and function of each assignment, the level of each escalation
        (for the labels)."""
        if state is None:
            return
        for aid, unit, function in state.assignments:
            self.details[f"assignment:{aid}"] = {"unit": unit, "function": function}
        for n, level in state.escalations:
            self.details[f"escalation:{n}"] = {"to_level": level}


def _person(step: Step, record: Any) -> tuple[str | None, str | None, str | None]:
    if not isinstance(record, dict):
        return None, None, None
    return record.get("user"), record.get("unit"), record.get("role")


def _learn(matrix: _Matrix, history: CaseHistory, step: Step) -> None:
    kind, event, state = step.kind, step.event, step.after
    if state is None:
        return
    if kind in ("case_accessed", "break_glass_accessed"):
        disclosed = history.state_at(getattr(event, "case_version", None), step.before)
        if disclosed is None:
            return
        user, unit, role = _person(step, event.actor)
        # A reader who read the same version with the same fields before learned nothing new
        # (the first instant is kept): the common case of a long file, skipped in one lookup.
        fields = tuple(event.fields)
        seen = (user, unit, id(disclosed), fields)
        if seen in matrix.reads:
            return
        matrix.reads.add(seen)
        facts = matrix.read_facts.get((id(disclosed), fields))
        if facts is None:
            facts = _read_facts(disclosed, frozenset(fields))
            matrix.read_facts[(id(disclosed), fields)] = facts
        how = _CHANNEL_HOW.get(channel_of(event), "read")
        matrix.teach(facts, user=user, unit=unit, role=role, step=step, how=how)
        return
    if kind == "clue_reported":
        user, unit, role = _person(step, event.reported_by)
        matrix.teach(_all_facts(state), user=user, unit=unit, role=role, step=step, how="reported")
        return
    if kind == "consultation_held":
        facts = _all_facts(state)
        user, unit, role = _person(step, event.by)
        matrix.teach(facts, user=user, unit=unit, role=role, step=step, how="consultation")
        for participant in event.participants:
            matrix.teach(
                facts, user=None, unit=participant, role=None, step=step, how="consultation"
            )
        return
    if kind == "escalated":
        matrix.escalation_at[state.version] = len(state.escalations)
    authored = _AUTHORED.get(kind)
    if authored is not None:
        user, unit, role = _person(step, event.by)
        matrix.teach(
            authored(event, state), user=user, unit=unit, role=role, step=step, how="reported"
        )
        return
    if kind == "assignment_signed_for":
        user, unit, role = _person(step, event.by)
        matrix.teach(
            [f"assignment:{event.assignment_id}"],
            user=user,
            unit=unit,
            role=role,
            step=step,
            how="signed_for",
        )
        return
    if kind == "assignment_received":
        matrix.teach(
            [f"assignment:{event.assignment_id}"],
            user=None,
            unit=event.unit,
            role=None,
            step=step,
            how="notice_received",
        )
        return
    if kind in ("notice_published", "notice_received"):
        matrix.teach(
            _notice_facts(matrix, event, state),
            user=None,
            unit=event.unit,
            role=None,
            step=step,
            how=kind,
        )


def _notice_facts(matrix: _Matrix, event: Any, state: FileState) -> list[str]:
    """What a notice's body carried (gateway/messaging/relay.py): an assignment or a due-date
    reminder its assignment; an escalation that escalation (its source event's version names
    it); a new clue that the clue exists and its risk level."""
    kind = getattr(event, "kind", None)
    if kind == "new_clue":
        return ["clue", f"risk:{state.risk}"]
    if kind == "case_escalated":
        _, _, version = str(event.source_event).rpartition("/")
        number = matrix.escalation_at.get(int(version)) if version.isdigit() else None
        return [f"escalation:{number}"] if number is not None else []
    if getattr(event, "assignment_id", None):
        return [f"assignment:{event.assignment_id}"]
    return []


_AUTHORED: Final = {
    "reclassified": lambda e, s: [
        *(f"issue:{i['category']}:{i['subtype']}" for i in e.issues),
        f"risk:{e.risk}",
    ],
    "risk_assessed": lambda e, s: [f"risk:{e.level}"],
    "unit_assigned": lambda e, s: [f"assignment:{e.assignment_id}"],
    "escalated": lambda e, s: [f"escalation:{len(s.escalations)}"],
}


def knowledge(history: CaseHistory, *, as_of: datetime | None = None) -> dict[str, Any]:
    """`{"case_id", "as_of", "facts": [{"fact", "label_zh", "known_by": [{"user", "unit",
    "role", "post", "post_label_zh", "first_at", "how", "position"}]}]}`, facts in the order
    first learned; `post` is the post the user held when they first learned it (None for a
    unit, or a user not registered then)."""
    matrix = _Matrix(history)
    for step in history.steps:
        if as_of is not None and step.at > as_of:
            continue
        if step.before is not step.after:
            matrix.note(step.after)
        _learn(matrix, history, step)
    return {
        "case_id": str(history.case_id),
        "as_of": as_of.isoformat() if as_of is not None else None,
        "facts": [
            {
                "fact": fact,
                "label_zh": fact_label(fact, matrix.details.get(fact)),
                "known_by": list(knowers.values()),
            }
            for fact, knowers in matrix.facts.items()
        ],
    }
