"""The one-event streams' identifiers are RFC 9562 version 7 UUIDs, ordered by time as the
store compares them (as text), with their random part intact (domain/event_ids.py)."""

from __future__ import annotations

from uuid import RFC_4122, UUID

import pytest

from domain.access import Actor, Channel, Client, Decision, access_event
from domain.event_ids import time_ordered_id
from domain.taxonomy import Purpose, Role


def unix_ms_of(identifier: UUID) -> int:
    """The milliseconds a version 7 identifier was made at (its first 48 bits)."""
    if identifier.version != 7:
        raise ValueError("not a time-ordered (version 7) identifier")
    return identifier.int >> 80


# RFC 9562, appendix A.6: the example UUIDv7 and the instant it was made at.
RFC_EXAMPLE = UUID("017F22E2-79B0-7CC3-98C4-DC0C0C07398F")
RFC_EXAMPLE_MS = 0x017F22E279B0


def test_the_layout_is_rfc_9562_version_7() -> None:
    made = time_ordered_id(RFC_EXAMPLE_MS)
    assert made.version == 7 and made.variant == RFC_4122
    assert unix_ms_of(made) == unix_ms_of(RFC_EXAMPLE) == RFC_EXAMPLE_MS
    # The first 48 bits are the milliseconds, as in the RFC's example.
    assert str(made)[:13] == str(RFC_EXAMPLE).lower()[:13] == "017f22e2-79b0"


def test_identifiers_sort_by_time_as_text_and_differ_within_a_millisecond() -> None:
    made = [time_ordered_id(ms) for ms in range(1_700_000_000_000, 1_700_000_000_000 + 500, 7)]
    assert sorted(made, key=str) == made
    same_instant = {time_ordered_id(1_700_000_000_000) for _ in range(1000)}
    assert len(same_instant) == 1000


def test_out_of_range_instants_and_other_versions_are_refused() -> None:
    with pytest.raises(ValueError, match="48 bits"):
        time_ordered_id(1 << 48)
    with pytest.raises(ValueError, match="48 bits"):
        time_ordered_id(-1)
    with pytest.raises(ValueError, match="version 7"):
        unix_ms_of(UUID("9c5b94b1-35ad-49bb-b118-8e8fc24abf80"))


def test_access_events_carry_time_ordered_identifiers() -> None:
    actor = Actor("u-1", Role.COORDINATOR, "", "chengguan-street")
    first, second = (
        access_event(
            Decision(False, "no_case"),
            case_id=UUID(int=1),
            actor=actor,
            purpose=Purpose.FOLLOW_UP,
            request_id=f"req-{n}",
            case_version=None,
            channel=Channel.API,
            client=Client("127.0.0.1", "test"),
        )
        for n in range(2)
    )
    assert first.originator_id.version == second.originator_id.version == 7
    assert unix_ms_of(first.originator_id) <= unix_ms_of(second.originator_id)
    assert abs(unix_ms_of(first.originator_id) - first.timestamp.timestamp() * 1000) < 1000
