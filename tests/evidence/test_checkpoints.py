"""Checkpoints: signed every N events or T seconds, refused over a rewritten tree, served with
proofs over HTTP, checked offline. The relay sends them to units (tests/messaging)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from domain import commands as cmd
from domain.application import CaseTrail
from domain.taxonomy import Purpose, Role
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.evidence.maintainer import (
    Evidence,
    EvidenceConfigError,
    EvidenceSettings,
    TreeInconsistent,
    signed_at,
)
from gateway.evidence.verification import check_proof, verify_store
from gateway.http.app import create_app
from gateway.settings import Settings
from projections.evidence.checkpoints import parse_checkpoints
from projections.evidence.log import StoredRecord
from tests.conftest import TokenFactory
from tests.evidence.helpers import REPORTER, Tamper, cli, first_line, populate
from tests.integration.planted import planted_case


@contextmanager
def evidence_for(settings: Settings, **policy: float) -> Iterator[tuple[CaseTrail, Evidence]]:
    application = open_application(settings)
    key = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    evidence = Evidence(application, key, EvidenceSettings(**policy))  # type: ignore[arg-type]
    try:
        yield application, evidence
    finally:
        evidence.close()
        application.close()


def _store_events(application: CaseTrail, pairs: int) -> None:
    for _ in range(pairs):
        case_id = application.report_clue(
            cmd.ReportClue.model_validate(planted_case().body), REPORTER
        )
        application.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "req-checkpoints")


def test_a_checkpoint_every_n_events(settings: Settings) -> None:
    with evidence_for(settings, every_events=4, every_seconds=3600) as (application, evidence):
        _store_events(application, 1)
        evidence.catch_up()
        first = evidence.checkpointer.maybe_checkpoint()  # the first one: as soon as any event
        assert first is not None and first.size == 2
        _store_events(application, 1)
        evidence.catch_up()
        assert evidence.checkpointer.maybe_checkpoint() is None  # grown by 2 < 4
        _store_events(application, 1)
        evidence.catch_up()
        second = evidence.checkpointer.maybe_checkpoint()
        assert second is not None and (second.seq, second.size) == (2, 6)
        assert [c.seq for c in evidence.checkpoints.all()] == [1, 2]
        assert evidence.checkpoints.latest() == second
        assert second.verify(evidence.public_key)


def test_a_checkpoint_after_t_seconds_if_the_tree_grew(settings: Settings) -> None:
    with evidence_for(settings, every_events=1000, every_seconds=60) as (application, evidence):
        now = time.time()
        evidence.checkpointer.clock = lambda: now
        _store_events(application, 1)
        evidence.catch_up()
        first = evidence.checkpointer.maybe_checkpoint()
        assert first is not None
        # A checkpoint is stamped by the wall clock when signed, which on a loaded machine is
        # seconds after `now` was read: the fake clock goes on from that stamp.
        now = signed_at(first)
        now += 120
        assert evidence.checkpointer.maybe_checkpoint() is None  # time passed, not grown
        now -= 120
        _store_events(application, 1)
        evidence.catch_up()
        assert evidence.checkpointer.maybe_checkpoint() is None  # grown, but too soon
        now += 61
        later = evidence.checkpointer.maybe_checkpoint()
        assert later is not None and later.size == 4


def test_no_checkpoint_is_signed_over_a_rewritten_tree(settings: Settings) -> None:
    with evidence_for(settings) as (application, evidence):
        _store_events(application, 2)
        signed = evidence.checkpoint_now()
        # An event rewritten, and the Merkle log rebuilt over it by someone with the code.
        tamper = Tamper(settings)
        tamper.drop_triggers()
        tamper.modify(2)
        tamper.recompute_tree()
        _store_events(application, 1)
        with pytest.raises(TreeInconsistent, match="does not extend checkpoint #1"):
            evidence.checkpoint_now()
        assert evidence.checkpoints.latest() == signed


def test_a_change_after_logging_is_found_before_any_checkpoint_covers_it(
    settings: Settings,
) -> None:
    """An event changed after the Merkle log recorded it, before the next checkpoint: the
    store's own log still tells."""
    populate(settings, events=6, checkpoint_every=6)
    with evidence_for(settings) as (application, evidence):
        _store_events(application, 2)
        evidence.catch_up()  # logged, not yet checkpointed
        tamper = Tamper(settings)
        tamper.drop_triggers()
        tamper.modify(8)
        report = verify_store(application.recorder, evidence.public_key)
    assert not report.intact
    assert report.summary().startswith("TAMPERED: the store differs from its own Merkle log")
    assert "leaf index 7 (store position 8)" in report.summary()


def test_settings_are_checked() -> None:
    assert EvidenceSettings.from_env({}) == EvidenceSettings(100, 60.0, 1.0)
    custom = EvidenceSettings.from_env(
        {"CASETRAIL_CHECKPOINT_EVERY_EVENTS": "5", "CASETRAIL_CHECKPOINT_EVERY_SECONDS": "2.5"}
    )
    assert (custom.every_events, custom.every_seconds) == (5, 2.5)
    with pytest.raises(EvidenceConfigError, match="CASETRAIL_CHECKPOINT_EVERY_EVENTS"):
        EvidenceSettings.from_env({"CASETRAIL_CHECKPOINT_EVERY_EVENTS": "often"})
    with pytest.raises(EvidenceConfigError, match="CASETRAIL_EVIDENCE_POLL_SECONDS"):
        EvidenceSettings.from_env({"CASETRAIL_EVIDENCE_POLL_SECONDS": "0"})


# --- the service: maintainer, endpoints ------------------------------------------------------


def test_the_service_keeps_the_tree_and_serves_checkpoints_and_proofs(
    settings: Settings, auth: TokenFactory
) -> None:
    # The one settings object the service is built from (gateway.bootstrap), not the process
    # environment after it was read.
    settings = settings.model_copy(
        update={"checkpoint_every_events": 1, "evidence_poll_seconds": 0.05}
    )
    reporter = auth(Role.REPORTER, "dongshan-village")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/v1/evidence/checkpoints").status_code == 401
        for _ in range(3):
            assert client.post("/v1/cases", json=planted_case().body, headers=reporter).is_success
        # Five events: the reporter's registration (issue 16: the `auth` fixture registers the
        # user), the refused request above (AuthenticationRefused), and the three reports.
        latest: dict[str, object] = {}
        deadline = time.monotonic() + 15
        while latest.get("size") != 5 and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = client.get("/v1/evidence/checkpoints/latest", headers=reporter)
            latest = answer.json() if answer.status_code == 200 else {}
        assert latest.get("size") == 5, "the maintainer did not checkpoint the new events"
        listed = client.get("/v1/evidence/checkpoints", headers=reporter).json()["checkpoints"]
        checkpoints = parse_checkpoints(listed)
        assert [c.size for c in checkpoints] == sorted(c.size for c in checkpoints)

        key = keyring.load_public_key(settings.keys_dir / keyring.SERVICE_PUB, "service key")
        inclusion = client.get("/v1/evidence/proofs/inclusion?position=2", headers=reporter)
        assert inclusion.status_code == 200, inclusion.text
        document = inclusion.json()
        assert "record" not in document  # hashes only over HTTP
        assert check_proof(document, key) == []
        application: CaseTrail = client.app.state.services.application  # type: ignore[attr-defined]
        (stored,) = application.recorder.select_notifications(start=2, limit=1)
        assert document["leaf_hash"] == StoredRecord.of(stored).leaf_hash().hex()

        first = checkpoints[0].size
        consistency = client.get(f"/v1/evidence/proofs/consistency?first={first}", headers=reporter)
        assert consistency.status_code == 200, consistency.text
        assert check_proof(consistency.json(), key) == []
        forged = consistency.json()
        if forged["proof"]:
            flipped = bytearray.fromhex(forged["proof"][0])
            flipped[0] ^= 0x10
            forged["proof"][0] = flipped.hex()
        else:  # one checkpoint only: from size 5 to 5, nothing to prove; claim another root
            forged["first"]["root"] = "00" * 32
        assert check_proof(forged, key) != []

        missing = client.get("/v1/evidence/proofs/inclusion?position=999", headers=reporter)
        assert missing.status_code == 404
        assert missing.json()["type"] == "urn:casetrail:problem:evidence-unavailable"
        public = client.get("/v1/evidence/public-key", headers=reporter).json()
        assert public["key_id"] == checkpoints[0].key_id


def test_proofs_from_the_command_line_check_offline(home: Path, tmp_path: Path) -> None:
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})  # the CLI is the same on both
    populate(settings, events=8, checkpoint_every=4)
    out = tmp_path / "inclusion.json"
    made = cli(settings, "proof", "inclusion", "--position", "3", "--out", str(out))
    assert made.returncode == 0, made.stderr
    document = json.loads(out.read_text())
    assert document["record"]["position"] == 3
    public = str(settings.keys_dir / keyring.SERVICE_PUB)
    checked = cli(settings, "proof", "check", str(out), "--public-key", public)
    assert (checked.returncode, first_line(checked)) == (0, "valid: casetrail-inclusion-proof/v1")

    document["record"]["version"] = 2
    out.write_text(json.dumps(document))
    refused = cli(settings, "proof", "check", str(out), "--public-key", public)
    assert refused.returncode == 1
    assert first_line(refused) == "INVALID: the record does not hash to the proof's leaf hash"

    consistency = cli(settings, "proof", "consistency", "--from", "4", "--to", "8")
    assert consistency.returncode == 0, consistency.stderr
    assert json.loads(consistency.stdout)["first"]["size"] == 4


def test_usage_errors_are_one_line_and_exit_2(home: Path, tmp_path: Path) -> None:
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    nothing = cli(settings, "verify")
    assert nothing.returncode == 2
    assert nothing.stderr.strip().splitlines() == [
        f"casetrail: error: no event store at {settings.database_url[10:]} (CASETRAIL_DATABASE_URL)"
    ]
    populate(settings, events=2, checkpoint_every=2)
    bad = tmp_path / "not-a-checkpoint.json"
    bad.write_text("{}")
    for args in (
        ("verify", "--checkpoint", str(bad)),
        ("verify-bundle", str(bad), "--public-key", str(settings.keys_dir / "nope.pub")),
        ("proof", "inclusion", "--position", "99"),
    ):
        result = cli(settings, *args)
        assert result.returncode == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("casetrail: error: "), result.stderr
