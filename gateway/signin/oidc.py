"""OpenID Connect sign-in: the authorization code flow with PKCE (S256), against the provider
the settings name (CASETRAIL_OIDC_*).

`begin` makes a fresh `state`, `nonce` and PKCE `code_verifier`, and returns the provider's
authorization URL (built by authlib's RFC 6749 / RFC 7636 helpers) and the transaction: those
three values sealed (AES-256-GCM, under a key derived from the index key, so that every worker
opens what another sealed) into a short-lived cookie of their own. `finish` opens the
transaction, checks `state` against it, redeems the code at the token endpoint with the
verifier (and the client secret, HTTP Basic, when there is one), and verifies the ID token:
signature by the provider's published keys (JWKS, re-read once for an unknown key id), issuer,
audience, expiry and nonce. It answers the claim the settings map to a casetrail user id; the
registry decides the rest (`CaseTrail.sign_in_external`).

Every refusal is `OidcRefused` with a fixed message (never a token, a code or a claim's value).
Proven against a provider started by the test on loopback (real HTTP, real redirects):
tests/integration/test_oidc.py.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

# How long a sign-in at the provider may take, from `begin` to the callback.
TRANSACTION_SECONDS: Final = 600
HTTP_TIMEOUT: Final = 10.0
ALGORITHMS: Final = ("RS256", "PS256", "ES256", "EdDSA")
SCOPE: Final = "openid profile"


class OidcRefused(Exception):
    """An OIDC sign-in refused; the message is one of a fixed few."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    redirect_uri: str
    user_claim: str


def transaction_key(index_key: bytes) -> bytes:
    """The key OIDC transactions are sealed with, derived from the index key (never stored)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"casetrail oidc transaction v1"
    ).derive(index_key)


class OidcClient:
    def __init__(self, config: OidcConfig, key: bytes) -> None:
        self.config = config
        self._aead = AESGCM(key)
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    # --- the provider's documents -------------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await _get_json(url)
            if found.get("issuer") != self.config.issuer:
                raise OidcRefused("the provider's discovery document names another issuer")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(name), str):
                    raise OidcRefused("the provider's discovery document is incomplete")
            self._metadata = found
        return self._metadata

    async def _key_set(self, *, fresh: bool = False) -> KeySet:
        if self._keys is None or fresh:
            found = await _get_json(str((await self.metadata())["jwks_uri"]))
            try:
                self._keys = KeySet.import_key_set(found)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise OidcRefused("the provider's key set could not be read") from None
        return self._keys

    # --- the flow ---------------------------------------------------------------------------------

    async def begin(self) -> tuple[str, str]:
        """The provider's authorization URL and the sealed transaction (the cookie's value)."""
        metadata = await self.metadata()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)  # 64 characters: RFC 7636 wants 43 to 128
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            self.config.client_id,
            "code",
            redirect_uri=self.config.redirect_uri,
            scope=SCOPE,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        sealed = self._seal(
            {"state": state, "nonce": nonce, "verifier": verifier, "at": int(time.time())}
        )
        return str(url), sealed

    async def finish(self, code: str, state: str, transaction: str | None) -> str:
        """The casetrail user id the provider vouches for, or `OidcRefused`."""
        opened = self._open(transaction)
        if not secrets.compare_digest(str(opened.get("state", "")), state):
            raise OidcRefused("the sign-in's state does not match this browser's; start again")
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_uri,
            "code_verifier": str(opened["verifier"]),
            "client_id": self.config.client_id,
        }
        auth: httpx.Auth | httpx._client.UseClientDefault = (
            httpx.BasicAuth(self.config.client_id, self.config.client_secret)
            if self.config.client_secret
            else httpx.USE_CLIENT_DEFAULT
        )
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                answer = await http.post(
                    str(metadata["token_endpoint"]),
                    data=form,
                    auth=auth,
                    headers={"Accept": "application/json"},
                )
        except httpx.HTTPError:
            raise OidcRefused("the provider's token endpoint could not be reached") from None
        if answer.status_code != 200:
            raise OidcRefused("the provider refused the authorization code")
        try:
            id_token = answer.json()["id_token"]
        except (ValueError, KeyError, TypeError):
            raise OidcRefused("the provider's token answer holds no ID token") from None
        claims = await self._verified(str(id_token), str(opened["nonce"]))
        user = claims.get(self.config.user_claim)
        if not isinstance(user, str) or not user:
            raise OidcRefused("the ID token does not hold the claim that names the user")
        return user

    async def _verified(self, id_token: str, nonce: str) -> dict[str, Any]:
        keys = await self._key_set()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
            except JoseError:
                # The provider may have rotated its keys since we read them: once more, fresh.
                token = jwt.decode(id_token, await self._key_set(fresh=True), list(ALGORITHMS))
            jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError, TypeError):
            raise OidcRefused(
                "the ID token is not valid (signature, issuer, audience, expiry or nonce)"
            ) from None
        return dict(token.claims)

    # --- the sealed transaction -------------------------------------------------------------------

    def _seal(self, values: dict[str, Any]) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, json.dumps(values).encode(), b"oidc")
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def _open(self, transaction: str | None) -> dict[str, Any]:
        if not transaction:
            raise OidcRefused("no sign-in was started in this browser; start again")
        try:
            raw = base64.urlsafe_b64decode(transaction + "=" * (-len(transaction) % 4))
            opened = json.loads(self._aead.decrypt(raw[:12], raw[12:], b"oidc"))
        except (ValueError, InvalidTag):
            raise OidcRefused("the sign-in's transaction is not valid; start again") from None
        if not isinstance(opened, dict) or time.time() - int(opened.get("at", 0)) > (
            TRANSACTION_SECONDS
        ):
            raise OidcRefused("the sign-in took too long; start again")
        return opened


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            answer = await http.get(url, headers={"Accept": "application/json"})
        answer.raise_for_status()
        found = answer.json()
    except (httpx.HTTPError, ValueError):
        raise OidcRefused("the provider's documents could not be read") from None
    if not isinstance(found, dict):
        raise OidcRefused("the provider's documents could not be read")
    return found
