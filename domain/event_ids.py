"""Identifiers of the one-event streams: access events, refused commands, refused sign-ins.

Every read stores an access event, each a stream of its own, so most of the store's streams are
these. Their identifiers are time-ordered (RFC 9562 version 7: 48 bits of Unix time in
milliseconds, then 74 random bits), not random (version 4): the store's index of streams
(originator id, version) then takes each new one at its end, where the pages just written
already are, instead of at a random place in an index that grows with every read (a random
insert writes one more page per event to the WAL and, on a large store, reads a page that is
not cached). The time an identifier carries is the event's own, which the event records anyway;
74 random bits keep identifiers unguessable. Files (case streams) keep random identifiers.

Proven by tests/domain/test_event_ids.py (the layout, the order); what it saves in
bench/README.md ("Targets, 2026-12-03, sixth round").
"""

from __future__ import annotations

import secrets
import time
from typing import Final
from uuid import UUID

_VERSION: Final = 0x7
_VARIANT: Final = 0b10  # RFC 9562 (and RFC 4122) variant


def time_ordered_id(unix_ms: int | None = None) -> UUID:
    """A version 7 UUID for now (or for `unix_ms`, milliseconds since the Unix epoch)."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    if not 0 <= ms < 1 << 48:
        raise ValueError("unix_ms must fit in 48 bits")
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    value = (ms << 80) | (_VERSION << 76) | (rand_a << 64) | (_VARIANT << 62) | rand_b
    return UUID(int=value)
