"""Verified tokens are remembered until their expiry, and only the exact token string hits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from domain.taxonomy import Role
from gateway import keyring
from gateway.auth import AuthenticationFailed, TokenVerifier, issue_token


def test_a_remembered_token_still_expires_and_a_forged_one_never_hits(tmp_path: Path) -> None:
    keyring.init_keys(tmp_path)
    key = keyring.load_private_key(tmp_path / keyring.TOKEN_KEY, "token key")
    verifier = TokenVerifier([keyring.load_public_key(tmp_path / keyring.TOKEN_PUB, "pub")])
    token = issue_token(key, user="u-1", role=Role.REPORTER, unit="x", street="s", ttl_seconds=1)
    assert verifier.verify(token).user == "u-1"
    assert verifier.verify(token).user == "u-1"  # remembered
    # Same header and claims, another signature: not the remembered string, so verified.
    head, body, signature = token.split(".")
    with pytest.raises(AuthenticationFailed):
        verifier.verify(f"{head}.{body}.{signature[::-1]}")
    # Past its exp, the remembered token is verified again, and refused as expired.
    time.sleep(2.1)
    with pytest.raises(AuthenticationFailed, match="expired"):
        verifier.verify(token)
