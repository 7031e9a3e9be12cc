"""The refusal throttle (domain.refusals): which refused authentications are stored, and that
every refusal not stored is counted into a later event of its source."""

from __future__ import annotations

from domain.refusals import RefusalReason, RefusalThrottle

BAD = RefusalReason.UNTRUSTED_SIGNATURE


def test_one_event_per_source_and_reason_per_window_carrying_the_count() -> None:
    throttle = RefusalThrottle(per_source_seconds=10, burst=100)
    assert throttle.admit("10.0.0.1", BAD, now=100.0) == 0
    assert [throttle.admit("10.0.0.1", BAD, now=100.0 + i / 10) for i in range(50)] == [None] * 50
    # Another reason, another client: sources of their own.
    assert throttle.admit("10.0.0.1", RefusalReason.EXPIRED, now=101.0) == 0
    assert throttle.admit("10.0.0.2", BAD, now=101.0) == 0
    # The window over, the next one is stored and says how many were not.
    assert throttle.admit("10.0.0.1", BAD, now=110.0) == 50
    assert throttle.admit("10.0.0.1", BAD, now=110.5) is None
    assert throttle.admit("10.0.0.1", BAD, now=120.0) == 1


def test_a_flood_from_many_sources_is_capped_per_second_and_counted() -> None:
    throttle = RefusalThrottle(per_source_seconds=10, burst=5)
    stored = [throttle.admit(f"10.0.{i // 256}.{i % 256}", BAD, now=200.2) for i in range(40)]
    assert [s for s in stored if s is not None] == [0] * 5
    # Next second: the capped sources get their turn, each carrying its one refusal.
    later = [throttle.admit(f"10.0.{i // 256}.{i % 256}", BAD, now=201.2) for i in range(5, 40)]
    assert [s for s in later if s is not None] == [1] * 5
    # Those capped twice carry both refusals when their turn comes.
    third = [throttle.admit(f"10.0.0.{i}", BAD, now=202.2) for i in range(10, 15)]
    assert third == [2] * 5


def test_sources_are_bounded_in_memory() -> None:
    throttle = RefusalThrottle(per_source_seconds=10, burst=10**9, max_sources=100)
    for i in range(1000):
        throttle.admit(f"client-{i}", BAD, now=float(i))
    assert len(throttle._sources) == 100
