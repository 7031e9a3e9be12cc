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
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.persistence import ApplicationRecorder

from projections.evidence.log import StoreTables
from projections.evidence.merkle import HASH_SIZE
from projections.follower import Db

FORMAT: Final = "casetrail-checkpoint/v1"
LIST_FORMAT: Final = "casetrail-checkpoints/v1"
TABLE: Final = "casetrail_checkpoints"


class CheckpointFormatError(ValueError):
    """A checkpoint (or file of them) is not in the expected form; the message says where."""


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
        try:
            public_key.verify(
                self.signature, signed_message(self.seq, self.size, self.root, self.time)
            )
        except InvalidSignature:
            return False
        return self.key_id == key_id(public_key)

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
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointFormatError(f"not a checkpoint: expected format {FORMAT!r}")
        try:
            seq, size = data["seq"], data["size"]
            root = bytes.fromhex(data["root"])
            signature = base64.b64decode(data["signature"], validate=True)
            time, key = data["time"], data["key_id"]
        except KeyError as exc:
            raise CheckpointFormatError(f"checkpoint has no {exc.args[0]!r}") from None
        except (ValueError, TypeError, binascii.Error):
            raise CheckpointFormatError("checkpoint root or signature is not valid") from None
        valid = (
            isinstance(seq, int)
            and isinstance(size, int)
            and seq > 0
            and size >= 0
            and len(root) == HASH_SIZE
            and isinstance(time, str)
            and isinstance(key, str)
        )
        if not valid:
            raise CheckpointFormatError("checkpoint fields have the wrong types or sizes")
        return cls(seq=seq, size=size, root=root, time=time, key_id=key, signature=signature)


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
