"""Sign-in: a user's credentials (password, TOTP second factor, lockout) and browser sessions,
as events (issue 16, second half).

Two aggregates, both keyed by something other than a random id so that nobody can make a second
one:

- `Credentials`, one per user id (`credentials_stream_id`): `PasswordSet` holds the argon2id
  hash only (never the password, anywhere); `TotpEnrolled` holds the TOTP secret, which the
  store encrypts like every event and which is never answered or logged after enrolment (the
  provisioning URI is shown once, by `casetrail user totp enrol`); every sign-in is recorded,
  `SignInSucceeded` (method, client, the TOTP time step used, so that a code is good once) or
  `SignInFailed` (a reason code and the client: never the password or the code tried);
  `AccountLocked` after `Policy.max_failures` counted failures within `Policy.window`, until
  `Policy.lockout` has passed or an administrator records `AccountUnlocked`.
- `Session`, one per session secret (`session_stream_id`: a uuid5 of the secret's SHA-256; the
  secret itself is only ever in the browser's cookie): `SessionStarted` (user, role, unit,
  street, how, client, idle and absolute limits), `SessionTouched` (the last use, stored at most
  every `touch_interval`), `SessionEnded` (signed out, idle, expired, refused). Ended is final.

A sign-in for a user id without credentials (unknown, or never given a password) stores no
`Credentials` stream: the gateway records it as a throttled `AuthenticationRefused`
(`domain.refusals`, reason `unknown_account`), answers exactly as for a wrong password, and
spends the same argon2 time (`dummy_verify`) so that the time does not tell them apart either.

The rules are pure (the clock is passed in); proven by tests/integration/test_signin.py
(wrong password, lockout, unlock, TOTP required, wrong and replayed, planted secrets absent from
logs, the store's bytes and every answer) and tests/integration/test_signin_sessions.py (cookie,
CSRF, idle and absolute expiry, sign-out, suspended user).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from uuid import UUID, uuid5

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError
from domain.refusals import RefusalReason

Record = dict[str, Any]

_NAMESPACE: Final = UUID("4d0c6b2e-91a7-5f3c-b8e4-6a2d1f7c9e53")

# argon2id with the library's defaults (RFC 9106's second recommended set: 64 MiB, t=3, p=4):
# about 0.2 s per hash on the 2-core test machine. The parameters travel inside each hash, so
# raising them later only needs new hashes, which `needs_rehash` tells.
HASHER: Final = PasswordHasher()
# A hash of nothing anyone knows, verified against when there is no account: the same work as a
# wrong password, so the time taken does not tell an unknown user id from a wrong password.
# Written out rather than hashed at import: hashing costs ~0.2 s (more on a busy machine) in
# every process that imports the domain, `casetrail token issue` included (issue 23). It must
# carry HASHER's parameters, or the work would differ: tests/domain/test_credentials_dummy.py.
_DUMMY_HASH: Final = (
    "$argon2id$v=19$m=65536,t=3,p=4$lav9kYX0s4Sp6MvPCAB2vA"
    "$c+zrzSATOfMEHOZZ1JOraCnafjgaVUxSTi94E/FEZOI"
)

MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_BYTES: Final = 1024
TOTP_DIGITS: Final = 6
TOTP_ISSUER: Final = "casetrail"


class SignInReason(StrEnum):
    """Why a sign-in failed (stored in `SignInFailed`; never shown apart from `totp_required`)."""

    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (a reason code)
    TOTP_REQUIRED = "totp_required"
    WRONG_TOTP = "wrong_totp"
    TOTP_REPLAYED = "totp_replayed"
    NO_PASSWORD = "no_password"  # noqa: S105
    USER_NOT_ADMITTED = "user_not_admitted"
    ROLE_NOT_HELD = "role_not_held"
    ROLE_NOT_CHOSEN = "role_not_chosen"  # several roles held, none chosen (answered 422)


# The failures that count towards a lockout: a guess. A missing code after the right password
# is not a guess (the form asks for it next); a user refused by the registry is not either.
COUNTED: Final = frozenset(
    {SignInReason.WRONG_PASSWORD, SignInReason.WRONG_TOTP, SignInReason.TOTP_REPLAYED}
)


class SessionEndReason(StrEnum):
    SIGNED_OUT = "signed_out"
    IDLE = "idle"
    EXPIRED = "expired"
    USER_REFUSED = "user_refused"


class WeakPassword(DomainError):
    status = 422
    code = "weak_password"


class TotpAlreadyEnrolled(DomainError):
    code = "totp_already_enrolled"


class TotpNotEnrolled(DomainError):
    code = "totp_not_enrolled"


class AccountNotLocked(DomainError):
    code = "account_not_locked"


class NoCredentials(DomainError):
    status = 404
    code = "no_credentials"


SIGN_IN_FAILED: Final = (
    "the user id, password or code is not right, or this account cannot sign in now; check "
    "them and try again later, or ask an administrator"
)


class SignInRefused(DomainError):
    """A sign-in refused. One message whatever the cause (unknown user, wrong password, wrong
    code, locked, suspended), so that the answer does not tell which. `reason` is what was
    recorded; `unrecorded` is the `RefusalReason` the gateway records (throttled) when no event
    of the user's could be (no credentials: unknown user; a locked account)."""

    status = 401
    code = "sign_in_failed"

    def __init__(self, reason: str, *, unrecorded: RefusalReason | None = None) -> None:
        super().__init__(SIGN_IN_FAILED)
        self.reason = reason
        self.unrecorded = unrecorded


class TotpRequired(SignInRefused):
    """The password was right and the account has a second factor: send its code (`totp`)."""

    code = "totp_required"

    def __init__(self) -> None:
        super().__init__(SignInReason.TOTP_REQUIRED)
        self.message = (
            "this account needs the 6-digit code from its authenticator app: send it as `totp`"
        )
        self.field = "totp"


class RoleChoice(DomainError):
    """The secrets were right, but the role asked for is not held, or several are and none was
    chosen."""

    status = 422
    code = "role_choice"


def credentials_stream_id(user_id: str) -> UUID:
    """The aggregate id of a user's credentials: one stream per user id."""
    return uuid5(_NAMESPACE, f"credentials:{user_id}")


def session_digest(secret: str) -> str:
    """The SHA-256 of a session secret (the cookie's value), hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def session_stream_id(secret: str) -> UUID:
    """The aggregate id of a session, from its secret: the store never holds the secret, and
    the id cannot be turned back into it (a uuid5 of its SHA-256)."""
    return uuid5(_NAMESPACE, f"session:{session_digest(secret)}")


def csrf_token(secret: str) -> str:
    """The session's CSRF token: an HMAC of a fixed label under the session secret. Only who
    holds the (HttpOnly) cookie's value can make it, and the server recomputes it from the
    cookie on each request, so it needs no storage and dies with the session."""
    return hmac.new(secret.encode(), b"casetrail csrf v1", hashlib.sha256).hexdigest()


def csrf_matches(secret: str, given: str) -> bool:
    # Bytes: compare_digest refuses a str with non-ASCII characters (TypeError, a 500); such
    # a token is simply wrong. surrogatepass: any str encodes, never raises.
    return hmac.compare_digest(csrf_token(secret).encode(), given.encode("utf-8", "surrogatepass"))


def check_password_strength(password: str) -> None:
    """The password rules: `WeakPassword` (422, field `password`) says which, never echoing."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise WeakPassword(
            f"a password needs at least {MIN_PASSWORD_CHARS} characters", field="password"
        )
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise WeakPassword(
            f"a password is at most {MAX_PASSWORD_BYTES} bytes in UTF-8", field="password"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise WeakPassword("a password may not hold control characters", field="password")


def hash_password(password: str) -> str:
    check_password_strength(password)
    return HASHER.hash(password)


def dummy_verify(password: str) -> None:
    """The work of verifying a password, for an account that does not exist."""
    with suppress(VerificationError, InvalidHashError):
        HASHER.verify(_DUMMY_HASH, password[:MAX_PASSWORD_BYTES])


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, user_id: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS).provisioning_uri(
        name=user_id, issuer_name=TOTP_ISSUER
    )


def totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (30 s) a code is valid for at `now`, allowing one step either way for
    clock drift; None if it is not valid."""
    if not (len(code) == TOTP_DIGITS and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS)
    current = int(now.timestamp()) // totp.interval
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


@dataclass(frozen=True)
class Policy:
    """Lockout: `max_failures` counted failures within `window` lock the account for `lockout`."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class Verdict:
    """What a sign-in attempt came to: `ok`, or the reason it failed. The events it caused are
    pending on the aggregate (stored by the caller)."""

    ok: bool
    reason: SignInReason | None = None
    locked: bool = False
    # The TOTP time step the code was good for (0: no second factor), for `succeeded`.
    totp_step: int = 0


class Credentials(Aggregate):
    """One user's password hash, TOTP secret, recent failures and lock."""

    @staticmethod
    def create_id(user_id: str, **_: Any) -> UUID:
        return credentials_stream_id(user_id)

    @event("CredentialsCreated")
    def __init__(self, *, user_id: str, by: Record) -> None:
        self.user_id = user_id
        self.password_hash: str | None = None
        self.totp_secret: str | None = None
        self.last_totp_step = 0
        # Counted failures since the last success, lock or unlock (their instants).
        self.failures: tuple[datetime, ...] = ()
        self.locked_until: datetime | None = None

    # --- rules ----------------------------------------------------------------------------------

    def set_password(self, password: str, *, by: Record, reason: str) -> None:
        self._password_set(password_hash=hash_password(password), by=by, reason=reason)

    def enrol_totp(self, secret: str, *, by: Record) -> None:
        if self.totp_secret is not None:
            raise TotpAlreadyEnrolled(
                "a TOTP secret is already enrolled; remove it first (casetrail user totp remove)",
                field="totp",
            )
        self._totp_enrolled(secret=secret, by=by)

    def remove_totp(self, *, by: Record, reason: str) -> None:
        if self.totp_secret is None:
            raise TotpNotEnrolled("no TOTP secret is enrolled for this user", field="totp")
        self._totp_removed(by=by, reason=reason)

    def unlock(self, *, by: Record, reason: str, now: datetime) -> None:
        if not self.is_locked(now):
            raise AccountNotLocked("the account is not locked", field="user_id")
        self._unlocked(by=by, reason=reason)

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def attempt(
        self,
        password: str,
        totp_code: str | None,
        *,
        now: datetime,
        policy: Policy,
        client: Record,
    ) -> Verdict:
        """Check a password (and code) against the stored hash (and secret); record the failure
        (and a lock) or leave the success for `succeeded`, which the caller records once the
        registry admitted the user. A locked account is refused without checking the password
        (after the same argon2 work), and nothing is recorded here: the gateway records it,
        throttled."""
        if self.is_locked(now):
            dummy_verify(password)  # the same time as any other refusal
            return Verdict(False, None, locked=True)
        if self.password_hash is None:
            dummy_verify(password)
            return self._failed(SignInReason.NO_PASSWORD, now, policy, client)
        try:
            HASHER.verify(self.password_hash, password[:MAX_PASSWORD_BYTES])
        except (VerificationError, InvalidHashError):
            return self._failed(SignInReason.WRONG_PASSWORD, now, policy, client)
        if self.totp_secret is not None:
            if not totp_code:
                return self._failed(SignInReason.TOTP_REQUIRED, now, policy, client)
            step = totp_step(self.totp_secret, totp_code, now)
            if step is None:
                return self._failed(SignInReason.WRONG_TOTP, now, policy, client)
            if step <= self.last_totp_step:
                return self._failed(SignInReason.TOTP_REPLAYED, now, policy, client)
            return Verdict(True, totp_step=step)
        return Verdict(True)

    def succeeded(
        self, *, method: str, session: UUID, role: str, client: Record, totp_step: int = 0
    ) -> None:
        """Record a sign-in (after `attempt` said ok, with its `totp_step`; or by OIDC)."""
        self._signed_in(
            method=method, session=session, role=role, totp_step=totp_step, client=client
        )

    def refused(self, reason: SignInReason, client: Record, now: datetime) -> None:
        """Record a sign-in whose secrets were right but whose user the registry refused."""
        self._sign_in_failed(reason=str(reason), client=client, at=now)

    def needs_rehash(self) -> bool:
        return self.password_hash is not None and HASHER.check_needs_rehash(self.password_hash)

    def _failed(
        self, reason: SignInReason, now: datetime, policy: Policy, client: Record
    ) -> Verdict:
        self._sign_in_failed(reason=str(reason), client=client, at=now)
        if reason not in COUNTED:
            return Verdict(False, reason)
        recent = [t for t in self.failures if now - t < policy.window]
        self.failures = tuple(recent)
        if len(recent) >= policy.max_failures:
            self._locked(until=now + policy.lockout, failures=len(recent))
            return Verdict(False, reason, locked=True)
        return Verdict(False, reason)

    # --- events ---------------------------------------------------------------------------------

    @event("PasswordSet")
    def _password_set(self, password_hash: str, by: Record, reason: str) -> None:
        self.password_hash = password_hash

    @event("TotpEnrolled")
    def _totp_enrolled(self, secret: str, by: Record) -> None:
        self.totp_secret = secret
        self.last_totp_step = 0

    @event("TotpRemoved")
    def _totp_removed(self, by: Record, reason: str) -> None:
        self.totp_secret = None

    @event("SignInSucceeded")
    def _signed_in(
        self, method: str, session: UUID, role: str, totp_step: int, client: Record
    ) -> None:
        self.failures = ()
        self.last_totp_step = max(self.last_totp_step, totp_step)

    @event("SignInFailed")
    def _sign_in_failed(self, reason: str, client: Record, at: datetime) -> None:
        if reason in COUNTED:
            self.failures = (*self.failures, at)

    @event("AccountLocked")
    def _locked(self, until: datetime, failures: int) -> None:
        self.locked_until = until
        self.failures = ()

    @event("AccountUnlocked")
    def _unlocked(self, by: Record, reason: str) -> None:
        self.locked_until = None
        self.failures = ()

    def describe(self) -> Record:
        """What an administrator may know: whether there is a password and a second factor,
        and the lock. Never the hash or the secret."""
        return {
            "user_id": self.user_id,
            "password": self.password_hash is not None,
            "totp": self.totp_secret is not None,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
        }


# --- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionLimits:
    """A session ends after `idle` without a request, and `absolute` after it started,
    whichever comes first. The last use is stored at most every `touch_interval` (idle/10): a
    session ends between `idle - touch_interval` and `idle` after its last request."""

    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)

    @property
    def touch_interval(self) -> timedelta:
        return self.idle / 10


class Session(Aggregate):
    """A browser's signed-in session: who it acts as, and until when."""

    @staticmethod
    def create_id(secret_digest: str, **_: Any) -> UUID:
        return uuid5(_NAMESPACE, f"session:{secret_digest}")

    @event("SessionStarted")
    def __init__(
        self,
        *,
        secret_digest: str,
        user_id: str,
        role: str,
        unit: str,
        street: str,
        method: str,
        client: Record,
        idle_seconds: float,
        started_at: datetime,
        expires_at: datetime,
    ) -> None:
        # The digest makes the id (create_id) and is not kept: the id alone names the session.
        self.user_id = user_id
        self.role = role
        self.unit = unit
        self.street = street
        self.method = method
        self.idle = timedelta(seconds=idle_seconds)
        self.expires_at = expires_at
        self.last_used = started_at
        self.ended: str | None = None

    @classmethod
    def start(
        cls,
        secret: str,
        *,
        user_id: str,
        role: str,
        unit: str,
        street: str,
        method: str,
        client: Record,
        limits: SessionLimits,
        now: datetime,
    ) -> Session:
        return cls(
            secret_digest=session_digest(secret),
            user_id=user_id,
            role=role,
            unit=unit,
            street=street,
            method=method,
            client=client,
            idle_seconds=limits.idle.total_seconds(),
            started_at=now,
            expires_at=now + limits.absolute,
        )

    def end_reason_at(self, now: datetime) -> SessionEndReason | None:
        """Why the session is over at `now` without anyone ending it (None: it is not)."""
        if now >= self.expires_at:
            return SessionEndReason.EXPIRED
        if now - self.last_used >= self.idle:
            return SessionEndReason.IDLE
        return None

    def use(self, now: datetime) -> bool:
        """A request at `now`: stores the use (True) when the last stored one is older than the
        touch interval. The caller checked `end_reason_at` first."""
        if now - self.last_used >= self.idle / 10:
            self._touched(at=now)
            return True
        return False

    def end(self, reason: SessionEndReason) -> None:
        if self.ended is None:
            self._ended(reason=str(reason))

    @event("SessionTouched")
    def _touched(self, at: datetime) -> None:
        self.last_used = at

    @event("SessionEnded")
    def _ended(self, reason: str) -> None:
        self.ended = reason


class SessionCache:
    """The sessions one process has loaded, each brought up to date at its next use by reading
    only the events stored since (one indexed query, usually empty) instead of its whole stream:
    a session gains a `SessionTouched` every tenth of its idle limit, up to 240 in 12 hours.
    A change stored by another worker (a sign-out) is read at the next use, so nothing is
    cached but what the store says. Uses of one session take turns (a lock per stripe)."""

    def __init__(self, size: int = 10_000, stripes: int = 64) -> None:
        self._found: OrderedDict[UUID, Session] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self._stripes = tuple(threading.Lock() for _ in range(stripes))

    def stripe(self, key: UUID) -> threading.Lock:
        return self._stripes[hash(key) % len(self._stripes)]

    def take(self, key: UUID) -> Session | None:
        """The cached session, removed (put it back once its changes are stored)."""
        with self._lock:
            return self._found.pop(key, None)

    def put(self, key: UUID, session: Session) -> None:
        with self._lock:
            self._found[key] = session
            while len(self._found) > self._size:
                self._found.popitem(last=False)


CREDENTIAL_EVENT_CLASSES: Final = (
    Credentials.CredentialsCreated,  # type: ignore[attr-defined]
    Credentials.PasswordSet,  # type: ignore[attr-defined]
    Credentials.TotpEnrolled,  # type: ignore[attr-defined]
    Credentials.TotpRemoved,  # type: ignore[attr-defined]
    Credentials.SignInSucceeded,  # type: ignore[attr-defined]
    Credentials.SignInFailed,  # type: ignore[attr-defined]
    Credentials.AccountLocked,  # type: ignore[attr-defined]
    Credentials.AccountUnlocked,  # type: ignore[attr-defined]
)
SESSION_EVENT_CLASSES: Final = (
    Session.SessionStarted,  # type: ignore[attr-defined]
    Session.SessionTouched,  # type: ignore[attr-defined]
    Session.SessionEnded,  # type: ignore[attr-defined]
)
