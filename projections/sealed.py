"""The read models' own keys: sealed (encrypted) columns and keyed tokens for filtered ones.

Guarantee: no value a read model only displays (school, village, gender, age, masked name and
ID number, the issues) is stored in clear: it is sealed with AES-256-GCM, bound to its table
and the row's case id as associated data, so that a sealed value copied into another row or
table does not open. Values a query filters on but that identify a child or reveal a sensitive
category (school, village; the subtypes of the mental-health and unlawful-harm categories) are
stored as keyed HMAC-SHA-256 tokens, and the query hashes its value the same way. Proven by
`tests/projections/test_readmodel_privacy.py` (byte search of the SQLite file and its WAL and of
the PostgreSQL tables for planted values) and `tests/projections/test_sealed.py`.

The keys are derived from the blind-index key (`index.key`, which `casetrail keys init`
creates) with HKDF-SHA-256 under labels of their own: one key to seal, one to make the
deterministic nonces, one for tokens. No new key file, so a store made before needs nothing new
to start; the keys never enter the database, only `key_id` (a one-way digest) does, so that a
read model built under another key is noticed and rebuilt (`projections.readmodels`).

Sealing is deterministic: the nonce is an HMAC of the associated data and the plaintext (a
synthetic IV, as in SIV modes). The same value sealed for the same row gives the same bytes, so
a rebuild gives exactly the rows incremental following gave; two different plaintexts never
share a nonce (but for a 2^-96 chance per pair), which is what AES-GCM needs. What it gives away
is that a row's sealed value did not change between two writes: nothing an observer of the
table could not see anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.access import FIELDS, Sensitivity
from domain.identity import normalise_name
from domain.taxonomy import SUBTYPES
from projections.follower import Db, Dialect

_MIN_KEY_BYTES: Final = 32
_LABEL: Final = b"casetrail/read-model/v1/"
_FORMAT: Final = 1  # first byte of a sealed value: the layout below
_NONCE_BYTES: Final = 12

# Categories whose subtypes are sensitive (domain.access.FIELDS): filtered on, so tokens.
SENSITIVE_CATEGORIES: Final = frozenset(
    str(category)
    for category in SUBTYPES
    if FIELDS.get(f"issues.{category}") is Sensitivity.SENSITIVE
)


class SealedValueError(ValueError):
    """A sealed value does not open with this key: the key changed or the value was moved."""


def _derive(master: bytes, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL + purpose.encode()
    ).derive(master)


class ReadModelKeys:
    """The read models' keys, derived from `master` (the blind-index key)."""

    def __init__(self, master: bytes) -> None:
        if len(master) < _MIN_KEY_BYTES:
            raise ValueError(
                f"the read models' key must hold at least {_MIN_KEY_BYTES} bytes; "
                "run `casetrail keys init` to create the index key it is derived from"
            )
        self._aead = AESGCM(_derive(master, "seal"))
        self._nonce_key = _derive(master, "nonce")
        self._token_key = _derive(master, "token")
        # Stored beside the tables, to notice a key change; reveals nothing of the keys.
        self.key_id = _derive(master, "key-id")[:8].hex()
        self._subtypes: Mapping[tuple[str, str], str] = MappingProxyType(
            {
                (category, self.token("subtype", f"{category}\x00{code}")): code
                for category in SENSITIVE_CATEGORIES
                for code in SUBTYPES[category]  # type: ignore[index]
            }
        )

    # --- tokens (filtered columns) --------------------------------------------------------------

    def token(self, kind: str, value: str) -> str:
        """A keyed HMAC-SHA-256 of `value` (normalised), distinct for each kind of value."""
        message = b"token\x00" + kind.encode() + b"\x00" + normalise_name(value).encode()
        return hmac.new(self._token_key, message, hashlib.sha256).hexdigest()

    def subtype(self, category: str, subtype: str) -> str:
        """How `ledger_issues` and the reports hold a subtype: the code itself for the
        operational categories, a token for the sensitive ones."""
        if category in SENSITIVE_CATEGORIES:
            return self.token("subtype", f"{category}\x00{subtype}")
        return subtype

    def subtype_code(self, category: str, stored: str) -> str:
        """The subtype code `subtype()` stored as `stored`."""
        if category not in SENSITIVE_CATEGORIES:
            return stored
        try:
            return self._subtypes[(category, stored)]
        except KeyError:
            raise SealedValueError(
                "a subtype token of the read models was made with another key: rebuild them "
                "(`casetrail projections rebuild all`)"
            ) from None

    def issues(self, pairs: Sequence[Sequence[str]]) -> str:
        """(category, subtype) pairs as stored JSON, sensitive subtypes as tokens."""
        return json.dumps([[c, self.subtype(c, s)] for c, s in pairs], ensure_ascii=False)

    def issue_pairs(self, stored: str) -> list[tuple[str, str]]:
        return [(c, self.subtype_code(c, s)) for c, s in json.loads(stored)]

    # --- sealed columns (displayed only) --------------------------------------------------------

    def _associated(self, table: str, case_id: str) -> bytes:
        return _LABEL + b"sealed\x00" + table.encode() + b"\x00" + case_id.encode()

    def seal(self, table: str, case_id: str, values: Mapping[str, Any]) -> str:
        """`values` (JSON-able) sealed for one row of `table`, as base64 text."""
        plain = _json(values)
        associated = self._associated(table, case_id)
        nonce = hmac.new(self._nonce_key, associated + b"\x00" + plain, hashlib.sha256).digest()
        nonce = nonce[:_NONCE_BYTES]
        sealed = self._aead.encrypt(nonce, plain, associated)
        return base64.b64encode(bytes([_FORMAT]) + nonce + sealed).decode()

    def open(self, table: str, case_id: str, sealed: str) -> dict[str, Any]:
        try:
            raw = base64.b64decode(sealed, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) <= 1 + _NONCE_BYTES or raw[0] != _FORMAT:
            raise SealedValueError(
                f"a sealed value of {table} is not in the read models' format: rebuild them "
                "(`casetrail projections rebuild all`)"
            )
        nonce, body = raw[1 : 1 + _NONCE_BYTES], raw[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, body, self._associated(table, case_id))
        except InvalidTag:
            raise SealedValueError(
                f"a sealed value of {table} does not open with this key for its row (the key "
                "changed, or the value was moved): rebuild the read models "
                "(`casetrail projections rebuild all`)"
            ) from None
        # `json`, not orjson: orjson reads an integer past 64 bits as a float, losing digits.
        found: dict[str, Any] = json.loads(plain)
        return found


def _json(values: Mapping[str, Any]) -> bytes:
    """`values` as JSON text, keys sorted (a row's sealed value is the same for the same values:
    a rebuild writes the bytes incremental following wrote). orjson takes a tenth of `json`'s
    time, which the access log's view pays per access event (bench/README.md, "eleventh
    round"); what it refuses (a key that is not text, an integer past 64 bits) `json` writes."""
    try:
        return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(values, ensure_ascii=False, sort_keys=True).encode()


class KeyedDb(Db):
    """A read model's reading transaction, with the keys of the store it reads: queries hash
    their filter values and open sealed columns with them."""

    def __init__(
        self, cursor: Any, dialect: Dialect, schema: str | None = None, *, keys: ReadModelKeys
    ) -> None:
        super().__init__(cursor, dialect, schema)
        self.keys = keys

    @classmethod
    def of(cls, db: Db, keys: ReadModelKeys) -> KeyedDb:
        return cls(db.cursor, db.dialect, db.schema, keys=keys)
