"""Key rotation in the middle of a run (issue 21): `casetrail keys rotate --service | --token |
--event` while the service's application, evidence maintainer and token verifier are open.

Afterwards every event still reads, new events carry the new event key id (the running
application's too: it follows event.key, tests/evidence/test_key_reload.py), checkpoints verify
across the signing-key change (from the new key, from the old key, and a unit's file of old
checkpoints), old tokens verify during their grace and new ones at once; and what must fail
does: a checkpoint signed by the retired key after its announcement, a forged announcement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import commands as cmd
from domain.application import CaseTrail
from domain.taxonomy import Purpose, Role
from gateway import bootstrap, keyring
from gateway.auth import MAX_TTL_SECONDS, AuthenticationFailed, issue_token
from gateway.cli.main import cli as main_cli
from gateway.evidence.verification import verify_store
from gateway.settings import Settings
from gateway.store import eventstore
from projections.evidence.checkpoints import Checkpoint, CheckpointStore, key_id
from projections.evidence.rotation import Announcement, AnnouncementStore, KeyChain, raw
from tests.evidence.helpers import REPORTER, cli, write_checkpoints
from tests.integration.planted import planted_case


def _write(application: CaseTrail, cases: int) -> None:
    for _ in range(cases):
        case_id = application.report_clue(
            cmd.ReportClue.model_validate(planted_case().body), REPORTER
        )
        application.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-rotation")


def _read_all(application: CaseTrail) -> list[bytes]:
    """Every stored event decrypted (raises if one cannot be); the event key ids of those under
    an event key (format 1: a format-2 header names a file's data key, issue 19)."""
    notifications = application.recorder.select_notifications(start=0, limit=100_000)
    for notification in notifications:
        application.mapper.to_domain_event(notification)
    return [bytes(n.state[1:5]) for n in notifications if n.state[:1] == b"\x01"]


def _ok(result: object) -> None:
    assert getattr(result, "returncode", None) == 0, getattr(result, "stderr", result)


@dataclass
class _Ran:
    returncode: int
    stdout: str
    stderr: str


def run(settings: Settings, *args: str) -> _Ran:
    """The command in this process (the real entry point's commands, the settings from the
    environment); `cli` runs it as a process of its own, for the one that must be."""
    environ = {
        "CASETRAIL_HOME": str(settings.home),
        "CASETRAIL_DATABASE_URL": settings.database_url,
    }
    result = CliRunner().invoke(main_cli, list(args), env=environ, catch_exceptions=False)
    return _Ran(result.exit_code, result.stdout, result.stderr)


def test_rotation_in_the_middle_of_a_run(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The running application looks at the key file at every encryption instead of once a
    # second: what it writes right after the rotation is then known (`eventstore`'s docstring).
    monkeypatch.setattr(eventstore, "RELOAD_SECONDS", 0.0)
    keys_dir = settings.keys_dir
    old_event_id = keyring.event_key_ids(keys_dir)[0]
    old_service = keyring.load_private_key(keys_dir / keyring.SERVICE_KEY, "key")
    old_token_key = keyring.load_private_key(keys_dir / keyring.TOKEN_KEY, "key")

    application = bootstrap.open_application(settings)
    evidence = bootstrap.open_evidence(settings, application)  # reloads its key, as served
    verifier = bootstrap.token_verifier(settings)
    try:
        _write(application, 3)
        before = [evidence.checkpoint_now()]
        _write(application, 2)
        before.append(evidence.checkpoint_now())
        old_token = issue_token(
            old_token_key,
            user="u-1",
            role=Role.REPORTER,
            unit="dongshan-village",
            street="chengguan-street",
        )

        rotated_at = len(_read_all(application))
        # --- the three rotations, by the real command, while all of that is open ----------------
        _ok(service := cli(settings, "keys", "rotate", "--service"))
        assert "announced key" in service.stdout
        _ok(run(settings, "keys", "rotate", "--token"))
        _ok(event := run(settings, "keys", "rotate", "--event"))
        new_event_id = keyring.event_key_ids(keys_dir)[0]
        assert new_event_id != old_event_id and new_event_id in event.stdout
        assert keyring.event_key_ids(keys_dir)[1] == old_event_id  # kept for reading

        # The running application follows event.key (issue 21): it writes with the new key.
        _write(application, 2)
        assert {i.hex() for i in _read_all(application)[rotated_at:]} == {new_event_id}
        # The running maintainer signs the next checkpoint with the announced key.
        after = evidence.checkpoint_now()
        new_service = keyring.load_public_key(keys_dir / keyring.SERVICE_PUB, "pub")
        assert after.key_id == key_id(new_service) != key_id(old_service.public_key())
        assert evidence.signing_key.public_key() == new_service

        # Tokens: the old one in its grace period, a new one at once (no restart).
        assert verifier.verify(old_token).user == "u-1"
        new_token_key = keyring.load_private_key(keys_dir / keyring.TOKEN_KEY, "key")
        new_token = issue_token(
            new_token_key,
            user="u-2",
            role=Role.REPORTER,
            unit="dongshan-village",
            street="chengguan-street",
        )
        assert verifier.verify(new_token).user == "u-2"
    finally:
        evidence.close()
        application.close()

    # --- a restarted process: writes with the new event key, reads every event ---------------
    restarted = bootstrap.open_application(settings)
    try:
        _write(restarted, 2)
        ids = _read_all(restarted)
        assert {i.hex() for i in ids[:rotated_at]} == {old_event_id}
        assert {i.hex() for i in ids[rotated_at:]} == {new_event_id}
        written_after = len(ids) - rotated_at
    finally:
        restarted.close()
    _ok(status := run(settings, "keys", "status"))
    lines = status.stdout.splitlines()
    assert written_after > 0
    assert any(
        new_event_id in line and f"{written_after} stored events" in line for line in lines
    ), lines
    assert any(old_event_id in line and f"{rotated_at} stored events" in line for line in lines)
    assert any("verifies tokens (grace)" in line for line in lines)
    assert "days ago" in status.stdout

    # --- checkpoints verify across the change ---------------------------------------------------
    _ok(run(settings, "checkpoint", "create"))
    _ok(verified := run(settings, "verify"))
    assert "signing key changed 1 time(s)" in verified.stdout
    retired_pub = keys_dir / f"service-signing.{key_id(old_service.public_key())}.pub"
    unit_file = write_checkpoints(tmp_path / "unit.json", before)
    _ok(run(settings, "verify", "--public-key", str(retired_pub), "--checkpoint", str(unit_file)))
    _ok(run(settings, "verify", "--checkpoint", str(unit_file)))

    # --- and what must fail, fails --------------------------------------------------------------
    unkeyed = bootstrap.open_unkeyed(settings)
    try:
        store = CheckpointStore(unkeyed.recorder)
        latest = store.latest()
        assert latest is not None
        # Whoever still holds the retired key may not extend the log.
        store.add(
            Checkpoint.sign(old_service, seq=latest.seq + 1, size=latest.size, root=latest.root)
        )
        report = verify_store(unkeyed.recorder, new_service)
        assert not report.intact
        assert "retired at checkpoint" in report.summary()
    finally:
        unkeyed.close()
    refused = run(settings, "verify")
    assert refused.returncode == 1 and "retired at checkpoint" in refused.stdout


def test_a_forged_announcement_links_nothing(settings: Settings) -> None:
    """An announcement must be signed by the old key: one made by someone holding only a new
    key does not make its checkpoints verify."""
    application = bootstrap.open_application(settings)
    evidence = bootstrap.open_evidence(settings, application)
    try:
        _write(application, 2)
        first = evidence.checkpoint_now()
        trusted = evidence.signing_key.public_key()
        intruder, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        forged_checkpoint = Checkpoint.sign(
            intruder, seq=first.seq + 1, size=first.size, root=first.root
        )
        # Signed by the intruder for both roles, naming the trusted key as the old one.
        forged = Announcement.sign(forged_checkpoint, intruder, stranger)
        forged = Announcement(
            forged.checkpoint,
            raw(trusted),
            forged.new_key,
            forged.old_signature,
            forged.new_signature,
        )
        AnnouncementStore(application.recorder).add(forged)
        chain = KeyChain.build(trusted, AnnouncementStore(application.recorder).all())
        assert chain.problems and "invalid" in chain.problems[0]
        report = verify_store(application.recorder, trusted)
        assert not report.intact
        assert any("invalid" in f.message for f in report.findings)
    finally:
        evidence.close()
        application.close()


def test_an_old_token_key_past_its_grace_verifies_nothing(home: Path) -> None:
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    old_key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "key")
    token = issue_token(
        old_key,
        user="u-1",
        role=Role.REPORTER,
        unit="dongshan-village",
        street="chengguan-street",
    )
    keyring.rotate_token_key(settings.keys_dir, 0)
    assert settings.token_public_key_paths == (settings.keys_dir / keyring.TOKEN_PUB,)
    with pytest.raises(AuthenticationFailed, match="trusted key"):
        bootstrap.token_verifier(settings).verify(token)
    # The default grace is the longest a token lives.
    assert keyring.TOKEN_GRACE_SECONDS == MAX_TTL_SECONDS
    history = json.loads((settings.keys_dir / keyring.HISTORY).read_text())
    assert [e["kind"] for e in history["keys"]] == ["token", "token"]
