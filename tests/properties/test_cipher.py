"""The store's event cipher (`gateway.store.eventstore`, AES-256-GCM bound to each event's place)
round-trips any state and refuses any changed byte (issue 22, Properties).

For any plaintext and any place (stream id, version, topic): decrypting what was encrypted gives
the plaintext back; changing any one byte of the stored state (format, key id, nonce,
ciphertext or tag), cutting it short, or reading it at another place is refused with
`EventIntegrityError` (a changed key id: its subclass `KeyMismatchError`), never a wrong
plaintext. The same through the mapper the store uses, on the case file's real events, and
across a key rotation (the old key still decrypts, in second place). The byte-exact
construction is checked against fixed vectors in tests/specs/test_event_cipher_vectors.py;
these are the random counterparts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from domain import commands as cmd
from domain.case import Case
from gateway.store.eventstore import (
    ENV_CIPHER_KEYS,
    HEADER_SIZE,
    KEY_ID_SIZE,
    BoundAESGCMCipher,
    BoundMapper,
    EventIntegrityError,
    KeyMismatchError,
    associated_data,
    new_key_text,
)
from tests.domain.builders import COORDINATOR, new_case
from tests.properties.conftest import bounded

KEY, OLD_KEY = new_key_text(), new_key_text()

places = st.tuples(st.uuids(), st.integers(min_value=1, max_value=2**31), st.text(max_size=80))
plaintexts = st.binary(max_size=1024)


def cipher(*keys: str) -> BoundAESGCMCipher:
    return BoundAESGCMCipher({ENV_CIPHER_KEYS: ",".join(keys)})  # type: ignore[arg-type]


def mapper(*keys: str) -> BoundMapper:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return BoundMapper(transcoder=transcoder, cipher=cipher(*keys))


def aad(place: tuple[UUID, int, str]) -> bytes:
    return associated_data(*place)


@given(plaintext=plaintexts, place=places)
@bounded()
def test_any_state_round_trips(plaintext: bytes, place: tuple[UUID, int, str]) -> None:
    sealed = cipher(KEY).encrypt(plaintext, aad(place))
    assert len(sealed) == HEADER_SIZE + len(plaintext) + 16
    assert cipher(KEY).decrypt(sealed, aad(place)) == plaintext
    # Rotation: a new key first, the old one still opens what it sealed.
    assert cipher(new_key_text(), KEY).decrypt(sealed, aad(place)) == plaintext


@given(plaintext=plaintexts, place=places, data=st.data())
@bounded()
def test_any_changed_byte_is_refused(
    plaintext: bytes, place: tuple[UUID, int, str], data: st.DataObject
) -> None:
    sealed = cipher(KEY).encrypt(plaintext, aad(place))
    index = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1), label="index")
    flip = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    changed = bytearray(sealed)
    changed[index] ^= flip
    expected = KeyMismatchError if 1 <= index < 1 + KEY_ID_SIZE else EventIntegrityError
    with pytest.raises(expected):
        cipher(KEY).decrypt(bytes(changed), aad(place))


@given(plaintext=plaintexts, place=places, data=st.data())
@bounded()
def test_a_state_cut_short_or_lengthened_is_refused(
    plaintext: bytes, place: tuple[UUID, int, str], data: st.DataObject
) -> None:
    sealed = cipher(KEY).encrypt(plaintext, aad(place))
    cut = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1), label="length")
    with pytest.raises(EventIntegrityError):
        cipher(KEY).decrypt(sealed[:cut], aad(place))
    extra = data.draw(st.binary(min_size=1, max_size=32), label="extra")
    with pytest.raises(EventIntegrityError):
        cipher(KEY).decrypt(sealed + extra, aad(place))


@given(plaintext=plaintexts, place=places, other=places)
@bounded()
def test_a_state_read_at_another_place_is_refused(
    plaintext: bytes, place: tuple[UUID, int, str], other: tuple[UUID, int, str]
) -> None:
    sealed = cipher(KEY).encrypt(plaintext, aad(place))
    if aad(other) == aad(place):
        return
    with pytest.raises(EventIntegrityError):
        cipher(KEY).decrypt(sealed, aad(other))
    # And another key never opens it, even one configured beside the right one's absence.
    with pytest.raises(KeyMismatchError):
        cipher(OLD_KEY).decrypt(sealed, aad(place))


# --- through the store's mapper, on the case file's real events -----------------------------------


notes = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]),
    min_size=8,
    max_size=200,
).filter(lambda t: len(t.strip()) >= 8)


def events_with(note: str) -> list[Any]:
    case: Case = new_case()
    case.escalate(cmd.Escalate(reason=note), by=COORDINATOR.as_record())
    return list(case.collect_events())


@given(note=notes, data=st.data())
@bounded(max_examples=30)
def test_the_mapper_round_trips_case_events_and_refuses_a_changed_byte(
    note: str, data: st.DataObject
) -> None:
    to_store = mapper(KEY)
    for event in events_with(note):
        stored = to_store.to_stored_event(event)
        # Nothing readable at rest (eight characters: too long to turn up by chance).
        assert note.strip().encode() not in stored.state
        back = mapper(new_key_text(), KEY).to_domain_event(stored)
        assert vars(back) == vars(event)
        # A position as a share of the length: the events' sizes vary from one run to the next
        # (synthetic names), the drawn values must not.
        index = data.draw(st.integers(min_value=0, max_value=2**20)) % len(stored.state)
        changed = bytearray(stored.state)
        changed[index] ^= data.draw(st.integers(min_value=1, max_value=255))
        with pytest.raises(EventIntegrityError):
            to_store.to_domain_event(replace(stored, state=bytes(changed)))
        # Moved to the next version of its stream: refused too.
        moved = replace(stored, originator_version=stored.originator_version + 1)
        with pytest.raises(EventIntegrityError):
            to_store.to_domain_event(moved)
