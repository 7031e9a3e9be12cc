"""Refused authentications: recorded as events, at a bounded rate.

A request whose bearer token is missing, malformed, expired, forged or names an unknown role is
refused (401) before anyone is known; it is still a fact a reverse investigation (一案一倒查) may
need ("someone tried to open this file with a forged token at 02:14"). So each refusal is
stored as an `AuthenticationRefused` event before the answer leaves, holding why it was refused,
the route template, the case id the path named (if any), the client's address and the request
id, and never anything of the token itself.

A flood of bad tokens must not fill the store: `RefusalThrottle` admits at most one event per
(client, reason) every `per_source_seconds`, and at most `burst` events per second over all
sources. A refusal not stored is counted, and the count is carried by the next event stored for
its source (`suppressed`), so the record says how many there were even when it does not hold
each one. The rule is pure (the clock is passed in); proven by tests/domain/test_refusals.py,
and end to end by tests/integration/test_refused_authentication.py.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import DomainEvent

from domain.event_ids import time_ordered_id


class RefusalReason(StrEnum):
    MISSING = "missing"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    UNTRUSTED_SIGNATURE = "untrusted_signature"
    INVALID_CLAIMS = "invalid_claims"
    UNKNOWN_ROLE = "unknown_role"
    # The token is well signed, but its user may not get in (issue 16, gateway.auth.UserRegistry):
    # not registered, suspended, not holding the token's role, or of another unit or street.
    UNREGISTERED_USER = "unregistered_user"
    USER_SUSPENDED = "user_suspended"
    ROLE_NOT_HELD = "role_not_held"
    UNIT_MISMATCH = "unit_mismatch"
    # Sign-in and browser sessions (issue 16, domain.credentials): a sign-in for a user id with
    # no credentials, or for a locked account; a session cookie that names no live session; a
    # state-changing request with a session cookie but without its CSRF token; an OIDC sign-in
    # refused (bad state, token or ID token, or a subject that is no registered user).
    UNKNOWN_ACCOUNT = "unknown_account"
    ACCOUNT_LOCKED = "account_locked"
    SESSION_INVALID = "session_invalid"
    CSRF_FAILED = "csrf_failed"
    OIDC_REFUSED = "oidc_refused"


class AuthenticationRefused(DomainEvent):
    """A request was refused before its sender was known. No token content is kept."""

    reason: str
    method: str
    route: str
    case_id: UUID | None
    client: str
    request_id: str
    # Refusals from the same source (client, reason, user) not stored since the previous event.
    suppressed: int
    # The registered (or unregistered) user id a verified token named, for the registry's
    # refusals (unregistered_user, user_suspended, role_not_held, unit_mismatch); "" when none
    # is known, and in events stored before this field (they read back with the default).
    user: str = ""


def refusal_event(
    *,
    reason: RefusalReason,
    method: str,
    route: str,
    case_id: UUID | None,
    client: str,
    request_id: str,
    suppressed: int,
    user: str = "",
) -> AuthenticationRefused:
    values: dict[str, Any] = {
        "originator_id": time_ordered_id(),
        "originator_version": 1,
        "timestamp": DomainEvent.create_timestamp(),
        "reason": str(reason),
        "method": method,
        "route": route,
        "case_id": case_id,
        "client": client,
        "request_id": request_id,
        "suppressed": suppressed,
        "user": user,
    }
    return AuthenticationRefused(**values)


PER_SOURCE_SECONDS: Final = 10.0
BURST_PER_SECOND: Final = 20
# Sources remembered at once; the least recently seen is forgotten first (its pending count is
# then lost, which only a flood from more than this many sources at once can cause).
MAX_SOURCES: Final = 10_000


@dataclass
class _Source:
    last_stored: float
    pending: int = 0


@dataclass
class RefusalThrottle:
    """Which refusals to store. `admit()` returns None (count it, store nothing) or the number
    of refusals of this source suppressed since its last stored event (store one, carrying it).
    Not thread-safe: one per event loop (the HTTP worker's)."""

    per_source_seconds: float = PER_SOURCE_SECONDS
    burst: int = BURST_PER_SECOND
    max_sources: int = MAX_SOURCES
    _sources: OrderedDict[tuple[str, str, str], _Source] = field(default_factory=OrderedDict)
    _second: float = -1.0
    _stored_this_second: int = 0

    def admit(self, client: str, reason: RefusalReason, now: float, user: str = "") -> int | None:
        key = (client, str(reason), user)
        source = self._sources.get(key)
        if source is not None:
            self._sources.move_to_end(key)
            if now - source.last_stored < self.per_source_seconds:
                source.pending += 1
                return None
        if int(now) != self._second:
            self._second, self._stored_this_second = int(now), 0
        if self._stored_this_second >= self.burst:
            if source is None:
                source = self._remember(key, last_stored=float("-inf"))
            source.pending += 1
            return None
        self._stored_this_second += 1
        if source is None:
            self._remember(key, last_stored=now)
            return 0
        suppressed, source.pending, source.last_stored = source.pending, 0, now
        return suppressed

    def _remember(self, key: tuple[str, str, str], *, last_stored: float) -> _Source:
        while len(self._sources) >= self.max_sources:
            self._sources.popitem(last=False)
        source = self._sources[key] = _Source(last_stored)
        return source
