"""The commands on findings (issue 15), validated at the edge like every command
(`domain.commands`): bad input is a 422 naming the field, and writes nothing."""

from __future__ import annotations

from domain.commands import Code, Command, Day, Note
from domain.compliance.findings import Outcome


class ReviewFinding(Command):
    outcome: Outcome
    reason: Note


class OpenFollowUp(Command):
    owner: Code
    due_on: Day


class CompleteFollowUp(Command):
    completed_on: Day
    note: Note
