"""The encrypted event store: AES-256-GCM bound to each event's place, and the store's settings.

The domain's `Application` receives these through its environment (`CIPHER_TOPIC`,
`MAPPER_TOPIC`, `PERSISTENCE_MODULE`), never by import; `PERSISTENCE_MODULE` names the store's
write path, `gateway.store.persistence`.

Stored form of an event's state (all bytes):

    0x01 | key id (4) | nonce (12) | AES-256-GCM ciphertext and tag

The associated data authenticated with the ciphertext is the event's place: stream id, version
and topic (plus the header). A state copied into another row, or a row whose id, version or topic
was edited, fails authentication and is refused with `EventIntegrityError`; nothing is returned.
The byte-exact construction is normative in `docs/specs/event-cipher.md`; its known-answer and
negative vectors (`docs/specs/vectors/event_cipher.json`) are checked against this module by
`tests/specs/test_event_cipher_vectors.py`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    Cipher,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)
from eventsourcing.utils import Environment, get_topic, resolve_topic

FORMAT_V1 = b"\x01"
KEY_ID_SIZE = 4
NONCE_SIZE = 12
HEADER_SIZE = 1 + KEY_ID_SIZE + NONCE_SIZE
KEY_SIZE = 32

# Names in the Application's environment.
ENV_CIPHER_KEYS = "CASETRAIL_CIPHER_KEYS"


class EventIntegrityError(MapperDeserialisationError):
    """A stored event failed authentication: it was altered, moved, or written with another key."""


class KeyMismatchError(EventIntegrityError):
    """The stored event names a key id that the configured keys do not have."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"casetrail event key id\x00" + key).digest()[:KEY_ID_SIZE]


def decode_key(text: str) -> bytes:
    """A base64 AES-256 key; the message says what is wrong with it (never the key itself)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("the event key is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise ValueError(f"the event key must be {KEY_SIZE} bytes (AES-256), found {len(key)}")
    return key


def new_key_text() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


AAD_LABEL = "casetrail/event/v1"


def associated_data(originator_id: UUID | str, version: int, topic: str) -> bytes:
    """An event's place; the cipher adds its header (format, key id, nonce) to this. The stream
    id is written as `str(UUID)` (lowercase, hyphenated), the version in decimal."""
    return f"{AAD_LABEL}\x00{originator_id}\x00{version}\x00{topic}".encode()


class BoundAESGCMCipher(Cipher):
    """AES-256-GCM with associated data; several keys may be configured for rotation.

    `CASETRAIL_CIPHER_KEYS` holds comma-separated base64 keys: the first encrypts, any
    decrypts the events that name its key id.
    """

    def __init__(self, environment: Environment) -> None:
        texts = [t for t in (environment.get(ENV_CIPHER_KEYS) or "").split(",") if t.strip()]
        if not texts:
            raise OSError(f"no event key configured ({ENV_CIPHER_KEYS} is empty)")
        keys = [decode_key(t) for t in texts]
        self._current = keys[0]
        self.current_key_id = key_id(keys[0])
        self._by_id = {key_id(k): AESGCM(k) for k in keys}

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        return self.encrypt_with_nonce(plaintext, aad, os.urandom(NONCE_SIZE))

    def encrypt_with_nonce(self, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
        """`encrypt` with a given nonce: only for known-answer vectors. A nonce must never be
        used twice with one key; the service always takes a fresh random one (`encrypt`)."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"the nonce must be {NONCE_SIZE} bytes, found {len(nonce)}")
        header = FORMAT_V1 + self.current_key_id + nonce
        aead = self._by_id[self.current_key_id]
        return header + aead.encrypt(header[1 + KEY_ID_SIZE :], plaintext, aad + header)

    def decrypt(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        header = ciphertext[:HEADER_SIZE]
        if len(header) < HEADER_SIZE or header[:1] != FORMAT_V1:
            raise EventIntegrityError("stored state has no valid casetrail header")
        aead = self._by_id.get(header[1 : 1 + KEY_ID_SIZE])
        if aead is None:
            raise KeyMismatchError(
                f"stored state was written with key id {header[1 : 1 + KEY_ID_SIZE].hex()}, "
                f"which is not configured (current key id {self.current_key_id.hex()})"
            )
        try:
            return aead.decrypt(header[1 + KEY_ID_SIZE :], ciphertext[HEADER_SIZE:], aad + header)
        except InvalidTag:
            raise EventIntegrityError("authentication failed") from None


class BoundMapper(Mapper[UUID]):
    """A mapper whose cipher authenticates each event's stream id, version and topic."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if self.cipher is None:
            return super().to_stored_event(domain_event)
        cipher = self._bound_cipher()
        topic = get_topic(domain_event.__class__)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        version = state.pop("originator_version")
        # As the library's Mapper: a class past version 1 stores its version, for upcasting.
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        plaintext = self.transcoder.encode(state)
        ciphertext = cipher.encrypt(plaintext, associated_data(originator_id, version, topic))
        return StoredEvent(
            originator_id=originator_id, originator_version=version, topic=topic, state=ciphertext
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        if self.cipher is None:
            return super().to_domain_event(stored_event)
        cipher = self._bound_cipher()
        aad = associated_data(
            stored_event.originator_id, stored_event.originator_version, stored_event.topic
        )
        try:
            plaintext = cipher.decrypt(stored_event.state, aad)
        except EventIntegrityError as exc:
            raise type(exc)(
                f"integrity check failed for stored event {stored_event.originator_id} "
                f"version {stored_event.originator_version}: {exc}. The row was altered, moved "
                "from another place, or written with another key; run `casetrail verify`"
            ) from None
        cls = resolve_topic(stored_event.topic)
        state: dict[str, Any] = self.transcoder.decode(plaintext)
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        # As the library's Mapper: an event stored by an older class version is upcast step by
        # step (`upcast_vN_vM` of its class), so stored rows are never rewritten.
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event  # type: ignore[no-any-return]

    def _bound_cipher(self) -> BoundAESGCMCipher:
        if not isinstance(self.cipher, BoundAESGCMCipher):
            raise TypeError("BoundMapper needs CIPHER_TOPIC set to BoundAESGCMCipher")
        return self.cipher


# --- the Application's environment ---------------------------------------------------------------

CIPHER_TOPIC = get_topic(BoundAESGCMCipher)
MAPPER_TOPIC = get_topic(BoundMapper)
# The store's write path (`gateway.store.persistence`), named by topic as the library resolves
# it: the writer lock is taken by the recorders that factory builds, on every store opened here.
SQLITE_PERSISTENCE = "gateway.store.persistence:SQLiteStore"
POSTGRES_PERSISTENCE = "gateway.store.persistence:PostgresStore"


def sqlite_environment(path: str) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": SQLITE_PERSISTENCE, "SQLITE_DBNAME": path}


def postgres_environment(url: str) -> dict[str, str]:
    """`postgresql://user:password@host:port/dbname?schema=NAME` as the library's settings."""
    parts = urlparse(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ValueError("CASETRAIL_DATABASE_URL must look like postgresql://user@host:5432/dbname")
    env = {
        "PERSISTENCE_MODULE": POSTGRES_PERSISTENCE,
        "POSTGRES_DBNAME": unquote(parts.path.strip("/")),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        # Saves go through one server-side function: avoids pipeline-mode stalls on large saves.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # A pooled connection is checked (one empty round trip) before it is handed out: after
        # the server restarts or fails over, the pool's dead connections are replaced instead of
        # failing a read model's query, which the library does not retry (gateway.store.outages).
        "POSTGRES_PRE_PING": "y",
    }
    schema = parse_qs(parts.query).get("schema")
    if schema:
        env["POSTGRES_SCHEMA"] = schema[0]
    return env


def store_environment(database_url: str, cipher_keys: list[str] | None) -> dict[str, str]:
    """Everything the Application needs to find its store and cipher.

    `database_url` is `sqlite:///path/to/file` or `postgresql://...`. `cipher_keys=None` stores
    plaintext: used only by tests and benchmarks that measure or prove encryption.
    """
    if database_url.startswith("sqlite:///"):
        env = sqlite_environment(database_url.removeprefix("sqlite:///"))
    else:
        env = postgres_environment(database_url)
    env["MAPPER_TOPIC"] = MAPPER_TOPIC
    if cipher_keys is not None:
        env["CIPHER_TOPIC"] = CIPHER_TOPIC
        env[ENV_CIPHER_KEYS] = ",".join(cipher_keys)
    return env


def redacted(env: Mapping[str, str]) -> dict[str, str]:
    """The environment with secrets replaced, for logs and status output."""
    hidden = {ENV_CIPHER_KEYS, "POSTGRES_PASSWORD"}
    return {k: ("***" if k in hidden and v else v) for k, v in env.items()}
