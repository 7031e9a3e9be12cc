"""The registry's refusals name the token's user (issue 16 review), over real HTTP on SQLite
and PostgreSQL:

- a refused token of a user not registered, or holding not the token's role, stores an
  `AuthenticationRefused` with that user id (an opaque code), and the throttle keys by
  (client, reason, user): two users refused from one address within the throttle's window are
  each stored, not one counted into the other;
- an `AuthenticationRefused` stored before the field existed (no `user` in its state) reads
  back with `user == ""` (and the store of before issue 12 still reads: test_stored_topics.py).
"""

from __future__ import annotations

from copy import copy

from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.refusals import AuthenticationRefused, RefusalReason, refusal_event
from domain.taxonomy import Role
from gateway.settings import Settings
from tests.integration.test_users import _token


def _app(client: TestClient) -> CaseTrail:
    found: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
    return found


def test_registry_refusals_name_the_user_and_are_throttled_per_user(
    client: TestClient, settings: Settings
) -> None:
    for user in ("ghost-1", "ghost-2", "ghost-1"):
        refused = client.get("/v1/users", headers=_token(settings, user, Role.REPORTER))
        assert refused.status_code == 401, refused.text
        assert user not in refused.text
    stored = sorted(
        (e.reason, e.user, e.suppressed) for e in _app(client).authentication_refusals()
    )
    # The second ghost-1 is within the window: counted into ghost-1's next event, not stored.
    assert stored == [
        ("unregistered_user", "ghost-1", 0),
        ("unregistered_user", "ghost-2", 0),
    ]


def test_a_refusal_stored_without_a_user_reads_back_with_an_empty_one(client: TestClient) -> None:
    app = _app(client)
    event = refusal_event(
        reason=RefusalReason.MALFORMED,
        method="GET",
        route="/v1/users",
        case_id=None,
        client="127.0.0.1",
        request_id="r-1",
        suppressed=0,
    )
    # As before the field existed: the same event with no `user` in its stored state.
    old = copy(event)
    del old.__dict__["user"]
    app.recorder.insert_events([app.mapper.to_stored_event(old)])
    [read] = app.authentication_refusals()
    assert isinstance(read, AuthenticationRefused)
    assert (read.reason, read.user) == ("malformed", "")
