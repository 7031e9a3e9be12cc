"""Checking the store against signed checkpoints, and checking evidence documents offline.

`verify_store` recomputes the tree from the stored records (no decryption key needed: the
leaves are the stored, encrypted bytes), compares its root at each checkpoint's size with the
signed root, and compares the store with its own Merkle log (the tree recorded as events were
appended). It names the first leaf that differs:

- exactly, when the stored tree's nodes lead to the signed root (they are then authentic and
  show which half, then which quarter... holds the difference);
- as a range, when the stored tree was rewritten too: then only the signed checkpoints bound
  it (the largest that still matches, the smallest that does not). A unit that keeps every
  checkpoint it receives narrows it to one checkpoint interval.

`verify_bundle` and `check_proof` need no database at all: the document and the public key.
"""

from __future__ import annotations

import base64
import binascii
import json
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from projections.evidence.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    CheckpointStore,
    key_id,
)
from projections.evidence.leaves import StoredRecord
from projections.evidence.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    LeafHashes,
    NodeReader,
    first_difference,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from projections.evidence.rotation import AnnouncementStore, KeyChain

if TYPE_CHECKING:
    # Checking a store needs its drivers; checking a bundle or a proof offline does not, and
    # so imports none (issue 23: `casetrail verify-bundle`, `proof check` start fast).
    from eventsourcing.persistence import ApplicationRecorder

    from projections.evidence.log import MerkleLog

BUNDLE_FORMAT: Final = "casetrail-evidence-bundle/v1"
INCLUSION_FORMAT: Final = "casetrail-inclusion-proof/v1"
CONSISTENCY_FORMAT: Final = "casetrail-consistency-proof/v1"
_BATCH: Final = 2000
BUNDLE_KINDS: Final = ("case", "access", "order")


# --- the store against its checkpoints ------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One discrepancy. [lo, hi) is the leaf range that holds the first difference."""

    lo: int
    hi: int
    message: str


@dataclass
class StoreReport:
    events: int
    stored_tree: int
    checkpoints: list[Checkpoint]
    matched: list[Checkpoint] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    chain: KeyChain | None = None

    @property
    def intact(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        if self.findings:
            first = min(self.findings, key=lambda f: (f.lo, f.hi))
            return f"TAMPERED: {first.message}"
        latest = max(self.matched, key=lambda c: (c.size, c.seq), default=None)
        if latest is None:
            return f"intact: {self.events} events (no checkpoint to compare with)"
        tail = self.events - latest.size
        after = f"; {tail} later events are not covered by a checkpoint yet" if tail else ""
        rotations = len(self.chain.eras) - 1 if self.chain else 0
        keys = (
            f"; the signing key changed {rotations} time(s), each change announced by the "
            "old key and acknowledged by the new one"
            if rotations
            else ""
        )
        return (
            f"intact: {self.events} events; the store matches {len(self.matched)} signed "
            f"checkpoint(s), the latest {latest.describe()}{after}{keys}"
        )


class _StoreScan:
    """One pass over the store: every leaf hash, every position, and roots at chosen sizes."""

    def __init__(self, recorder: ApplicationRecorder, sizes: set[int]) -> None:
        self.leaves = LeafHashes()
        self.positions = array("q")
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT} if 0 in sizes else {}
        frontier = Frontier()
        start = 0
        while True:
            page = recorder.select_notifications(
                start=start, limit=_BATCH, inclusive_of_start=False
            )
            for notification in page:
                leaf = StoredRecord.of(notification).leaf_hash()
                self.leaves.append(leaf)
                self.positions.append(notification.id)
                frontier.add(leaf)
                if frontier.size in sizes:
                    self.roots[frontier.size] = frontier.root()
            if len(page) < _BATCH:
                break
            start = page[-1].id

    @property
    def size(self) -> int:
        return len(self.positions)

    def where(self, lo: int, hi: int) -> str:
        if lo >= self.size:
            # Every stored event agrees with the checkpoint; it covers events the store lacks
            # (a restore from an older backup, or a cut tail).
            return f"leaf index {lo}, missing: the store holds only {self.size} events"
        if hi - lo == 1:
            if lo < self.size:
                return f"leaf index {lo} (store position {self.positions[lo]})"
            return f"leaf index {lo}, missing: the store holds only {self.size} events"
        last = min(hi, self.size) - 1
        span = (
            f" (store positions {self.positions[lo]} to {self.positions[last]})"
            if lo <= last
            else ""
        )
        return f"a leaf between index {lo} and {hi - 1}{span}"


def key_chain(recorder: ApplicationRecorder, public_key: Ed25519PublicKey) -> KeyChain:
    """The service keys linked to `public_key` by the store's signing-key announcements
    (`projections.evidence.rotation`): a verifier holding an old key or the current one
    checks every checkpoint with the key in force at its number."""
    return KeyChain.build(public_key, AnnouncementStore(recorder).all())


def verify_store(
    recorder: ApplicationRecorder,
    public_key: Ed25519PublicKey,
    held: Sequence[Checkpoint] = (),
) -> StoreReport:
    """Check the store against the checkpoints `held` (a unit's) and those stored with it.

    `public_key` is any key of the service's chain (the current one, or one a unit was given
    before a rotation): each checkpoint is checked with the key in force at its number. Held
    checkpoints must be signed so (the caller checks; see `check_held`). Stored checkpoints with
    a bad signature, and invalid announcements, are findings themselves."""
    findings: list[Finding] = []
    stored: list[Checkpoint] = []
    chain = key_chain(recorder, public_key)
    findings += [Finding(0, 0, problem) for problem in chain.problems]
    checkpoint_store = CheckpointStore(recorder)
    if checkpoint_store.exists():
        for checkpoint in checkpoint_store.all():
            problem = chain.problem(checkpoint)
            if problem is None:
                stored.append(checkpoint)
            else:
                findings.append(Finding(0, 0, f"stored {problem}"))
    checkpoints = _distinct([*held, *stored])
    from projections.evidence.log import MerkleLog  # noqa: PLC0415 (see the imports)

    merkle = MerkleLog(recorder)
    tree_size = merkle.size() if merkle.exists() else 0
    scan = _StoreScan(recorder, {c.size for c in checkpoints} | {tree_size})
    report = StoreReport(scan.size, tree_size, checkpoints, findings=findings, chain=chain)
    candidates = _stored_nodes(merkle) if tree_size else _no_nodes

    mismatched: list[Checkpoint] = []
    for checkpoint in sorted(checkpoints, key=lambda c: (c.size, c.seq)):
        if checkpoint.size <= scan.size and scan.roots[checkpoint.size] == checkpoint.root:
            report.matched.append(checkpoint)
        else:
            mismatched.append(checkpoint)
    if mismatched:
        first = mismatched[0]
        lo, hi = first_difference(first.size, first.root, candidates, scan.leaves.read, scan.size)
        below = [c.size for c in report.matched if c.size < first.size]
        if below and lo < max(below) < hi and hi - lo > 1:
            lo = max(below)
        if hi - lo == 1 or lo >= scan.size:
            note = ""
        elif first.size > scan.size:
            # Not a rewrite: the checkpoint covers events this store never had (a restore from
            # an older backup, or a cut tail), and no tree over them is stored here.
            note = (
                f"; it covers {first.size} events and the store holds only {scan.size} (restored "
                "from an older backup, or cut), so only the signed checkpoints bound the position"
            )
        else:
            note = (
                "; the stored Merkle tree no longer leads to the signed root (rewritten as "
                "well), so only the signed checkpoints bound the position"
            )
        report.findings.append(
            Finding(
                lo,
                hi,
                f"the store differs from {first.describe()}: first difference at "
                f"{scan.where(lo, hi)}{note}",
            )
        )
        forks = [c for c in report.matched if c.size >= first.size]
        if forks:
            report.findings.append(
                Finding(
                    lo,
                    hi,
                    f"{forks[0].describe()} and {first.describe()} are both signed but cannot "
                    "both be right: the log's history was forked",
                )
            )
    if tree_size:
        report.findings += _against_stored_tree(merkle, tree_size, candidates, scan)
        report.findings += _stored_nodes_against_recomputed(merkle, tree_size, scan)
    return report


def _stored_nodes_against_recomputed(
    merkle: MerkleLog, tree_size: int, scan: _StoreScan
) -> list[Finding]:
    """Every stored node against the tree recomputed from the store, level by level.

    The roots compared above read only the few nodes on a tree's right edge; a node inside a
    perfect subtree (a leaf, or an inner node) can be altered without changing any of them,
    and every proof through it would then fail. Each stored node of the leaves both trees hold
    is compared; a differing node is reported where it is the cause (its stored children, when
    it has any, match), so a changed event shows as its leaf, not as every node above it."""
    size = min(tree_size, scan.size)
    level, current = 0, bytes(scan.leaves.buffer())
    differing: set[int] = set()
    causes: list[tuple[int, int, int]] = []  # (first leaf, level, index)
    missing = 0
    while size >> level:
        count = size >> level
        below, differing = differing, set()
        seen = 0
        for index, stored in merkle.level(level, count):
            missing += index - seen
            seen = index + 1
            if stored != current[index * HASH_SIZE : (index + 1) * HASH_SIZE]:
                differing.add(index)
                if level == 0 or not {2 * index, 2 * index + 1} & below:
                    causes.append((index << level, level, index))
        missing += count - seen
        current = _parents(current, count)
        level += 1
    findings = []
    if causes:
        lo, level, index = min(causes)
        what = "leaf" if level == 0 else "node"
        more = f" ({len(causes) - 1} more such node(s))" if len(causes) > 1 else ""
        findings.append(
            Finding(
                lo,
                lo + (1 << level),
                f"the stored Merkle log's {what} (level {level}, index {index}) differs from the "
                f"tree recomputed from the store, over {scan.where(lo, lo + (1 << level))}{more}: "
                "its node table was altered, and proofs through that node fail",
            )
        )
    if missing:
        findings.append(
            Finding(
                0,
                size,
                f"the stored Merkle log is missing {missing} node(s) of its first {size} "
                "leaves: its node table was altered, and proofs through them fail",
            )
        )
    return findings


def _parents(hashes: bytes, count: int) -> bytes:
    """The next level up of `count` packed hashes (an odd last one has no parent yet)."""
    out = bytearray()
    for i in range(0, count - 1, 2):
        start = i * HASH_SIZE
        out += node_hash(
            hashes[start : start + HASH_SIZE], hashes[start + HASH_SIZE : start + 2 * HASH_SIZE]
        )
    return bytes(out)


def _against_stored_tree(
    merkle: MerkleLog, tree_size: int, candidates: NodeReader, scan: _StoreScan
) -> list[Finding]:
    """The store against the tree recorded as its events were appended (not signed, but the
    difference is a change made after the event was logged)."""
    try:
        stored_root = merkle.root(tree_size)
    except LookupError:
        return [Finding(0, tree_size, "the stored Merkle tree is missing nodes")]
    if tree_size <= scan.size and scan.roots.get(tree_size) == stored_root:
        return []
    lo, hi = first_difference(tree_size, stored_root, candidates, scan.leaves.read, scan.size)
    return [
        Finding(
            lo,
            hi,
            f"the store differs from its own Merkle log of {tree_size} events (recorded as "
            f"they were appended): first difference at {scan.where(lo, hi)}",
        )
    ]


def _stored_nodes(merkle: MerkleLog) -> NodeReader:
    return merkle.reader()


def _no_nodes(level: int, index: int) -> bytes:
    raise LookupError("no stored tree")


def _distinct(checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
    seen: dict[tuple[int, int, bytes], Checkpoint] = {}
    for checkpoint in checkpoints:
        seen.setdefault((checkpoint.seq, checkpoint.size, checkpoint.root), checkpoint)
    return list(seen.values())


def check_held(
    checkpoints: Sequence[Checkpoint],
    public_key: Ed25519PublicKey,
    chain: KeyChain | None = None,
) -> str | None:
    """None when every checkpoint is signed by `public_key` (or, given the store's `chain`,
    by the key in force at its number); otherwise what is wrong."""
    keys = chain.keys() if chain is not None else [public_key]
    for checkpoint in checkpoints:
        if not any(checkpoint.verify(key) for key in keys):
            return (
                f"{checkpoint.describe()} is not signed by the given public key "
                f"(key id {key_id(public_key)}, checkpoint names {checkpoint.key_id})"
            )
        problem = chain.problem(checkpoint) if chain is not None else None
        if problem is not None:
            return problem
    return None


# --- evidence bundles, offline ----------------------------------------------------------------


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a bundle's attestation signs: the document without its attestation, as
    sorted, compact JSON."""
    body = {k: v for k, v in document.items() if k != "attestation"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return BUNDLE_FORMAT.encode() + b"\n" + text.encode("utf-8")


@dataclass
class BundleReport:
    case_id: str | None = None
    checkpoint: Checkpoint | None = None
    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.problems or self.checkpoint is None:
            return f"TAMPERED: {self.problems[0] if self.problems else 'no checkpoint'}"
        return (
            f"intact: {self.records} stored events of case {self.case_id}, each included in "
            f"{self.checkpoint.describe()}; the bundle is signed by the service"
        )


class BundleFormatError(ValueError):
    """The file is not an evidence bundle at all."""


def verify_bundle(document: Any, public_key: Ed25519PublicKey) -> BundleReport:
    """Check an evidence bundle with the service's public key alone."""
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        raise BundleFormatError(f"not an evidence bundle (expected format {BUNDLE_FORMAT!r})")
    report = BundleReport(case_id=str(document.get("case_id")))
    problems = report.problems
    try:
        checkpoint = Checkpoint.from_json(document.get("checkpoint"))
    except CheckpointFormatError as exc:
        problems.append(f"the bundle's checkpoint is unreadable: {exc}")
        return report
    report.checkpoint = checkpoint
    if not checkpoint.verify(public_key):
        problems.append(f"{checkpoint.describe()} is not signed by the given public key")
    if not _attested(document, public_key):
        problems.append("the bundle's signature does not match its content (it was altered)")
    records = document.get("records")
    if not isinstance(records, list) or not records:
        problems.append("the bundle holds no records")
        return report
    try:
        case_id = UUID(str(document.get("case_id")))
    except ValueError:
        problems.append("the bundle names no valid case id")
        return report
    streams: dict[tuple[str, UUID], list[int]] = {}
    for item in records:
        problem, record = _check_record(item, checkpoint)
        if record is None:
            problems.append(problem or "a record is malformed")
            continue
        report.records += 1
        kind = str(item.get("kind"))
        if kind not in BUNDLE_KINDS:
            problems.append(f"record at position {record.position} has unknown kind {kind!r}")
        elif (kind == "case") != (record.stream_id == case_id):
            problems.append(f"record at position {record.position} is not a {kind} record")
        streams.setdefault((kind, record.stream_id), []).append(record.version)
    if ("case", case_id) not in streams:
        problems.append("the bundle holds none of the case's own events")
    for (kind, stream), versions in sorted(streams.items(), key=str):
        if sorted(versions) != list(range(1, len(versions) + 1)):
            problems.append(f"the {kind} stream {stream} is not complete from version 1")
    content = document.get("content")
    if content is not None:
        indexes = {item.get("leaf_index") for item in records if isinstance(item, dict)}
        # Not a list (a number, a string...) is a mismatch, not a crash.
        items = content if isinstance(content, list) else []
        described = {c.get("leaf_index") for c in items if isinstance(c, dict)}
        if not isinstance(content, list) or indexes != described:
            problems.append("the decrypted content does not match the records one for one")
    return report


def _attested(document: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
    attestation = document.get("attestation")
    if not isinstance(attestation, dict):
        return False
    try:
        signature = base64.b64decode(str(attestation.get("signature")), validate=True)
        public_key.verify(signature, canonical(document))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return attestation.get("key_id") == key_id(public_key)


def record_from_json(item: Any) -> StoredRecord:
    """A stored record as bundles and proofs write it; raises ValueError when malformed."""
    if not isinstance(item, dict):
        raise ValueError("a record must be an object")
    try:
        return StoredRecord(
            position=int(item["position"]),
            stream_id=UUID(str(item["stream_id"])),
            version=int(item["version"]),
            topic=str(item["topic"]),
            state=base64.b64decode(str(item["state"]), validate=True),
        )
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed record: {exc}") from None


def record_to_json(record: StoredRecord) -> dict[str, Any]:
    return {
        "position": record.position,
        "stream_id": str(record.stream_id),
        "version": record.version,
        "topic": record.topic,
        "state": base64.b64encode(record.state).decode(),
    }


def _hashes(values: Any) -> list[bytes]:
    if not isinstance(values, list):
        raise ValueError("a proof must be a list of hex hashes")
    return [bytes.fromhex(str(v)) for v in values]


def _check_record(item: Any, checkpoint: Checkpoint) -> tuple[str | None, StoredRecord | None]:
    try:
        record = record_from_json(item)
        index = int(item["leaf_index"])
        proof = _hashes(item["inclusion_proof"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"a record is malformed: {exc}", None
    if not verify_inclusion(record.leaf_hash(), index, checkpoint.size, proof, checkpoint.root):
        return (
            f"the record at leaf index {index} (position {record.position}) is not in "
            f"{checkpoint.describe()}: it was altered, or its proof was"
        ), None
    return None, record


# --- proof documents, offline -----------------------------------------------------------------


def check_proof(document: Any, public_key: Ed25519PublicKey | None) -> list[str]:
    """Problems with an inclusion or consistency proof document (empty when it holds)."""
    if not isinstance(document, dict):
        return ["not a proof document"]
    kind = document.get("format")
    try:
        if kind == INCLUSION_FORMAT:
            return _check_inclusion(document, public_key)
        if kind == CONSISTENCY_FORMAT:
            return _check_consistency(document, public_key)
    except (ValueError, KeyError, TypeError) as exc:
        return [f"the proof document is malformed: {exc}"]
    return [f"unknown proof format {kind!r}"]


def _signed(checkpoint: Checkpoint, public_key: Ed25519PublicKey | None) -> list[str]:
    if public_key is not None and not checkpoint.verify(public_key):
        return [f"{checkpoint.describe()} is not signed by the given public key"]
    return []


def _check_inclusion(document: dict[str, Any], public_key: Ed25519PublicKey | None) -> list[str]:
    checkpoint = Checkpoint.from_json(document["checkpoint"])
    problems = _signed(checkpoint, public_key)
    leaf = bytes.fromhex(str(document["leaf_hash"]))
    if document.get("record") is not None:
        record = record_from_json(document["record"])
        if record.leaf_hash() != leaf:
            problems.append("the record does not hash to the proof's leaf hash")
    index, size = int(document["leaf_index"]), int(document["tree_size"])
    if size != checkpoint.size:
        problems.append(f"the proof is for a tree of {size}, the checkpoint of {checkpoint.size}")
    if not verify_inclusion(leaf, index, size, _hashes(document["proof"]), checkpoint.root):
        problems.append(f"leaf index {index} is not proven to be in {checkpoint.describe()}")
    return problems


def _check_consistency(document: dict[str, Any], public_key: Ed25519PublicKey | None) -> list[str]:
    first = Checkpoint.from_json(document["first"])
    second = Checkpoint.from_json(document["second"])
    problems = _signed(first, public_key) + _signed(second, public_key)
    if not verify_consistency(
        first.size, second.size, first.root, second.root, _hashes(document["proof"])
    ):
        problems.append(f"{second.describe()} is not proven to extend {first.describe()}")
    return problems
