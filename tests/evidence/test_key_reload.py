"""Key rotation without a restart (issue 21): a process that meets a key it does not hold reads
its key files again, and a writer follows the rotated key.

Two applications over one store stand for two processes (each its own cipher, key table and
connections; nothing is shared but the store and the key files): A opens on the old keys, the
real `casetrail keys rotate` runs, B opens on the new ones and writes; A reads B's events without
a restart, then writes with the new key itself. The same for the key-encryption key (a case
file's data key wrapped only by the new KEK). And a key that truly is unknown is still refused,
with a message that says the files were read again and what to do.
"""

from __future__ import annotations

import re

import pytest

from domain.application import CaseTrail
from gateway import bootstrap, keyring
from gateway.settings import Settings
from gateway.store import eventstore
from gateway.store.eventstore import KeyMismatchError
from tests.evidence.test_key_rotation import _ok, _read_all, _write, run


def _new_format_1_ids(application: CaseTrail, before: int) -> set[str]:
    return {i.hex() for i in _read_all(application)[before:]}


def test_a_running_process_reads_and_follows_a_rotated_event_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_id = keyring.event_key_ids(settings.keys_dir)[0]
    a = bootstrap.open_application(settings)  # "process A": on the old keyring until told
    try:
        _write(a, 2)
        _ok(run(settings, "keys", "rotate", "--event"))
        new_id = keyring.event_key_ids(settings.keys_dir)[0]
        assert new_id != old_id

        b = bootstrap.open_application(settings)  # "process B": started after the rotation
        try:
            seen = len(_read_all(b))
            _write(b, 2)
            assert _new_format_1_ids(b, seen) == {new_id}
        finally:
            b.close()

        # A meets B's key id: it reads the key file again and every event reads.
        ids = {i.hex() for i in _read_all(a)}
        assert ids == {old_id, new_id}

        # A writes with the new key from now on (it looks at the file at most once a second:
        # no wait here, the reload above already switched it).
        seen = len(_read_all(a))
        _write(a, 1)
        assert _new_format_1_ids(a, seen) == {new_id}
    finally:
        a.close()

    # A writer that read nothing new converges too, at its next look at the file.
    monkeypatch.setattr(eventstore, "RELOAD_SECONDS", 0.0)
    writer = bootstrap.open_application(settings)
    try:
        _ok(run(settings, "keys", "rotate", "--event"))
        newest = keyring.event_key_ids(settings.keys_dir)[0]
        seen = len(_read_all(writer))
        _write(writer, 1)
        assert _new_format_1_ids(writer, seen) == {newest}
    finally:
        writer.close()


def test_a_running_process_opens_data_keys_wrapped_by_a_rotated_kek(settings: Settings) -> None:
    a = bootstrap.open_application(settings)
    try:
        _write(a, 1)
        _ok(rotated := run(settings, "keys", "rotate", "--kek"))
        found = re.search(r"key-encryption key ([0-9a-f]{8})", rotated.stdout)
        assert found is not None, rotated.stdout
        b = bootstrap.open_application(settings)
        try:
            # B's new case files get data keys wrapped by the new KEK only.
            _write(b, 2)
        finally:
            b.close()
        a_view = a.recorder.select_notifications(start=0, limit=100_000)
        assert any(n.state[:1] == b"\x02" for n in a_view)  # there are data-key events to open
        _read_all(a)  # raises if one cannot be opened
        # And A wraps its own new data keys under the new KEK.
        _write(a, 1)
    finally:
        a.close()
    fresh = bootstrap.open_application(settings)
    try:
        cipher = fresh.mapper.cipher
        assert isinstance(cipher, eventstore.BoundAESGCMCipher)
        wraps = cipher.data_keys._rows(
            "SELECT DISTINCT kek_id FROM data_key_wraps w WHERE NOT EXISTS (SELECT 1 FROM "
            "data_key_wraps o WHERE o.key_id = w.key_id AND o.kek_id <> w.kek_id)",
            [],
        )
        # Every key made after the rotation is wrapped by the new KEK alone.
        assert {row[0] for row in wraps} == {found.group(1)}
    finally:
        fresh.close()


def test_a_key_that_truly_is_unknown_is_still_refused_clearly(settings: Settings) -> None:
    a = bootstrap.open_application(settings)
    try:
        _write(a, 1)
        current = keyring.load_event_keys(settings.keys_dir, None).texts
        foreign = eventstore.new_key_text()
        # A writer with a key no file holds (given by the variable, as an operator could).
        stranger_settings = Settings.from_env(
            {
                "CASETRAIL_HOME": str(settings.home),
                "CASETRAIL_DATABASE_URL": settings.database_url,
                "CASETRAIL_EVENT_KEY": ",".join([foreign, *current]),
            }
        )
        stranger = bootstrap.open_application(stranger_settings)
        try:
            _write(stranger, 1)
        finally:
            stranger.close()
        foreign_id = eventstore.key_id(eventstore.decode_key(foreign)).hex()
        for _ in range(2):  # the second time without reading the file (rate-limited): same
            with pytest.raises(KeyMismatchError) as refused:
                _read_all(a)
            message = str(refused.value)
            assert f"key id {foreign_id}, which is not configured" in message
            assert "was read again and does not hold it" in message
            assert "from the offline backup" in message
    finally:
        a.close()
