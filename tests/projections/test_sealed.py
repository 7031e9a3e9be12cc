"""The read models' keys (`projections.sealed`): sealed values open only with their key, for
their table and row; sealing is deterministic (rebuilds compare equal) without two plaintexts
sharing a nonce; tokens depend on the key and the kind of value; a sensitive subtype's token
names its code again; errors never hold the value."""

from __future__ import annotations

import base64
import os

import pytest

from domain.taxonomy import SUBTYPES, Category
from projections.sealed import SENSITIVE_CATEGORIES, ReadModelKeys, SealedValueError

CASE = "5b7f3c7e-0d7e-4a53-9a53-1f0f3f2a9e11"
OTHER_CASE = "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
VALUES = {"school": "金丝雀学校", "village": "canary-village", "age": 12}


@pytest.fixture
def keys() -> ReadModelKeys:
    return ReadModelKeys(os.urandom(32))


def test_a_sealed_value_opens_for_its_row_only(keys: ReadModelKeys) -> None:
    sealed = keys.seal("ledger_cases", CASE, VALUES)
    assert "金丝雀".encode() not in base64.b64decode(sealed)
    assert b"canary" not in base64.b64decode(sealed)
    assert keys.open("ledger_cases", CASE, sealed) == VALUES
    for table, case_id, key in (
        ("ledger_cases", OTHER_CASE, keys),  # moved to another file
        ("report_village", CASE, keys),  # moved to another table
        ("ledger_cases", CASE, ReadModelKeys(os.urandom(32))),  # another key
    ):
        with pytest.raises(SealedValueError) as refused:
            key.open(table, case_id, sealed)
        assert "金丝雀" not in str(refused.value) and "canary" not in str(refused.value)
    tampered = bytearray(base64.b64decode(sealed))
    tampered[-1] ^= 1
    for bad in (base64.b64encode(bytes(tampered)).decode(), "not base64!", "", "AAAA"):
        with pytest.raises(SealedValueError):
            keys.open("ledger_cases", CASE, bad)


def test_sealing_is_deterministic_and_never_reuses_a_nonce(keys: ReadModelKeys) -> None:
    first = keys.seal("ledger_cases", CASE, VALUES)
    assert keys.seal("ledger_cases", CASE, dict(reversed(VALUES.items()))) == first
    nonces = set()
    for n in range(200):
        sealed = base64.b64decode(keys.seal("ledger_cases", CASE, {**VALUES, "age": n}))
        nonces.add(sealed[1:13])
    nonces.add(base64.b64decode(keys.seal("ledger_cases", OTHER_CASE, VALUES))[1:13])
    assert len(nonces) == 201
    # The same key material derives the same keys (a restart reads its own rows).
    master = os.urandom(32)
    assert ReadModelKeys(master).seal("t", CASE, VALUES) == ReadModelKeys(master).seal(
        "t", CASE, VALUES
    )


def test_tokens_depend_on_key_kind_and_value_normalised(keys: ReadModelKeys) -> None:
    token = keys.token("school", "东山村小学")
    assert len(token) == 64 and "东山" not in token
    assert keys.token("school", " 东山村小学 ") == token
    assert keys.token("village", "东山村小学") != token
    assert keys.token("school", "西河村小学") != token
    assert ReadModelKeys(os.urandom(32)).token("school", "东山村小学") != token
    assert ReadModelKeys(os.urandom(32)).key_id != keys.key_id


def test_sensitive_subtypes_are_tokens_that_name_their_code_again(keys: ReadModelKeys) -> None:
    assert {"mental_health", "unlawful_harm"} == SENSITIVE_CATEGORIES
    stored = set()
    for category, codes in SUBTYPES.items():
        for code in codes:
            held = keys.subtype(str(category), code)
            if str(category) in SENSITIVE_CATEGORIES:
                assert held != code and code not in held
                stored.add(held)
            else:
                assert held == code
            assert keys.subtype_code(str(category), held) == code
    # maltreatment (虐待) stands under two categories, held differently under each.
    assert keys.subtype("unlawful_harm", "maltreatment") != "maltreatment"
    assert keys.subtype("growth_environment", "maltreatment") == "maltreatment"
    pairs = [("mental_health", "self_harm"), ("growth_environment", "left_behind")]
    assert keys.issue_pairs(keys.issues(pairs)) == pairs
    assert "self_harm" not in keys.issues(pairs)
    with pytest.raises(SealedValueError):
        ReadModelKeys(os.urandom(32)).subtype_code(
            "mental_health", keys.subtype("mental_health", "self_harm")
        )
    assert len(stored) == sum(len(SUBTYPES[Category(c)]) for c in SENSITIVE_CATEGORIES)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="keys init"):
        ReadModelKeys(b"short")
