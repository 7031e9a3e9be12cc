"""The key-encryption key (KEK, `keys/data-keys.kek`) has a rotation of its own: `keys rotate
--kek` wraps every live data key under a new KEK, `keys retire-kek` drops the old KEK's wraps
and the key itself; then a copy of the key table taken before (a backup, a dead row) opens no
data key with any key the service still holds, while every file still reads. SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from domain import commands as cmd
from domain.access import Actor
from domain.taxonomy import Role
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.settings import Settings
from gateway.store.datakeys import unwrap
from gateway.store.eventstore import BoundAESGCMCipher, decode_key, key_id
from tests.integration.planted import planted_case

REPORTER = Actor("user-1", Role.REPORTER, "dongshan-village", "chengguan-street")
CASETRAIL = str(Path(sys.executable).with_name("casetrail"))


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    environ |= {
        "CASETRAIL_HOME": str(settings.home),
        "CASETRAIL_DATABASE_URL": settings.database_url,
    }
    return subprocess.run(
        [CASETRAIL, "keys", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wraps(settings: Settings) -> list[tuple[Any, ...]]:
    application = open_application(settings)
    try:
        cipher = application.mapper.cipher
        assert isinstance(cipher, BoundAESGCMCipher)
        return cipher.data_keys._rows(
            "SELECT w.key_id, w.kek_id, w.wrapped, k.stream_id FROM data_key_wraps w "
            "JOIN data_keys k ON k.key_id = w.key_id",
            [],
        )
    finally:
        application.close()


def _every_key(settings: Settings) -> list[bytes]:
    keys_dir = settings.keys_dir
    texts = keyring.load_event_keys(keys_dir, None).texts + keyring.load_keks(keys_dir)
    return [decode_key(t) for t in texts]


def test_rotating_and_retiring_the_kek(settings: Settings) -> None:
    assert (settings.keys_dir / keyring.KEK).exists()
    first_kek = key_id(decode_key(keyring.load_keks(settings.keys_dir)[0])).hex()
    application = open_application(settings)
    try:
        ids = [
            application.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
            for _ in range(3)
        ]
    finally:
        application.close()
    before = _wraps(settings)
    # The files' keys are wrapped by the KEK, not by the event key.
    assert {w[1] for w in before} == {first_kek}

    rotated = _cli(settings, "rotate", "--kek")
    assert rotated.returncode == 0, rotated.stderr
    assert "3 rewrapped" in rotated.stdout
    new_kek = key_id(decode_key(keyring.load_keks(settings.keys_dir)[0])).hex()
    assert new_kek != first_kek

    retired = _cli(settings, "retire-kek", first_kek)
    assert retired.returncode == 0, retired.stderr
    assert {w[1] for w in _wraps(settings)} == {new_kek}
    assert first_kek not in [
        key_id(decode_key(t)).hex() for t in keyring.load_keks(settings.keys_dir)
    ]

    # Every file still reads with what the service holds now.
    application = open_application(settings)
    try:
        assert [application.repository.get(i).id for i in ids] == ids
    finally:
        application.close()
    # The wraps a backup kept open with no key the service still holds.
    for data_key_id, _, wrapped, stream in before:
        for key in _every_key(settings):
            with pytest.raises(InvalidTag):
                unwrap(key, bytes.fromhex(data_key_id), stream, bytes(wrapped))


def test_retiring_refuses_the_current_kek_and_a_bad_id(settings: Settings) -> None:
    current = key_id(decode_key(keyring.load_keks(settings.keys_dir)[0])).hex()
    refused = _cli(settings, "retire-kek", current)
    assert refused.returncode == 2
    assert "rotate first" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bad = _cli(settings, "retire-kek", "not-hex")
    assert bad.returncode == 2
    assert "not-hex" not in bad.stderr
