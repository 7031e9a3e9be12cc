"""Signed checkpoints (tree heads): the tree's size and root at a moment, signed with the
service's Ed25519 key, stored in their own append-only table beside the events, and written as
JSON files that units keep and anyone can check with the service's public key alone.

The signed message is the UTF-8 text (each line ends with a newline):

    casetrail-checkpoint/v1
    seq <n>
    size <leaves>
    root <64 hex digits>
    time <UTC time as written in the checkpoint, e.g. 2026-07-23T10:15:00.123456Z>

A checkpoint file (`casetrail checkpoint export`) is one JSON object

    {"format": "casetrail-checkpoint/v1", "seq": 7, "size": 700, "root": "<hex>",
     "time": "...", "key_id": "<16 hex>", "signature": "<base64>"}

or several: {"format": "casetrail-checkpoints/v1", "checkpoints": [ ... ]}.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    # The table's code needs the store's drivers; a checkpoint file alone does not (issue 23:
    # `casetrail verify-bundle` and `proof check` start without them).
    from eventsourcing.persistence import ApplicationRecorder

    from projections.follower import Db

FORMAT: Final = "casetrail-checkpoint/v1"
LIST_FORMAT: Final = "casetrail-checkpoints/v1"
TABLE: Final = "casetrail_checkpoints"


class CheckpointFormatError(ValueError):
    """A checkpoint (or file of them) is not in the expected form; the message says where,
    `reason` is its code in docs/specs/checkpoint.md."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


# The forms docs/specs/checkpoint.md allows: lowercase hex, RFC 3339 UTC with a final Z, and
# standard base64 of exactly 64 bytes. Stricter than parsing needs, so that one checkpoint has
# one JSON form and its signed text has no line a field could forge.
_ROOT: Final = re.compile(r"[0-9a-f]{64}")
_KEY_ID: Final = re.compile(r"[0-9a-f]{16}")
_TIME: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
_SIGNATURE: Final = re.compile(r"[A-Za-z0-9+/]{86}==")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 8 bytes of SHA-256 of its raw form, in hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def signed_message(seq: int, size: int, root: bytes, time: str) -> bytes:
    return f"{FORMAT}\nseq {seq}\nsize {size}\nroot {root.hex()}\ntime {time}\n".encode()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    size: int
    root: bytes
    time: str
    key_id: str
    signature: bytes

    @classmethod
    def sign(
        cls, key: Ed25519PrivateKey, *, seq: int, size: int, root: bytes, time: str | None = None
    ) -> Checkpoint:
        when = time or utc_now()
        return cls(
            seq=seq,
            size=size,
            root=root,
            time=when,
            key_id=key_id(key.public_key()),
            signature=key.sign(signed_message(seq, size, root, when)),
        )

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True when this checkpoint was signed by `public_key`'s private key, as it stands."""
        return self.problem(public_key) is None

    def problem(self, public_key: Ed25519PublicKey) -> str | None:
        """Why this checkpoint is not `public_key`'s (a reason code of
        docs/specs/checkpoint.md: "signature-invalid", "key-id-mismatch"); None when it is."""
        try:
            public_key.verify(
                self.signature, signed_message(self.seq, self.size, self.root, self.time)
            )
        except InvalidSignature:
            return "signature-invalid"
        return None if self.key_id == key_id(public_key) else "key-id-mismatch"

    def describe(self) -> str:
        return f"checkpoint #{self.seq} (size {self.size}, signed {self.time})"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seq": self.seq,
            "size": self.size,
            "root": self.root.hex(),
            "time": self.time,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        """Read a checkpoint object as docs/specs/checkpoint.md defines it; raises
        CheckpointFormatError (with its `reason` code) for anything else."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointFormatError(
                f"not a checkpoint: expected format {FORMAT!r}", "format-unknown"
            )
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise CheckpointFormatError(f"checkpoint has no {missing[0]!r}", "field-missing")
        seq, size, root, time, key, signature = (data[name] for name in _FIELDS)
        # bool is an int in Python, not in the format.
        if type(seq) is not int or type(size) is not int or seq < 1 or size < 0:
            raise CheckpointFormatError(
                "checkpoint seq must be an integer from 1, size an integer from 0",
                "integer-invalid",
            )
        if seq >= 1 << 63 or size >= 1 << 63:
            raise CheckpointFormatError(
                "checkpoint seq and size must be below 2**63", "integer-invalid"
            )
        if not isinstance(root, str) or not _ROOT.fullmatch(root):
            raise CheckpointFormatError(
                "checkpoint root must be 64 lowercase hex digits", "root-invalid"
            )
        if not isinstance(time, str) or not _TIME.fullmatch(time):
            raise CheckpointFormatError(
                "checkpoint time must be UTC as YYYY-MM-DDTHH:MM:SS[.ffffff]Z", "time-invalid"
            )
        if not isinstance(key, str) or not _KEY_ID.fullmatch(key):
            raise CheckpointFormatError(
                "checkpoint key_id must be 16 lowercase hex digits", "key-id-invalid"
            )
        if (
            not isinstance(signature, str)
            or not _SIGNATURE.fullmatch(signature)
            # One encoding per signature: the unused low bits of the last character are zero.
            or base64.b64encode(base64.b64decode(signature)).decode() != signature
        ):
            raise CheckpointFormatError(
                "checkpoint signature must be 64 bytes in standard base64 (88 characters)",
                "signature-malformed",
            )
        return cls(
            seq=seq,
            size=size,
            root=bytes.fromhex(root),
            time=time,
            key_id=key,
            signature=base64.b64decode(signature, validate=True),
        )


_FIELDS: Final = ("seq", "size", "root", "time", "key_id", "signature")


def checkpoints_document(checkpoints: Sequence[Checkpoint]) -> dict[str, Any]:
    """One checkpoint as itself; several as a list document."""
    if len(checkpoints) == 1:
        return checkpoints[0].to_json()
    return {"format": LIST_FORMAT, "checkpoints": [c.to_json() for c in checkpoints]}


def parse_checkpoints(data: Any) -> list[Checkpoint]:
    if isinstance(data, dict) and data.get("format") == LIST_FORMAT:
        items = data.get("checkpoints")
        if not isinstance(items, list) or not items:
            raise CheckpointFormatError("the checkpoint list is empty")
        return [Checkpoint.from_json(item) for item in items]
    if isinstance(data, list):
        return [Checkpoint.from_json(item) for item in data]
    return [Checkpoint.from_json(data)]


def load_checkpoints(path: Path) -> list[Checkpoint]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointFormatError(f"no checkpoint file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{path} is not a JSON checkpoint file: {exc}") from None
    return parse_checkpoints(data)


# --- the table ----------------------------------------------------------------------------------


class CheckpointStore:
    """Checkpoints in their own append-only table in the events' database."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        from projections.evidence.log import StoreTables  # noqa: PLC0415 (see the imports)

        self.tables = StoreTables(recorder)

    def exists(self) -> bool:
        return self.tables.table_exists(TABLE)

    def create(self) -> None:
        blob = "BLOB" if self.tables.dialect == "sqlite" else "bytea"
        integer = "INTEGER" if self.tables.dialect == "sqlite" else "bigint"
        with self.tables.writing() as db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {{{TABLE}}} (seq {integer} PRIMARY KEY, "
                f"size {integer} NOT NULL, root {blob} NOT NULL, time TEXT NOT NULL, "
                f"key_id TEXT NOT NULL, signature {blob} NOT NULL)"
            )

    def add(self, checkpoint: Checkpoint) -> None:
        """Raises the library's IntegrityError when another writer took this `seq` first."""
        with self.tables.writing() as db:
            db.execute(
                f"INSERT INTO {{{TABLE}}} (seq, size, root, time, key_id, signature) "
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

    def latest(self) -> Checkpoint | None:
        with self.tables.reading() as db:
            rows = db.execute(f"SELECT * FROM {{{TABLE}}} ORDER BY seq DESC LIMIT 1")
        return _checkpoint(rows[0]) if rows else None

    def since(self, after: int = 0, limit: int = 1000) -> list[Checkpoint]:
        """Checkpoints with seq > `after`, oldest first."""
        with self.tables.reading() as db:
            rows = db.execute(
                f"SELECT * FROM {{{TABLE}}} WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
        return [_checkpoint(r) for r in rows]

    def all(self) -> list[Checkpoint]:
        with self.tables.reading() as db:
            return _all(db)

    def of_size(self, size: int) -> Checkpoint | None:
        with self.tables.reading() as db:
            rows = db.execute(
                f"SELECT * FROM {{{TABLE}}} WHERE size = ? ORDER BY seq LIMIT 1", (size,)
            )
        return _checkpoint(rows[0]) if rows else None


def _all(db: Db) -> list[Checkpoint]:
    return [_checkpoint(r) for r in db.execute(f"SELECT * FROM {{{TABLE}}} ORDER BY seq")]


def _checkpoint(row: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        seq=int(row["seq"]),
        size=int(row["size"]),
        root=bytes(row["root"]),
        time=str(row["time"]),
        key_id=str(row["key_id"]),
        signature=bytes(row["signature"]),
    )
