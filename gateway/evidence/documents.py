"""Evidence documents the service hands out: inclusion and consistency proofs (hashes only,
plus the stored record for operators), and the per-case evidence bundle for investigators.

Each document carries the signed checkpoint it is checked against, so it can be checked
offline with the service's public key (`casetrail proof check`, `casetrail verify-bundle`).

The bundle holds, for one case: every stored event of the case's own stream (and, for a
reader granted the access log, of the access events and investigation orders about it), as
stored (encrypted bytes), each with its inclusion proof in a fresh checkpoint; optionally the
decrypted content of those events; and the service's signature over the whole. Other cases
appear only as hashes inside the proofs.
"""

from __future__ import annotations

import base64
import time
from dataclasses import asdict, dataclass, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, Final
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.utils import get_topic

from domain.access import AccessDenied, CaseAccessed
from domain.application import ACCESS_TOPICS, CaseTrail
from domain.orders import InvestigationOrder
from domain.tombstones import decoded
from gateway.evidence.maintainer import Evidence
from gateway.evidence.verification import (
    BUNDLE_FORMAT,
    CONSISTENCY_FORMAT,
    INCLUSION_FORMAT,
    canonical,
    record_to_json,
)
from gateway.logs import get_logger
from projections.evidence.checkpoints import Checkpoint, CheckpointStore, key_id, utc_now
from projections.evidence.log import MerkleLog, StoredRecord
from projections.evidence.merkle import inclusion_proof, verify_consistency, verify_inclusion

_SCAN_BATCH: Final = 1000
# How long a bundle waits for the tree to reach its own access event (see _covering_own_access).
OWN_ACCESS_TRIES: Final = 40
OWN_ACCESS_WAIT_SECONDS: Final = 0.025

log = get_logger("casetrail.evidence")


class EvidenceUnavailable(LookupError):
    """What was asked for is not in the tree, or not covered by a checkpoint yet."""


class EvidenceInconsistent(EvidenceUnavailable):
    """The stored Merkle log does not lead to the signed root (or disagrees with the stored
    record): a proof made from it would fail to check, so none is handed out. The store's
    node table was altered or damaged; `casetrail verify` names where."""


def latest_valid(store: CheckpointStore, public_key: Ed25519PublicKey) -> Checkpoint | None:
    """The newest checkpoint whose signature checks (only as many verified as it takes)."""
    if not store.exists():
        return None
    return next((c for c in reversed(store.all()) if c.verify(public_key)), None)


def _checkpoint_of(
    store: CheckpointStore, public_key: Ed25519PublicKey, size: int | None
) -> Checkpoint:
    """The signed checkpoint a proof is made against: the latest, or the first of `size`.

    Proofs are made only against signed tree sizes: the stored nodes could serve any past
    size, but a proof is worth only as much as the root it leads to, and only a signed root
    can be held against the service (docs/specs/merkle.md, "Which sizes"). Only the
    checkpoints a request needs are verified, not every one stored."""
    if size is None:
        found = latest_valid(store, public_key)
        if found is None:
            raise EvidenceUnavailable("there is no signed checkpoint yet")
        return found
    stored = store.all() if store.exists() else []
    for checkpoint in stored:
        if checkpoint.size == size and checkpoint.verify(public_key):
            return checkpoint
    below = next(
        (c.size for c in reversed(stored) if c.size < size and c.verify(public_key)), None
    )
    above = next((c.size for c in stored if c.size > size and c.verify(public_key)), None)
    nearby = ", ".join(str(s) for s in (below, above) if s is not None) or "none yet"
    raise EvidenceUnavailable(
        f"no signed checkpoint has that size: proofs are made against signed checkpoints "
        f"only (the nearest signed sizes: {nearby}; `GET /v1/evidence/checkpoints` lists them)"
    )


def inclusion_document(
    recorder: ApplicationRecorder,
    public_key: Ed25519PublicKey,
    position: int,
    size: int | None = None,
    *,
    with_record: bool = False,
) -> dict[str, Any]:
    """The proof that the event at store `position` is in the checkpoint of `size` leaves
    (default: the latest). `with_record` adds the stored record (encrypted bytes, and its
    stream id and topic): for operators, who can read the store anyway.

    Checked before it is handed out: the leaf hash is recomputed from the stored record and
    must equal the stored leaf, and the proof must lead to the checkpoint's signed root;
    otherwise `EvidenceInconsistent`."""
    merkle = MerkleLog(recorder)
    index = merkle.leaf_index_of(position) if merkle.exists() else None
    if index is None:
        raise EvidenceUnavailable(f"no event at position {position} is in the Merkle log yet")
    checkpoint = _checkpoint_of(CheckpointStore(recorder), public_key, size)
    if index >= checkpoint.size:
        raise EvidenceUnavailable(
            f"position {position} (leaf index {index}) is not covered by "
            f"{checkpoint.describe()}; ask again after the next checkpoint"
        )
    found = recorder.select_notifications(start=position, limit=1)
    if not found or found[0].id != position:
        raise EvidenceInconsistent(
            f"the Merkle log names a stored event at position {position} that the store no "
            "longer holds: run `casetrail verify`"
        )
    record = StoredRecord.of(found[0])
    leaf = record.leaf_hash()
    proof = checked_inclusion_proof(merkle, record, index, checkpoint)
    document: dict[str, Any] = {
        "format": INCLUSION_FORMAT,
        "position": position,
        "leaf_index": index,
        "leaf_hash": leaf.hex(),
        "tree_size": checkpoint.size,
        "proof": [h.hex() for h in proof],
        "checkpoint": checkpoint.to_json(),
    }
    if with_record:
        document["record"] = record_to_json(record)
    return document


def checked_inclusion_proof(
    merkle: MerkleLog, record: StoredRecord, index: int, checkpoint: Checkpoint
) -> list[bytes]:
    """The audit path of `record` (leaf `index`) to `checkpoint`, checked before it is handed
    out: the stored leaf must be the record's leaf hash, and the path must lead to the signed
    root; otherwise `EvidenceInconsistent` (a node of the table altered, or the event). For
    every document that carries inclusion proofs."""
    leaf = record.leaf_hash()
    stored_leaf, proof = merkle.compute(
        lambda read: (read(0, index), inclusion_proof(index, checkpoint.size, read))
    )
    if stored_leaf != leaf or not verify_inclusion(
        leaf, index, checkpoint.size, proof, checkpoint.root
    ):
        log.error("merkle_proof_refused", kind="inclusion", leaf_index=index, seq=checkpoint.seq)
        raise EvidenceInconsistent(
            f"the stored Merkle log does not prove leaf index {index} in {checkpoint.describe()}: "
            "its nodes or the stored event were altered; no proof is handed out; an operator "
            "should run `casetrail verify`"
        )
    return proof


def consistency_document(
    recorder: ApplicationRecorder,
    public_key: Ed25519PublicKey,
    first_size: int,
    second_size: int | None = None,
) -> dict[str, Any]:
    """The proof that the checkpoint of `second_size` leaves (default: the latest) extends the
    checkpoint of `first_size` leaves: nothing before it was changed or removed. Checked
    against both signed roots before it is handed out (`EvidenceInconsistent` otherwise)."""
    if first_size < 1:
        raise EvidenceUnavailable(
            "a consistency proof starts at a signed checkpoint of at least 1 leaf: the empty "
            "tree is a prefix of every tree, there is nothing to prove"
        )
    store = CheckpointStore(recorder)
    second = _checkpoint_of(store, public_key, second_size)
    first = _checkpoint_of(store, public_key, first_size)
    if first.size > second.size:
        raise EvidenceUnavailable(
            f"{first.describe()} is larger than {second.describe()}: swap them"
        )
    proof = MerkleLog(recorder).consistency_proof(first.size, second.size)
    if not verify_consistency(first.size, second.size, first.root, second.root, proof):
        log.error("merkle_proof_refused", kind="consistency", first=first.seq, second=second.seq)
        raise EvidenceInconsistent(
            f"the stored Merkle log does not prove that {second.describe()} extends "
            f"{first.describe()}: its nodes were altered, or history was rewritten; no proof is "
            "handed out; an operator should run `casetrail verify`"
        )
    return {
        "format": CONSISTENCY_FORMAT,
        "first": first.to_json(),
        "second": second.to_json(),
        "proof": [h.hex() for h in proof],
    }


# --- the per-case bundle ----------------------------------------------------------------------

ORDER_TOPIC_PREFIX: Final = get_topic(InvestigationOrder) + "."


def build_bundle(
    application: CaseTrail,
    evidence: Evidence,
    case_id: UUID,
    *,
    include_content: bool,
    with_audit: bool,
    own: OwnAccess | None = None,
) -> dict[str, Any]:
    """The case's evidence bundle against a checkpoint signed now. The caller has already
    stored the access event(s) of this disclosure; they are in the bundle too.

    Records: the case's own stream and the bundle's own access events (`own`: those of this
    request, kind "access"); with `with_audit` (a reader granted the access log) also every
    access event about the case (with its break-glass review, if any) and every
    investigation order naming it. Byte-exact form: `docs/specs/bundle.md`."""
    checkpoint, found = _covering_own_access(application, evidence, case_id, with_audit, own)
    records, content = [], []
    for index, kind, notification in found:
        record = StoredRecord.of(notification)
        records.append(
            {
                **record_to_json(record),
                "kind": kind,
                "leaf_index": index,
                "inclusion_proof": [
                    h.hex()
                    for h in checked_inclusion_proof(evidence.merkle, record, index, checkpoint)
                ],
            }
        )
        if include_content:
            event = decoded(application.mapper.to_domain_event, notification)
            item: dict[str, Any] = {
                "leaf_index": index,
                "type": notification.topic.rsplit(":", 1)[-1],
                "event": {} if event is None else _plain(vars(event)),
            }
            if event is None:  # erased (issue 19): the record and its proof stay, no content
                item["erased"] = True
            content.append(item)
    document: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "case_id": str(case_id),
        "created_at": utc_now(),
        "checkpoint": checkpoint.to_json(),
        "records": records,
    }
    if include_content:
        document["content"] = content
    key = evidence.signing_key
    document["attestation"] = {
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(canonical(document))).decode(),
    }
    return document


def _covering_own_access(
    application: CaseTrail,
    evidence: Evidence,
    case_id: UUID,
    with_audit: bool,
    own: OwnAccess | None,
) -> tuple[Checkpoint, list[tuple[int, str, Notification]]]:
    """A checkpoint signed now and the case's records in it, which hold the request's own
    access event. That event is stored before the bundle is built, but the tree follows only
    the settled log (`gateway.store.horizon`: on PostgreSQL a concurrent insert with a lower
    id, not committed yet, holds it back for a moment), so a checkpoint may end just before
    it: then wait and sign again, rather than hand out a bundle without its own access event.
    `EvidenceUnavailable` if it never arrives."""
    for attempt in range(OWN_ACCESS_TRIES):
        if attempt:
            time.sleep(OWN_ACCESS_WAIT_SECONDS)
        checkpoint = evidence.checkpoint_now()
        found = _case_notifications(
            application, evidence.merkle, case_id, checkpoint.size, with_audit, own
        )
        if own is None or any(
            kind == "access"
            and notification.id > own.since
            and _own_access_kind(application, notification, case_id, own.request_id)
            for _, kind, notification in found
        ):
            return checkpoint, found
    raise EvidenceUnavailable(
        "this request's own access event is not in the Merkle log yet, so no bundle can hold "
        "it: ask again in a moment"
    )


@dataclass(frozen=True)
class OwnAccess:
    """Which access events are the bundle's own: stored after position `since` (the store's
    end before the read was decided) by the request `request_id`. Only stored records past
    `since` are decrypted to find them."""

    request_id: str
    since: int


def _case_notifications(
    application: CaseTrail,
    merkle: MerkleLog,
    case_id: UUID,
    size: int,
    with_audit: bool,
    own: OwnAccess | None = None,
) -> list[tuple[int, str, Notification]]:
    """(leaf index, kind, stored record) of the case's events among the first `size` leaves,
    in log order (see `build_bundle`)."""
    last = _position_of_leaf(merkle, size - 1) if size else 0
    streams: dict[UUID | str, str] = {case_id: "case"}
    picked: list[tuple[str, Notification]] = []
    start = 0
    while start < last:
        page = application.recorder.select_notifications(
            start=start, limit=_SCAN_BATCH, stop=last, inclusive_of_start=False
        )
        for notification in page:
            kind = streams.get(notification.originator_id)
            if kind is None and with_audit:
                kind = _audit_kind(application, notification, case_id)
                if kind is not None:
                    streams[notification.originator_id] = kind
            elif kind is None and own is not None and notification.id > own.since:
                kind = _own_access_kind(application, notification, case_id, own.request_id)
            if kind is not None:
                picked.append((kind, notification))
        if len(page) < _SCAN_BATCH:
            break
        start = page[-1].id
    indexes = merkle.leaf_indexes([n.id for _, n in picked])
    found = []
    for kind, notification in picked:
        if notification.id not in indexes:
            raise EvidenceUnavailable(
                f"the event at position {notification.id} is not in the Merkle log: "
                "run `casetrail verify`"
            )
        found.append((indexes[notification.id], kind, notification))
    return found


def _audit_kind(application: CaseTrail, notification: Notification, case_id: UUID) -> str | None:
    """ "access" or "order" when this event opens a stream about the case. Which case is
    inside the encrypted state, so only candidates by topic are decrypted."""
    if notification.topic in ACCESS_TOPICS:
        event = application.mapper.to_domain_event(notification)
        if isinstance(event, CaseAccessed | AccessDenied) and event.case_id == case_id:
            return "access"
    elif notification.topic.startswith(ORDER_TOPIC_PREFIX) and notification.originator_version == 1:
        event = application.mapper.to_domain_event(notification)
        if getattr(event, "case_id", None) == case_id:
            return "order"
    return None


def _own_access_kind(
    application: CaseTrail, notification: Notification, case_id: UUID, request_id: str
) -> str | None:
    """ "access" when this is an access event of the request `request_id` about the case: the
    bundle's own, which every bundle holds (the docs promise it to coordinators too)."""
    if notification.topic not in ACCESS_TOPICS or notification.originator_version != 1:
        return None
    event = application.mapper.to_domain_event(notification)
    if (
        isinstance(event, CaseAccessed | AccessDenied)
        and event.case_id == case_id
        and event.request_id == request_id
    ):
        return "access"
    return None


def _position_of_leaf(merkle: MerkleLog, index: int) -> int:
    with merkle.tables.reading() as db:
        rows = db.execute(
            "SELECT position FROM {casetrail_merkle_leaves} WHERE leaf_index = ?", (index,)
        )
    if not rows:
        raise EvidenceUnavailable(f"the Merkle log has no leaf {index}")
    return int(rows[0]["position"])


def _plain(value: Any) -> Any:
    """An event's attributes as JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
