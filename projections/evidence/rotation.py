"""Service signing-key rotation: the announcement that links an old key to its successor, and
the chain of keys a verifier follows from one key it trusts.

When the service's Ed25519 signing key is replaced (`casetrail keys rotate --service`), the
service signs one last checkpoint with the old key and, in the same transaction, stores an
announcement bound to that checkpoint. The announcement is signed by **both** keys (the old one
vouches for its successor, the new one names its predecessor), so a verifier holding either key
can follow the chain to the other. Checkpoints up to and including the announced one are
signed by the old key; every later checkpoint by the new one (`KeyChain.key_for`). A checkpoint
signed by a retired key after its announcement is a finding: whoever still holds that key may
not extend the log.

The signed message is the UTF-8 text (each line ends with a newline):

    casetrail-key-announcement/v1
    seq <the announcing checkpoint's seq>
    size <its size>
    root <its root, 64 hex digits>
    time <its time, as written in the checkpoint>
    old <the old public key, raw, 64 hex digits>
    new <the new public key, raw, 64 hex digits>

An announcement as JSON carries its checkpoint's fields and signature too:

    {"format": "casetrail-key-announcement/v1", "seq": 7, "size": 700, "root": "<hex>",
     "time": "...", "checkpoint_signature": "<base64>", "old_key": "<64 hex>",
     "new_key": "<64 hex>", "old_signature": "<base64>", "new_signature": "<base64>"}

Normative text and test vectors: docs/specs/key-announcement.md,
docs/specs/vectors/key_announcement.json (tests/specs/test_key_announcement_vectors.py). The
rotation in a running service is proven by tests/evidence/test_key_rotation.py.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from projections.evidence.checkpoints import TABLE as CHECKPOINTS
from projections.evidence.checkpoints import Checkpoint, CheckpointFormatError, key_id

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder

FORMAT: Final = "casetrail-key-announcement/v1"
TABLE: Final = "casetrail_key_announcements"

_HEX32: Final = re.compile(r"[0-9a-f]{64}")
_SIGNATURE: Final = re.compile(r"[A-Za-z0-9+/]{86}==")


def raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signed_message(checkpoint: Checkpoint, old: bytes, new: bytes) -> bytes:
    return (
        f"{FORMAT}\nseq {checkpoint.seq}\nsize {checkpoint.size}\nroot {checkpoint.root.hex()}\n"
        f"time {checkpoint.time}\nold {old.hex()}\nnew {new.hex()}\n"
    ).encode()


@dataclass(frozen=True)
class Announcement:
    """`checkpoint` (signed by the old key) announces `new_key` as the old key's successor."""

    checkpoint: Checkpoint
    old_key: bytes
    new_key: bytes
    old_signature: bytes
    new_signature: bytes

    @classmethod
    def sign(
        cls, checkpoint: Checkpoint, old: Ed25519PrivateKey, new: Ed25519PrivateKey
    ) -> Announcement:
        old_raw, new_raw = raw(old.public_key()), raw(new.public_key())
        message = signed_message(checkpoint, old_raw, new_raw)
        return cls(checkpoint, old_raw, new_raw, old.sign(message), new.sign(message))

    @property
    def seq(self) -> int:
        return self.checkpoint.seq

    @property
    def old_public(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.old_key)

    @property
    def new_public(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.new_key)

    @property
    def old_key_id(self) -> str:
        return key_id(self.old_public)

    @property
    def new_key_id(self) -> str:
        return key_id(self.new_public)

    def problem(self) -> str | None:
        """Why this announcement is not what it claims, as a reason code of
        docs/specs/key-announcement.md (None when it is): both signatures over the message,
        and its checkpoint signed by the old key."""
        if self.old_key == self.new_key:
            return "same-key"
        message = signed_message(self.checkpoint, self.old_key, self.new_key)
        for what, public, signature in (
            ("old", self.old_key, self.old_signature),
            ("new", self.new_key, self.new_signature),
        ):
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
            except (InvalidSignature, ValueError):
                return f"{what}-signature-invalid"
        if self.checkpoint.problem(self.old_public) is not None:
            return "checkpoint-not-old-key"
        return None

    def describe(self) -> str:
        return (
            f"key announcement at checkpoint #{self.seq} (key {self.old_key_id} -> "
            f"{self.new_key_id})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seq": self.checkpoint.seq,
            "size": self.checkpoint.size,
            "root": self.checkpoint.root.hex(),
            "time": self.checkpoint.time,
            "checkpoint_signature": base64.b64encode(self.checkpoint.signature).decode(),
            "old_key": self.old_key.hex(),
            "new_key": self.new_key.hex(),
            "old_signature": base64.b64encode(self.old_signature).decode(),
            "new_signature": base64.b64encode(self.new_signature).decode(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Announcement:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointFormatError(f"not a key announcement: expected format {FORMAT!r}")
        for name in ("old_key", "new_key"):
            if not isinstance(data.get(name), str) or not _HEX32.fullmatch(data[name]):
                raise CheckpointFormatError(f"announcement {name} must be 64 lowercase hex digits")
        signatures = {}
        for name in ("checkpoint_signature", "old_signature", "new_signature"):
            value = data.get(name)
            if not isinstance(value, str) or not _SIGNATURE.fullmatch(value):
                raise CheckpointFormatError(
                    f"announcement {name} must be 64 bytes in standard base64"
                )
            signatures[name] = base64.b64decode(value, validate=True)
        old_key = bytes.fromhex(data["old_key"])
        checkpoint = Checkpoint.from_json(
            {
                "format": "casetrail-checkpoint/v1",
                "seq": data.get("seq"),
                "size": data.get("size"),
                "root": data.get("root"),
                "time": data.get("time"),
                "key_id": key_id(Ed25519PublicKey.from_public_bytes(old_key)),
                "signature": data["checkpoint_signature"],
            }
        )
        return cls(
            checkpoint,
            old_key,
            bytes.fromhex(data["new_key"]),
            signatures["old_signature"],
            signatures["new_signature"],
        )


# --- the chain of keys -------------------------------------------------------------------------


@dataclass
class KeyChain:
    """The service keys linked to a trusted one by valid announcements, and which key was in
    force at each checkpoint number."""

    anchor: Ed25519PublicKey
    # (last seq signed by the key, or None for the current key; the key), oldest first.
    eras: list[tuple[int | None, Ed25519PublicKey]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, anchor: Ed25519PublicKey, announcements: Iterable[Announcement]) -> KeyChain:
        """Follow the announcements (oldest first). The anchor must be one of the chain's
        keys; when it is not, only the anchor is trusted (every checkpoint signed by another
        key then fails to verify, as before any rotation)."""
        chain = cls(anchor)
        valid: list[Announcement] = []
        for announcement in sorted(announcements, key=lambda a: a.seq):
            problem = announcement.problem()
            if problem is not None:
                chain.problems.append(f"{announcement.describe()} is invalid: {problem}")
            elif valid and announcement.old_key != valid[-1].new_key:
                chain.problems.append(
                    f"{announcement.describe()} does not continue the chain (the key in force "
                    f"was {valid[-1].new_key_id})"
                )
            else:
                valid.append(announcement)
        eras: list[tuple[int | None, Ed25519PublicKey]] = [(a.seq, a.old_public) for a in valid]
        eras.append((None, valid[-1].new_public if valid else anchor))
        anchor_raw = raw(anchor)
        if any(raw(key) == anchor_raw for _, key in eras):
            chain.eras = eras
        else:
            chain.eras = [(None, anchor)]
        return chain

    def key_for(self, seq: int) -> Ed25519PublicKey:
        """The key that must have signed checkpoint `seq`."""
        for last, key in self.eras:
            if last is None or seq <= last:
                return key
        return self.eras[-1][1]

    def keys(self) -> list[Ed25519PublicKey]:
        return [key for _, key in self.eras]

    def current(self) -> Ed25519PublicKey:
        return self.eras[-1][1]

    def problem(self, checkpoint: Checkpoint) -> str | None:
        """Why `checkpoint` is not signed by the key in force at its number (None when it is)."""
        expected = self.key_for(checkpoint.seq)
        reason = checkpoint.problem(expected)
        if reason is None:
            return None
        for last, key in self.eras:
            if checkpoint.problem(key) is None:
                if last is not None and checkpoint.seq > last:
                    return (
                        f"{checkpoint.describe()} is signed by key {key_id(key)}, retired at "
                        f"checkpoint #{last}"
                    )
                return (
                    f"{checkpoint.describe()} is signed by key {key_id(key)}, not yet in force "
                    f"(key {key_id(expected)} was)"
                )
        return f"{checkpoint.describe()} has an invalid signature ({reason})"


# --- the table ---------------------------------------------------------------------------------


class AnnouncementStore:
    """Announcements in their own append-only table beside the checkpoints."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        from projections.evidence.log import StoreTables  # noqa: PLC0415 (the drivers, as checkpoints.py)

        self.tables = StoreTables(recorder)

    def exists(self) -> bool:
        return self.tables.table_exists(TABLE)

    def create(self) -> None:
        blob = "BLOB" if self.tables.dialect == "sqlite" else "bytea"
        integer = "INTEGER" if self.tables.dialect == "sqlite" else "bigint"
        with self.tables.writing() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {{{TABLE}}} (seq {integer} PRIMARY KEY, "
                f"old_key {blob} NOT NULL, new_key {blob} NOT NULL, "
                f"old_signature {blob} NOT NULL, new_signature {blob} NOT NULL)"
            )

    def add(self, announcement: Announcement) -> None:
        """Store the announcing checkpoint and the announcement in one transaction: a process
        that sees the checkpoint sees the announcement too. Raises the library's
        IntegrityError when another writer took the checkpoint's `seq` first."""
        checkpoint = announcement.checkpoint
        with self.tables.writing() as db:
            db.execute(
                f"INSERT INTO {{{TABLE}}} (seq, old_key, new_key, old_signature, new_signature) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    checkpoint.seq,
                    announcement.old_key,
                    announcement.new_key,
                    announcement.old_signature,
                    announcement.new_signature,
                ),
            )
            db.execute(
                f"INSERT INTO {{{CHECKPOINTS}}} (seq, size, root, time, key_id, signature) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    checkpoint.seq,
                    checkpoint.size,
                    checkpoint.root,
                    checkpoint.time,
                    checkpoint.key_id,
                    checkpoint.signature,
                ),
            )

    def all(self) -> list[Announcement]:
        """Every announcement with its checkpoint, oldest first (none when the table is not
        there: a store from before rotation existed)."""
        if not self.exists():
            return []
        with self.tables.reading() as db:
            rows = db.execute(
                f"SELECT a.seq AS seq, a.old_key AS old_key, a.new_key AS new_key, "
                "a.old_signature AS old_signature, a.new_signature AS new_signature, "
                "c.size AS size, c.root AS root, c.time AS time, c.key_id AS key_id, "
                f"c.signature AS signature FROM {{{TABLE}}} a "
                f"LEFT JOIN {{{CHECKPOINTS}}} c ON c.seq = a.seq ORDER BY a.seq"
            )
        return [_announcement(row) for row in rows]


def _announcement(row: dict[str, Any]) -> Announcement:
    missing = row["size"] is None
    checkpoint = Checkpoint(
        seq=int(row["seq"]),
        size=0 if missing else int(row["size"]),
        root=b"" if missing else bytes(row["root"]),
        time="" if missing else str(row["time"]),
        key_id="" if missing else str(row["key_id"]),
        signature=b"" if missing else bytes(row["signature"]),
    )
    return Announcement(
        checkpoint,
        bytes(row["old_key"]),
        bytes(row["new_key"]),
        bytes(row["old_signature"]),
        bytes(row["new_signature"]),
    )


def chain_for(anchor: Ed25519PublicKey, announcements: Sequence[Announcement]) -> KeyChain:
    return KeyChain.build(anchor, announcements)
