"""Endpoints of tamper evidence: signed checkpoints, inclusion and consistency proofs, and the
per-case evidence bundle.

Checkpoints and proofs hold no case content (sizes, hashes, signatures): any authenticated
caller may fetch them. The bundle discloses a case's history, so it is an audited read, decided
and recorded by the reader (`gateway.http.reader.AuditedReader.bundle`) before anything is
built, through the same decision as a case read. It is for investigators under an investigation
order in force (they also get the access events and orders about the case: the access log is
theirs to see) and for coordinators of the case's street (the case's own events only). Anyone
else is refused, the refusal recorded and answered as a case read's.

The evidence maintainer (`gateway.evidence.maintainer.Evidence`) is built by the wiring point
(`gateway.bootstrap`) and, where the followers run in the API, runs beside it: it keeps the
Merkle log up to date and signs checkpoints every N events or T seconds.

Every integer parameter is bounded by `MAX_POSITION` (2**53, the one bound of a store position,
`domain.investigation_commands`): far beyond any store, exact in every JSON client
(JavaScript's integers are exact up to 2**53), and with room for the arithmetic a proof does
(+1, doubling) inside SQLite's and PostgreSQL's 64-bit signed integers, so an out-of-range
value answers 422 instead of overflowing a driver (`tests/integration/test_bounds.py`).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Depends, Query, Request, Response

from domain.investigation_commands import MAX_POSITION
from gateway.evidence.documents import (
    EvidenceInconsistent,
    EvidenceUnavailable,
    OwnAccess,
    build_bundle,
    consistency_document,
    inclusion_document,
)
from gateway.evidence.maintainer import Evidence
from gateway.http.dependencies import ActorDep, ReaderDep
from gateway.http.problems import problem
from gateway.logs import get_logger
from projections.evidence.checkpoints import key_id

log = get_logger("casetrail.api")


router = APIRouter()


def _evidence(request: Request) -> Evidence:
    # Built by the wiring point (gateway.bootstrap.api), set by the app's lifespan.
    found: Evidence = request.app.state.evidence
    return found


EvidenceDep = Annotated[Evidence, Depends(_evidence)]


def _unavailable(request: Request, exc: EvidenceUnavailable) -> Response:
    if isinstance(exc, EvidenceInconsistent):
        # The stored tree does not lead to the signed root: a proof from it would fail to
        # check. Refused as the store failing to serve, never handed out.
        return problem(
            request,
            status=503,
            code="evidence-inconsistent",
            title="The Merkle log does not match its signed checkpoints",
            detail=str(exc),
        )
    return problem(
        request,
        status=404,
        code="evidence-unavailable",
        title="No such evidence (yet)",
        detail=str(exc),
    )


@router.get("/v1/evidence/public-key", tags=["evidence"])
def public_key(actor: ActorDep, evidence: EvidenceDep) -> dict[str, str]:
    """The key checkpoints and bundles are signed with. Check it against a copy obtained out of
    band before trusting it: a key fetched from the service it vouches for proves little."""
    pem = evidence.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"key_id": key_id(evidence.public_key), "pem": pem.decode()}


@router.get("/v1/evidence/checkpoints", tags=["evidence"])
def checkpoints(
    actor: ActorDep,
    evidence: EvidenceDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_POSITION, description="only checkpoints with a larger seq")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Signed checkpoints, oldest first: a unit that missed some fetches them from its last seq."""
    found = evidence.checkpoints.since(after, limit) if evidence.checkpoints.exists() else []
    return {"checkpoints": [c.to_json() for c in found]}


@router.get("/v1/evidence/checkpoints/latest", tags=["evidence"], response_model=None)
def latest_checkpoint(
    request: Request, actor: ActorDep, evidence: EvidenceDep
) -> dict[str, Any] | Response:
    found = evidence.checkpointer.latest()
    if found is None:
        return _unavailable(request, EvidenceUnavailable("there is no signed checkpoint yet"))
    return found.to_json()


@router.get("/v1/evidence/proofs/inclusion", tags=["evidence"], response_model=None)
def inclusion_proof(
    request: Request,
    actor: ActorDep,
    evidence: EvidenceDep,
    position: Annotated[
        int, Query(ge=1, le=MAX_POSITION, description="the event's position in the store")
    ],
    size: Annotated[
        int | None,
        Query(ge=1, le=MAX_POSITION, description="a checkpoint's size (default latest)"),
    ] = None,
) -> dict[str, Any] | Response:
    """The audit path of one stored event to a signed checkpoint (hashes only), checked
    against the checkpoint's root before it is handed out (503 `evidence-inconsistent` when
    the stored tree does not prove it). `size`: a signed checkpoint's (404 otherwise)."""
    try:
        return inclusion_document(
            evidence.application.recorder, evidence.public_key, position, size
        )
    except EvidenceUnavailable as exc:
        return _unavailable(request, exc)


@router.get("/v1/evidence/proofs/consistency", tags=["evidence"], response_model=None)
def consistency_proof(
    request: Request,
    actor: ActorDep,
    evidence: EvidenceDep,
    first: Annotated[
        int,
        Query(ge=1, le=MAX_POSITION, description="the older signed checkpoint's size (from 1)"),
    ],
    second: Annotated[
        int | None,
        Query(ge=1, le=MAX_POSITION, description="the newer one's (default latest)"),
    ] = None,
) -> dict[str, Any] | Response:
    """Proof that the newer checkpoint extends the older: nothing before it changed. Sizes are
    those of signed checkpoints (404 otherwise, naming the nearest); checked before it is
    handed out (503 `evidence-inconsistent` when the stored tree does not prove it)."""
    try:
        return consistency_document(
            evidence.application.recorder, evidence.public_key, first, second
        )
    except EvidenceUnavailable as exc:
        return _unavailable(request, exc)


@router.get("/v1/evidence/cases/{case_id}/bundle", tags=["evidence"], response_model=None)
def case_bundle(
    request: Request,
    case_id: UUID,
    reader: ReaderDep,
    evidence: EvidenceDep,
    content: Annotated[
        bool, Query(description="include the decrypted events (false: stored form only)")
    ] = True,
) -> dict[str, Any] | Response:
    """The case's evidence bundle: its stored events, each with an inclusion proof in a
    checkpoint signed now, and the service's signature over it all. Check it offline with
    `casetrail verify-bundle FILE --public-key service-signing.pub`. An audited read."""
    grant = reader.bundle(case_id)
    try:
        bundle = build_bundle(
            evidence.application,
            evidence,
            case_id,
            include_content=content,
            with_audit=grant.with_audit,
            own=OwnAccess(grant.request_id, grant.since),
        )
    except EvidenceUnavailable as exc:
        return _unavailable(request, exc)
    log.info("evidence_bundle_issued", case_id=str(case_id), records=len(bundle["records"]))
    return bundle
