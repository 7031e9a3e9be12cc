"""Bearer tokens: Ed25519-signed JWTs naming the user, role, unit and street.

In the embedded default, `casetrail token issue` mints them with the local token-signing key; in
a real deployment an identity provider signs them and its public keys are configured instead
(CASETRAIL_TOKEN_PUBLIC_KEYS). The service only ever verifies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.access import Actor
from domain.refusals import RefusalReason
from domain.taxonomy import Role
from gateway.settings import TOKEN_AUDIENCE, TOKEN_ISSUER

MAX_TTL_SECONDS = 7 * 24 * 3600
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "role", "unit", "street"]
_VERIFIED_CACHE_SIZE = 10_000


class AuthenticationFailed(Exception):
    """The token is missing, malformed, expired or not signed by a trusted key. The message is
    one of a fixed few (never a part of the token); `reason` is what the refusal event records
    (`domain.refusals`)."""

    def __init__(self, message: str, reason: RefusalReason) -> None:
        super().__init__(message)
        self.reason = reason


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


class TokenVerifier:
    def __init__(self, public_keys: Sequence[Ed25519PublicKey]) -> None:
        if not public_keys:
            raise ValueError("at least one token public key is needed")
        self._keys = list(public_keys)
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
        for key in self._keys:
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
