"""Bearer tokens: Ed25519-signed JWTs naming the user, role, unit and street.

In the embedded default, `casetrail token issue` mints them with the local token-signing key; in
a real deployment an identity provider signs them and its public keys are configured instead
(CASETRAIL_TOKEN_PUBLIC_KEYS). The service only ever verifies.

A verified token gets in only if its user may (issue 16): `UserRegistry.check` admits a token
whose `sub` is a registered, active user (`domain.users.User`) holding the token's role, in the
token's unit and street. Each API process keeps a snapshot of the users it has seen, refreshed
from the store's user events when it is `DEFAULT_REFRESH_SECONDS` (2 s) old or older, before
the check that would use it; a user not in the snapshot is looked up in the store at once (a
user registered a moment ago gets in at once). So a suspension or a revoked grant is refused
on every process by every check made 2 s or more after it was stored. Proven by
tests/integration/test_users.py and, on the two workers of `casetrail serve --workers 2`,
tests/integration/test_users_workers.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.access import Actor
from domain.refusals import RefusalReason
from domain.retention import DataErased
from domain.taxonomy import Role
from domain.users import UnknownUser, User, user_stream_id
from gateway.settings import TOKEN_AUDIENCE, TOKEN_ISSUER

MAX_TTL_SECONDS = 7 * 24 * 3600
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "role", "unit", "street"]
_VERIFIED_CACHE_SIZE = 10_000


class AuthenticationFailed(Exception):
    """The token is missing, malformed, expired or not signed by a trusted key. The message is
    one of a fixed few (never a part of the token); `reason` is what the refusal event records
    (`domain.refusals`)."""

    def __init__(self, message: str, reason: RefusalReason, user: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        # The verified token's user, for the registry's refusals (recorded; "" otherwise).
        self.user = user


def issue_token(
    key: Ed25519PrivateKey,
    *,
    user: str,
    role: Role,
    unit: str,
    street: str,
    ttl_seconds: int = 8 * 3600,
) -> str:
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"--ttl must be between 1 and {MAX_TTL_SECONDS} seconds")
    now = int(time.time())
    claims = {
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "sub": user,
        "role": str(role),
        "unit": unit,
        "street": street,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="EdDSA")


# A token no key verifies makes the verifier load its keys again, at most this often: a
# token signed by a key rotated in after this process started (`casetrail keys rotate
# --token`) is accepted without a restart, and a flood of forged tokens costs one reload.
_RELOAD_SECONDS: Final = 5.0


class TokenVerifier:
    """Verifies tokens with every configured public key: the current one and, after a rotation,
    the old ones still in their grace period (`gateway.keyring.token_public_key_paths`).
    `reload` gives the keys as they are now (tests/evidence/test_key_rotation.py)."""

    def __init__(
        self,
        public_keys: Sequence[Ed25519PublicKey],
        reload: Callable[[], Sequence[Ed25519PublicKey]] | None = None,
    ) -> None:
        if not public_keys:
            raise ValueError("at least one token public key is needed")
        self._keys = list(public_keys)
        self._reload = reload
        self._reloaded_at = float("-inf")
        # Tokens already verified, with their expiry: a client sends the same token with every
        # request, and an Ed25519 check costs about 0.25 ms here. Only the exact token string
        # (signature included) hits, and only until its `exp`.
        self._verified: dict[str, tuple[Actor, float]] = {}

    def verify(self, token: str) -> Actor:
        found = self._verified.get(token)
        if found is not None and time.time() < found[1]:
            return found[0]
        actor, expires = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (actor, expires)
        return actor

    def _verify(self, token: str) -> tuple[Actor, float]:
        try:
            return self._verify_with(token, self._keys)
        except AuthenticationFailed as exc:
            if exc.reason is not RefusalReason.UNTRUSTED_SIGNATURE or not self._reload_due():
                raise
        self._keys = list(self._reload()) if self._reload is not None else self._keys
        return self._verify_with(token, self._keys)

    def _reload_due(self) -> bool:
        if self._reload is None or time.monotonic() - self._reloaded_at < _RELOAD_SECONDS:
            return False
        self._reloaded_at = time.monotonic()
        return True

    def _verify_with(self, token: str, keys: Sequence[Ed25519PublicKey]) -> tuple[Actor, float]:
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    audience=TOKEN_AUDIENCE,
                    issuer=TOKEN_ISSUER,
                    options={"require": _REQUIRED_CLAIMS},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise AuthenticationFailed(
                    "the token has expired; ask for a new one", RefusalReason.EXPIRED
                ) from None
            except jwt.DecodeError:
                # The library's message may quote bytes of the token: never passed on.
                raise AuthenticationFailed(
                    "the token is not a well-formed JWT; send the token as issued",
                    RefusalReason.MALFORMED,
                ) from None
            except jwt.PyJWTError:
                raise AuthenticationFailed(
                    "the token's claims are not valid here (issuer, audience, times or a "
                    "required claim); ask for a new one",
                    RefusalReason.INVALID_CLAIMS,
                ) from None
            try:
                role = Role(claims["role"])
            except ValueError:
                raise AuthenticationFailed(
                    "the token names an unknown role", RefusalReason.UNKNOWN_ROLE
                ) from None
            actor = Actor(
                user=str(claims["sub"]),
                role=role,
                unit=str(claims["unit"]),
                street=str(claims["street"]),
            )
            return actor, float(claims["exp"])
        raise AuthenticationFailed(
            "the token is not valid: its signature was not made by a trusted key",
            RefusalReason.UNTRUSTED_SIGNATURE,
        )


# --- the user registry (issue 16) ---------------------------------------------------------------

DEFAULT_REFRESH_SECONDS: Final = 2.0
# A refresh reads the user events stored since the position it had reached this long ago, not
# only since the last one: on PostgreSQL a later notification id may commit before an earlier
# one (projections/follower.py), and an event committed late below the last position read must
# not be passed over. Only user events are read, and only the users seen are reloaded.
OVERLAP_SECONDS: Final = 30.0
# Users remembered at once (a flood of tokens for many unknown users must not grow a process).
MAX_REMEMBERED: Final = 50_000


class UserStore(Protocol):
    """What the registry reads of the store (`domain.application.CaseTrail`)."""

    def user_at(self, stream_id: UUID) -> User: ...

    def user_changes_since(
        self, position: int, limit: int = 1000
    ) -> tuple[list[tuple[UUID, int]], int]: ...


@dataclass(frozen=True)
class Standing:
    """What the registry remembers of a user: enough to admit or refuse a token, no name."""

    user_id: str
    registered: bool
    active: bool = False
    roles: frozenset[Role] = frozenset()
    unit: str = ""
    street: str = ""
    version: int = 0

    @classmethod
    def of(cls, user: User) -> Standing:
        return cls(
            user_id=user.user_id,
            registered=True,
            active=user.active,
            roles=user.roles,
            unit=user.unit,
            street=user.street,
            version=user.version,
        )


def refusal_of(standing: Standing, actor: Actor) -> AuthenticationFailed | None:
    """Why a token for this actor is refused, given the user's standing (None: admitted). The
    messages name the rule, never the user."""
    if not standing.registered:
        return AuthenticationFailed(
            "the token's user is not registered; ask an administrator to register you "
            "(casetrail user add)",
            RefusalReason.UNREGISTERED_USER,
            actor.user,
        )
    if not standing.active:
        return AuthenticationFailed(
            "the token's user is suspended; ask an administrator",
            RefusalReason.USER_SUSPENDED,
            actor.user,
        )
    if actor.role not in standing.roles:
        return AuthenticationFailed(
            "the token's user does not hold the token's role (not granted, or revoked); ask "
            "for a token with a role you hold",
            RefusalReason.ROLE_NOT_HELD,
            actor.user,
        )
    if (actor.unit, actor.street) != (standing.unit, standing.street):
        return AuthenticationFailed(
            "the token's unit or street is not the user's; ask for a new token",
            RefusalReason.UNIT_MISMATCH,
            actor.user,
        )
    return None


class UserRegistry:
    """Which users may get in, as of at most `refresh_seconds` ago (see the module docstring).

    `due(user)` says whether `check()` would read the store first (a miss, or the snapshot is
    older than `refresh_seconds`), so that an event loop calls it in a thread only then; a
    check on a fresh hit is a dictionary lookup. Thread-safe."""

    def __init__(
        self,
        store: UserStore,
        *,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        overlap_seconds: float = OVERLAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.refresh_seconds = refresh_seconds
        self._overlap = overlap_seconds
        self._clock = clock
        self._known: dict[UUID, Standing] = {}
        self._lock = threading.Lock()
        self._refreshed_at = float("-inf")
        # (when, position reached): the refresh reads from the oldest one within the overlap.
        self._positions: deque[tuple[float, int]] = deque([(clock(), 0)])

    def due(self, user: str) -> bool:
        return (
            self._clock() - self._refreshed_at >= self.refresh_seconds
            or user_stream_id(user) not in self._known
        )

    def check(self, actor: Actor, *, refresh: bool = True) -> None:
        """Raise `AuthenticationFailed` unless the actor's user may get in with this token.
        `refresh=False` (after `due()` said no) never refreshes: the event loop's path."""
        if refresh and self._clock() - self._refreshed_at >= self.refresh_seconds:
            self.refresh()
        stream_id = user_stream_id(actor.user)
        standing = self._known.get(stream_id)
        if standing is None:
            standing = self._look_up(stream_id, actor.user)
        refused = refusal_of(standing, actor)
        if refused is not None:
            raise refused

    def recheck(self, actor: Actor) -> None:
        """`check` against that one user read from the store now, not the snapshot: what a
        refusal by the snapshot (up to `refresh_seconds` old) is confirmed with before it is
        answered or a session is ended, so that a grant or a reinstatement made a moment ago
        is not refused. Reads the store: call it off the event loop."""
        standing = self._look_up(user_stream_id(actor.user), actor.user)
        refused = refusal_of(standing, actor)
        if refused is not None:
            raise refused

    def standing(self, user: str) -> Standing:
        """The user's standing as the registry knows it now (reads the store on a miss)."""
        stream_id = user_stream_id(user)
        return self._known.get(stream_id) or self._look_up(stream_id, user)

    def _look_up(self, stream_id: UUID, user: str) -> Standing:
        try:
            standing = Standing.of(self._store.user_at(stream_id))
        except (UnknownUser, DataErased):  # an erased user record (issue 19) is no user
            # Remembered as unknown too, so that a flood of one unknown user does not read the
            # store each time; a registration is seen by the next refresh.
            standing = Standing(user_id=user, registered=False)
        self._remember(stream_id, standing)
        return standing

    def _remember(self, stream_id: UUID, standing: Standing) -> None:
        with self._lock:
            if len(self._known) >= MAX_REMEMBERED and stream_id not in self._known:
                self._known.clear()  # rebuilt by lookups: only the cost of them is lost
            current = self._known.get(stream_id)
            if current is None or current.version <= standing.version:
                self._known[stream_id] = standing

    def refresh(self) -> None:
        """Read the user events stored since the position reached `overlap_seconds` ago and
        reload each remembered user one of them changed."""
        with self._lock:
            now = self._clock()
            if now - self._refreshed_at < self.refresh_seconds:
                return  # another thread refreshed meanwhile
            while len(self._positions) > 1 and now - self._positions[1][0] >= self._overlap:
                self._positions.popleft()
            position = self._positions[0][1]
            latest: dict[UUID, int] = {}
            while True:
                changed, reached = self._store.user_changes_since(position)
                for stream_id, version in changed:
                    latest[stream_id] = max(version, latest.get(stream_id, 0))
                if reached == position:
                    break
                position = reached
            stale = [
                stream_id
                for stream_id, version in latest.items()
                if (known := self._known.get(stream_id)) is not None and known.version < version
            ]
        for stream_id in stale:
            known = self._known.get(stream_id)
            if known is not None:
                self._look_up(stream_id, known.user_id)
        with self._lock:
            if position > self._positions[-1][1]:
                self._positions.append((now, position))
            self._refreshed_at = now
