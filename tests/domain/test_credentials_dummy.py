"""The hash verified against when there is no account (`domain.credentials._DUMMY_HASH`) is
written out, not computed at import (issue 23: importing the domain stays fast), so it must
carry the hasher's own parameters: otherwise verifying it would take a different time than a
wrong password for a real account, and the time would tell an unknown user id apart."""

from __future__ import annotations

import pytest
from argon2.exceptions import VerifyMismatchError

from domain.credentials import _DUMMY_HASH, HASHER, MIN_PASSWORD_CHARS, dummy_verify, hash_password


def test_the_dummy_hash_has_the_hashers_parameters() -> None:
    assert not HASHER.check_needs_rehash(_DUMMY_HASH)
    real = hash_password("x" * MIN_PASSWORD_CHARS + "Aa1!")
    # Same algorithm, version, memory, time and parallelism: everything before the salt.
    assert _DUMMY_HASH.rsplit("$", 2)[0] == real.rsplit("$", 2)[0]


def test_the_dummy_hash_is_a_real_hash_that_no_password_opens() -> None:
    with pytest.raises(VerifyMismatchError):
        HASHER.verify(_DUMMY_HASH, "a password someone might try")
    dummy_verify("a password someone might try")  # the same work, nothing raised
