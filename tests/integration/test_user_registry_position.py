"""A user registry's refresh reads only what was stored since it last looked (issue 23): the
position `user_changes_since` reaches is the store's head when no more user events are waiting,
not the last user event's, so that a refresh does not read every event stored since the last
user change (a scan growing with the store: 59% of the API workers' time at 1M events,
bench/README.md "scale"). A user event stored after the head it reached is still read.

Real parts: the test's SQLite or PostgreSQL store, the application's own access events.
"""

from __future__ import annotations

from uuid import uuid4

from domain.access import Actor, Channel, Client, Decision, access_event
from domain.application import CaseTrail
from domain.taxonomy import Purpose, Role
from domain.users import user_stream_id
from gateway.auth import UserRegistry
from gateway.settings import Settings

OPERATOR = {"user": "test", "role": "operator", "unit": "", "street": ""}


def _accesses(count: int) -> list[object]:
    reader = Actor("reader", Role.COORDINATOR, "office", "street-1")
    return [
        access_event(
            Decision(True, "coordinator_same_street", frozenset()),
            case_id=uuid4(),
            actor=reader,
            purpose=Purpose.CONSULTATION,
            request_id=f"r{n}",
            case_version=1,
            channel=Channel.API,
            client=Client("10.0.0.1", "test"),
        )
        for n in range(count)
    ]


def test_a_refresh_reaches_the_head_past_events_of_other_kinds(settings: Settings) -> None:
    app = CaseTrail(env=settings.application_env())
    try:
        first = Actor("first-user", Role.COORDINATOR, "office", "street-1")
        app.ensure_user(first, display_name="一", by=OPERATOR, reason="test")
        app.store_events(_accesses(50))  # type: ignore[arg-type]
        head = app.recorder.max_notification_id()

        changed, reached = app.user_changes_since(0)
        assert [s for s, _ in changed], "the user's events are read"
        assert reached == head, "past the accesses stored after the last user event"
        assert app.user_changes_since(reached) == ([], reached), "nothing new: stays"

        second = Actor("second-user", Role.COORDINATOR, "office", "street-1")
        app.ensure_user(second, display_name="二", by=OPERATOR, reason="test")
        changed, later = app.user_changes_since(reached)
        assert later > reached
        assert {s for s, _ in changed} == {user_stream_id("second-user")}, "read after the head"

        # The registry keeps what it reached: with no overlap, its next refresh starts there.
        registry = UserRegistry(app, refresh_seconds=0, overlap_seconds=0)
        registry.refresh()
        registry.refresh()
        assert registry._positions[0][1] == app.recorder.max_notification_id()
    finally:
        app.close()
