"""The Merkle log's own stored nodes are checked: a node altered in the table (here zeroed, in a
store whose events are untouched) makes `casetrail verify` exit 1 naming the node, and the
service refuses every proof that would pass through it (503 `evidence-inconsistent`) while
still answering the proofs that do not; on SQLite and PostgreSQL, through the real CLI and the
real ASGI app. Also: proof sizes are those of signed checkpoints, `first=0` is refused by
validation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from domain.taxonomy import Role
from gateway import keyring
from gateway.evidence.verification import check_proof
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.conftest import TokenFactory
from tests.evidence.helpers import Tamper, cli, first_line, populate


def _zero_node(settings: Settings, level: int, index: int) -> None:
    store = Tamper(settings)
    store.drop_triggers()
    with store.connection() as conn:
        conn.execute(
            store.q(
                f"UPDATE {store.prefix}casetrail_merkle_nodes SET hash=? WHERE level=? AND idx=?"
            ),
            (bytes(32), level, index),
        )


@pytest.mark.parametrize(
    ("level", "index", "where"),
    [
        (
            0,
            5,
            "leaf (level 0, index 5) differs from the tree recomputed from the store, over "
            "leaf index 5 (store position 6)",
        ),
        (
            2,
            0,
            "node (level 2, index 0) differs from the tree recomputed from the store, over "
            "a leaf between index 0 and 3 (store positions 1 to 4)",
        ),
    ],
)
def test_a_zeroed_node_makes_verify_exit_1(
    settings: Settings, level: int, index: int, where: str
) -> None:
    populate(settings, events=24, checkpoint_every=6)
    before = cli(settings, "verify")
    assert before.returncode == 0, before.stdout + before.stderr
    _zero_node(settings, level, index)

    result = cli(settings, "verify")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result) == (
        f"TAMPERED: the stored Merkle log's {where}: its node table was altered, and proofs "
        "through that node fail"
    )


def test_the_service_refuses_proofs_through_a_zeroed_node(
    settings: Settings, auth: TokenFactory
) -> None:
    signed = populate(settings, events=24, checkpoint_every=6)
    assert [c.size for c in signed] == [6, 12, 18, 24]
    _zero_node(settings, 2, 0)  # leaves 0-3: on the path of leaf 5, and of every proof from 6
    key = keyring.load_public_key(settings.keys_dir / keyring.SERVICE_PUB, "service key")
    reporter = auth(Role.REPORTER, "dongshan-village")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for query in (
            "/v1/evidence/proofs/inclusion?position=6",
            "/v1/evidence/proofs/inclusion?position=6&size=12",
            "/v1/evidence/proofs/consistency?first=6",
            "/v1/evidence/proofs/consistency?first=6&second=12",
        ):
            refused = client.get(query, headers=reporter)
            assert refused.status_code == 503, (query, refused.text)
            body = refused.json()
            assert body["type"] == "urn:casetrail:problem:evidence-inconsistent", body
            assert "casetrail verify" in body["detail"]

        # Proofs that do not pass through the zeroed node are still made, and check.
        for query in (
            "/v1/evidence/proofs/inclusion?position=10",
            "/v1/evidence/proofs/inclusion?position=3&size=4",
        ):
            answer = client.get(query, headers=reporter)
            if "size=4" in query:  # no checkpoint of size 4: refused as not signed
                assert answer.status_code == 404, answer.text
                assert "the nearest signed sizes: 12" not in answer.text
                assert "nearest signed sizes: 6" in answer.json()["detail"]
                continue
            assert answer.status_code == 200, answer.text
            assert check_proof(answer.json(), key) == []
        consistency = client.get(
            "/v1/evidence/proofs/consistency?first=12&second=24", headers=reporter
        )
        # From 12: the proof is (12..16), (8..12)... and (0..8): not through (2, 0).
        assert consistency.status_code == 200, consistency.text
        assert check_proof(consistency.json(), key) == []


def test_proof_sizes_are_signed_sizes_and_first_0_is_refused(
    settings: Settings, auth: TokenFactory
) -> None:
    populate(settings, events=8, checkpoint_every=4)
    reporter = auth(Role.REPORTER, "dongshan-village")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        zero = client.get("/v1/evidence/proofs/consistency?first=0", headers=reporter)
        assert zero.status_code == 422, zero.text
        assert [e["field"] for e in zero.json()["errors"]] == ["first"]
        second_zero = client.get(
            "/v1/evidence/proofs/consistency?first=4&second=0", headers=reporter
        )
        assert second_zero.status_code == 422, second_zero.text
        unsigned = client.get("/v1/evidence/proofs/consistency?first=5", headers=reporter)
        assert unsigned.status_code == 404, unsigned.text
        detail = unsigned.json()["detail"]
        assert "signed checkpoints only" in detail and "nearest signed sizes: 4, 8" in detail
        signed = client.get("/v1/evidence/proofs/consistency?first=4&second=8", headers=reporter)
        assert signed.status_code == 200, signed.text
    from_zero = cli(settings, "proof", "consistency", "--from", "0")
    assert from_zero.returncode == 2
    assert from_zero.stderr.startswith("casetrail: error: a consistency proof starts at")


def test_a_deleted_node_makes_verify_exit_1(settings: Settings) -> None:
    populate(settings, events=24, checkpoint_every=6)
    store = Tamper(settings)
    store.drop_triggers()
    with store.connection() as conn:
        conn.execute(
            store.q(f"DELETE FROM {store.prefix}casetrail_merkle_nodes WHERE level=? AND idx=?"),
            (1, 3),
        )
    result = cli(settings, "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result) == (
        "TAMPERED: the stored Merkle log is missing 1 node(s) of its first 24 leaves: its node "
        "table was altered, and proofs through them fail"
    )


def test_a_bundle_through_a_zeroed_node_is_refused(
    settings: Settings, auth: TokenFactory
) -> None:
    """Bundles carry inclusion proofs too: each is checked before the bundle leaves."""
    populate(settings, events=24, checkpoint_every=6)
    _zero_node(settings, 0, 0)  # the leaf of the first case's first event
    coordinator = auth(Role.COORDINATOR, "office", purpose="consultation")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        application = client.app.state.services.application  # type: ignore[attr-defined]
        (first,) = application.recorder.select_notifications(start=1, limit=1)
        refused = client.get(
            f"/v1/evidence/cases/{first.originator_id}/bundle", headers=coordinator
        )
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"] == "urn:casetrail:problem:evidence-inconsistent"
        (second,) = application.recorder.select_notifications(start=3, limit=1)
        served = client.get(
            f"/v1/evidence/cases/{second.originator_id}/bundle", headers=coordinator
        )
        assert served.status_code == 200, served.text
