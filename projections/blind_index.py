"""Blind indexes: keyed HMAC values that let a read model find a person by exact name or ID
number without holding either. The key (`index.key`) lives with the service's keys, never in
the database; without it the stored values cannot be tested against guesses.

A name is indexed in the one form the commands store it in (`domain.identity.normalise_name`:
NFC, spaces trimmed and collapsed), so a lookup typed with a decomposed character or stray
spaces finds the file; names with invisible or reordering characters are refused before they
are stored or looked up (`domain.identity.check_name`). Proven over HTTP in
`tests/integration/test_names.py`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from domain.identity import normalise_id_number, normalise_name

_MIN_KEY_BYTES: Final = 32


class BlindIndex:
    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(
                f"the index key must hold at least {_MIN_KEY_BYTES} bytes; "
                "run `casetrail keys init` to create one"
            )
        self._key = key

    def _digest(self, kind: str, value: str) -> str:
        # The kind is part of the message: a name and an ID number never share a value.
        message = f"casetrail/blind-index/v1\x00{kind}\x00{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def id_number(self, id_number: str) -> str:
        return self._digest("id_number", normalise_id_number(id_number))

    def name(self, name: str) -> str:
        return self._digest("name", normalise_name(name))
