"""The investigation workbench's analyses (一案一倒查): pure functions over one case's events.

Public functions, their final signatures (the report and the HTTP routes build on these):

    gather(log: EventLog, case_id: UUID) -> CaseHistory
        # history.py: one scan of the store, the case's stream, the access events naming it,
        # its notices, deadline facts, investigation orders and break-glass reviews, in
        # stored order, each with the file's state before and after (`Step`, `FileState`).
        # `EventLog` is a Protocol: `notifications(start=1, topics=(), batch=500)` and
        # `mapper`; `domain.application.CaseTrail` satisfies it.
    history_of(case_id: UUID, events: Iterable[tuple[int, Any]]) -> CaseHistory
        # history.py: the same from events already selected and decoded, with their store
        # positions, in stored order (a bundle's records; tests).
    timeline(history: CaseHistory, *, as_of: datetime | None = None) -> dict[str, Any]
        # timeline.py: {"case_id", "as_of", "entries": [{"at", "position", "kind",
        #   "label_zh", "actor": {"user", "role", "unit", "street"} | None, "details": {...},
        #   "state": {"before": {"status", "status_label_zh", "risk", "risk_label_zh"} | None,
        #   "after": {...}}}], "erased_records": <the file's events unreadable, issue 19>}
    knowledge(history: CaseHistory, *, as_of: datetime | None = None) -> dict[str, Any]
        # knowledge.py: {"case_id", "as_of", "facts": [{"fact", "label_zh", "known_by":
        #   [{"user", "unit", "role", "first_at", "how", "position"}]}]}
    deadlines(history: CaseHistory, *, now: datetime,
              consultation_due: timedelta = timedelta(hours=24),
              sign_for_due: timedelta | None = None) -> dict[str, Any]
        # deadlines.py: {"case_id", "now", "consultation_due_hours", "found_on",
        #   "milestones": [{"step", "label_zh", "at", "position", "hours_since_found",
        #                   ("assignment_id", "unit")}],
        #   "checks": [{"duty", "label_zh", "assignment_id", "quarter", "due_at", "done_at",
        #               "position", "status", "status_label_zh", "unit", "person"}]}
    labels.kind_label, role_label, risk_label, status_label, issue_label, function_label,
    unit_type_label, fact_label; KIND_LABELS, HOW_LABELS, ROLE_LABELS, CHANNEL_LABELS,
    PURPOSE_LABELS, DUTY_LABELS, STEP_LABELS, STATUS_LABELS
        # labels.py: `label_zh` for every code above (the taxonomy's labels where it has them)

`TIMELINE_FIELDS`, `KNOWLEDGE_FIELDS`, `DEADLINE_FIELDS`: what each answer discloses of the file
(field names of `domain.access`), the fields its access event records.

Nothing here decides or records an access: the HTTP routes reach these through the one reader
(`gateway.http.reader.AuditedReader.timeline`, `.knowledge`, `.deadlines`), which records the
read first. The answers carry codes, dates, unit codes and user ids: never a name, an ID
number, a description, a note or a reason.
"""

from __future__ import annotations

from projections.investigation.deadlines import DEADLINE_FIELDS, deadlines
from projections.investigation.history import (
    CaseHistory,
    EventLog,
    FileState,
    Step,
    gather,
    history_of,
)
from projections.investigation.knowledge import KNOWLEDGE_FIELDS, knowledge
from projections.investigation.timeline import TIMELINE_FIELDS, timeline

__all__ = [
    "DEADLINE_FIELDS",
    "KNOWLEDGE_FIELDS",
    "TIMELINE_FIELDS",
    "CaseHistory",
    "EventLog",
    "FileState",
    "Step",
    "deadlines",
    "gather",
    "history_of",
    "knowledge",
    "timeline",
]
