"""The pages' routers, in one list (`gateway.web.install` includes them all):

- signin: `/signin`, `/signout`
- home: `/` (the signed-in person's own worklists)
- clues: `/clues/new` (reporting a clue, on a phone)
- ledger: `/ledger` (filters, masked names, audited export, print)
- cases: `/cases/{case_id}` (purpose first, the reader's field set, history) and the
  coordinator's forms under it (consultation, assignment, intervention, follow-up, letter,
  escalation, closure)
- inbox: `/inbox` (a unit's tasks: sign for, decline, report the result)
- workbench: `/investigations` (timeline chart, knowledge matrix, deadlines, findings, report)
- compliance: `/compliance` (findings and review, disclosures for a minor, the annual report)
- users: `/admin/users` (the administrator's users)
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter

from gateway.web.routes import (
    cases,
    clues,
    compliance,
    home,
    inbox,
    ledger,
    signin,
    users,
    workbench,
)

PAGE_ROUTERS: Final[tuple[APIRouter, ...]] = (
    signin.router,
    home.router,
    clues.router,
    ledger.router,
    cases.router,
    inbox.router,
    workbench.router,
    compliance.router,
    users.router,
)
