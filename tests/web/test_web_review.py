"""The review of the web front end (issue 18): each defect found, as a test that failed before
its fix, HTML-level on both stores (the `client` and `auth` fixtures) unless a browser is needed.

- a re-rendered form never repeats a submitted value, not even as a field's name in the error
  summary (the assignment form named a unit's function field after the unit typed);
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.web.test_case_pages import FORM, GOVERNANCE, Store, store

__all__ = ["store"]  # the case pages' fixture, used here too

# A value no page holds: found in an answer, it was repeated from what was submitted.
PLANTED = "zqxjplanted-unit"


def test_the_assignment_form_does_not_name_a_field_after_a_unit_typed(
    client: TestClient, auth: TokenFactory, store: Store
) -> None:
    before = store.events()
    answer = client.post(
        f"/cases/{store.case_id}/assignments",
        headers={**auth(Role.COORDINATOR, GOVERNANCE), **FORM},
        content=f"unit={PLANTED}&function=bogus&task=t&due_on=2030-01-01".encode(),
    )
    assert answer.status_code == 422
    assert PLANTED not in answer.text
    assert 'data-field="function"' in answer.text
    assert store.events() == before
