"""The leaf encoding of the Merkle log: one stored event, exactly as stored, as canonical bytes.

Version 1, big-endian (docs/specs, `projections.evidence.log` keeps the tree of them):

    0x01 | position u64 | stream id (16 bytes) | version u64 | topic length u16 | topic (UTF-8)
         | state length u32 | state (the stored, encrypted bytes)

A module of its own, with nothing of the event store's drivers, so that checking a bundle or a
proof offline (`casetrail verify-bundle`, `proof check`) starts fast (issue 23,
tests/integration/test_cli_start.py). Proven byte for byte by tests/specs/test_merkle_vectors.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from uuid import UUID

from projections.evidence.merkle import leaf_hash

if TYPE_CHECKING:
    from eventsourcing.persistence import Notification

LEAF_FORMAT: Final = 1
_HEAD = struct.Struct(">BQ16sQH")


class LeafFormatError(ValueError):
    """A stored record cannot be encoded as a leaf (a field out of range)."""


@dataclass(frozen=True)
class StoredRecord:
    """One stored event as the store holds it: enough to recompute its leaf without a key."""

    position: int
    stream_id: UUID
    version: int
    topic: str
    state: bytes

    @classmethod
    def of(cls, notification: Notification) -> StoredRecord:
        stream = notification.originator_id
        return cls(
            position=notification.id,
            stream_id=stream if isinstance(stream, UUID) else UUID(str(stream)),
            version=notification.originator_version,
            topic=notification.topic,
            state=bytes(notification.state),
        )

    def leaf(self) -> bytes:
        return encode_leaf(self.position, self.stream_id, self.version, self.topic, self.state)

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf())


def encode_leaf(position: int, stream_id: UUID, version: int, topic: str, state: bytes) -> bytes:
    """The canonical bytes of one stored record (see the module's docstring)."""
    topic_bytes = topic.encode("utf-8")
    if len(topic_bytes) > 0xFFFF or len(state) > 0xFFFFFFFF:
        raise LeafFormatError("topic or state too long for a leaf")
    if not (0 <= position < 1 << 64 and 0 <= version < 1 << 64):
        raise LeafFormatError("position and version must fit in 64 bits")
    return b"".join(
        (
            _HEAD.pack(LEAF_FORMAT, position, stream_id.bytes, version, len(topic_bytes)),
            topic_bytes,
            struct.pack(">I", len(state)),
            state,
        )
    )
