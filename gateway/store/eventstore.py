"""The encrypted event store: AES-256-GCM bound to each event's place, and the store's settings.

The domain's `Application` receives these through its environment (`CIPHER_TOPIC`,
`MAPPER_TOPIC`, `PERSISTENCE_MODULE`), never by import; `PERSISTENCE_MODULE` names the store's
write path, `gateway.store.persistence`.

Stored form of an event's state (all bytes):

    0x01 | key id (4) | nonce (12) | AES-256-GCM ciphertext and tag        (the service's key)
    0x02 | data key id (16) | nonce (12) | AES-256-GCM ciphertext and tag (a file's data key)

Format 2 (issue 19) encrypts the events of a case file, a roster entry and a user record, and
their snapshots, under the stream's own data key (`domain.retention.key_scope`; the keys are
wrapped by the service's key in `gateway.store.datakeys`), so that destroying that one key erases
the stream (crypto-shredding) without touching a row. Every other event keeps format 1. A store
written before format 2 reads as it was: its events name the service's key id and keep it.

The associated data authenticated with the ciphertext is the event's place: stream id, version
and topic (plus the header). A state copied into another row, or a row whose id, version or topic
was edited, fails authentication and is refused with `EventIntegrityError`; nothing is returned.
The byte-exact construction is normative in `docs/specs/event-cipher.md`; its known-answer and
negative vectors (`docs/specs/vectors/event_cipher.json`) are checked against this module by
`tests/specs/test_event_cipher_vectors.py`.

Keys that change while the process runs (issue 21). When the environment names the key files'
folder (`CASETRAIL_CIPHER_KEY_DIR`, set by `gateway.settings` unless the event keys come from
`CASETRAIL_EVENT_KEY`), the cipher follows `event.key` and `data-keys.kek` without a restart:

- reading: a state naming a key id (or a data key wrapped by a KEK) this process does not hold
  makes it read both files again and retry once, before `KeyMismatchError`. The files are read
  when they changed (their size, time, inode), and otherwise at most once per `RELOAD_SECONDS`,
  so a flood of rows under an unknown key costs a `stat` each, not a file read each;
- writing: at most once per `RELOAD_SECONDS`, an encryption looks whether a file changed and, if
  so, reads it and encrypts from then on with its first key (the newest). Every process thus
  converges on the rotated key within about a second, with no restart.

A file that cannot be read then (missing, mode too open, a bad key) leaves the keys in memory as
they were; the refusal names the problem. Proven by tests/evidence/test_key_reload.py (two
processes over one SQLite file).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    Cipher,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)
from eventsourcing.utils import Environment, get_topic, resolve_topic, strtobool

from domain.retention import DataErased, KeyScope, class_key_scope, key_scope
from gateway import keyring
from gateway.store.datakeys import DATA_KEY_ID_SIZE, DataKeyProblem, DataKeyTable

FORMAT_V1 = b"\x01"
FORMAT_V2 = b"\x02"
KEY_ID_SIZE = 4
NONCE_SIZE = 12
HEADER_SIZE = 1 + KEY_ID_SIZE + NONCE_SIZE
HEADER_V2_SIZE = 1 + DATA_KEY_ID_SIZE + NONCE_SIZE
KEY_SIZE = 32

# Names in the Application's environment.
ENV_CIPHER_KEYS = "CASETRAIL_CIPHER_KEYS"
ENV_DATA_KEY_CACHE_SECONDS = "CASETRAIL_DATA_KEY_CACHE_SECONDS"
# The key-encryption keys that wrap the data keys (first wraps new ones); absent: the event keys.
ENV_DATA_KEKS = "CASETRAIL_DATA_KEKS"
# The folder of event.key and data-keys.kek, which the cipher follows (see the module docstring).
ENV_KEY_DIR = "CASETRAIL_CIPHER_KEY_DIR"
# How often, at most, the key files are looked at (written) or read again while unchanged (read).
RELOAD_SECONDS = 1.0


def _log() -> Any:
    """The store's logger, imported at its first use: structlog is not loaded at every start
    (`token issue` must start fast: tests/integration/test_cli_start.py)."""
    from gateway.logs import get_logger

    return get_logger("casetrail.store")


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


def _key_table(
    environment: Environment, keks: dict[bytes, bytes], current: bytes
) -> DataKeyTable | None:
    """The data keys' tables in the events' own store (None when the environment names none:
    only format 1 can then be written, as for known-answer vectors)."""
    cache = float(environment.get(ENV_DATA_KEY_CACHE_SECONDS) or 5)
    create = strtobool(environment.get("CREATE_TABLE") or "yes")
    path = environment.get("SQLITE_DBNAME")
    if path:
        return DataKeyTable(
            keks=keks, current_kek=current, sqlite_path=path, cache_seconds=cache, create=create
        )
    if environment.get("POSTGRES_DBNAME"):
        postgres: dict[str, Any] = {
            "host": environment.get("POSTGRES_HOST") or "127.0.0.1",
            "port": int(environment.get("POSTGRES_PORT") or 5432),
            "dbname": environment.get("POSTGRES_DBNAME"),
            "user": environment.get("POSTGRES_USER") or "postgres",
            "password": environment.get("POSTGRES_PASSWORD") or None,
            "connect_timeout": int(environment.get("POSTGRES_CONNECT_TIMEOUT") or 5),
            "schema": environment.get("POSTGRES_SCHEMA"),
        }
        return DataKeyTable(
            keks=keks, current_kek=current, postgres=postgres, cache_seconds=cache, create=create
        )
    return None


_T = TypeVar("_T")


@dataclass(frozen=True)
class _Keys:
    """The keys in force, swapped whole by a reload (so an encryption never mixes two sets)."""

    current_id: bytes
    by_id: dict[bytes, AESGCM]
    texts: tuple[bytes, ...]  # the event keys, then the KEKs: what a reload compares
    unwrapping: dict[bytes, bytes]
    current_kek: bytes

    @classmethod
    def of(cls, keys: list[bytes], kek_keys: list[bytes]) -> _Keys:
        keks = kek_keys or keys
        # The event keys also open what they wrapped before a KEK file existed (a home made
        # between issue 19's data keys and its KEK); `rewrap` + `retire` move those on.
        unwrapping = {key_id(k): k for k in keys} | {key_id(k): k for k in keks}
        return cls(
            current_id=key_id(keys[0]),
            by_id={key_id(k): AESGCM(k) for k in keys},
            texts=(*keys, b"", *keks),
            unwrapping=unwrapping,
            current_kek=keks[0],
        )

    def same_as(self, other: _Keys) -> bool:
        return self.texts == other.texts


class BoundAESGCMCipher(Cipher):
    """AES-256-GCM with associated data; several keys may be configured for rotation.

    `CASETRAIL_CIPHER_KEYS` holds comma-separated base64 keys: the first encrypts, any
    decrypts the events that name its key id.
    """

    def __init__(self, environment: Environment) -> None:
        texts = [t for t in (environment.get(ENV_CIPHER_KEYS) or "").split(",") if t.strip()]
        if not texts:
            raise OSError(f"no event key configured ({ENV_CIPHER_KEYS} is empty)")
        kek_texts = [t for t in (environment.get(ENV_DATA_KEKS) or "").split(",") if t.strip()]
        folder = environment.get(ENV_KEY_DIR)
        self._key_dir = Path(folder) if folder else None
        self._reload_lock = threading.Lock()
        self._looked_at = time.monotonic()  # the files' last stat (writing)
        self._read_at = float("-inf")  # the files' last read forced by an unknown key (reading)
        self._seen = self._files_state()
        self._reload_problem: str | None = None
        self._keys = _Keys.of([decode_key(t) for t in texts], [decode_key(t) for t in kek_texts])
        self._data_keys = _key_table(environment, self._keys.unwrapping, self._keys.current_kek)
        if self._key_dir is not None:
            # The files may have changed since the settings read them: what is read now is
            # what `_seen` describes.
            self._read_files()

    @property
    def current_key_id(self) -> bytes:
        return self._keys.current_id

    # --- following the key files (the module docstring) --------------------------------------

    def _files_state(self) -> tuple[tuple[int, int, int], ...] | None:
        if self._key_dir is None:
            return None
        state = []
        for name in (keyring.EVENT_KEY, keyring.KEK):
            try:
                found = (self._key_dir / name).stat()
            except OSError:
                state.append((0, 0, 0))
            else:
                state.append((found.st_ino, found.st_mtime_ns, found.st_size))
        return tuple(state)

    def _read_files(self) -> bool:
        """Read both files again; True when the keys in memory changed. A file that cannot be
        read leaves them as they were (`_reload_problem` says why)."""
        folder = self._key_dir
        if folder is None:
            return False
        with self._reload_lock:
            # Seen even when unreadable: it is tried again when the files change again (or a
            # key is missing), not at every look, which would log the problem every second.
            self._seen = self._files_state()
            try:
                texts = keyring.load_event_keys(folder, None).texts
                kek_texts = keyring.load_keks(folder)
            except keyring.KeyProblem as exc:
                self._reload_problem = str(exc)
                _log().warning("key_files_unreadable", problem=str(exc))
                return False
            self._reload_problem = None
            keys = _Keys.of([decode_key(t) for t in texts], [decode_key(t) for t in kek_texts])
            if keys.same_as(self._keys):
                return False
            if self._data_keys is not None:
                self._data_keys.set_keks(keys.unwrapping, keys.current_kek)
            before = self._keys.current_id
            self._keys = keys
            _log().info(
                "key_files_reloaded",
                event_key=keys.current_id.hex(),
                previous_event_key=before.hex(),
                event_keys=len(keys.by_id),
            )
            return True

    def _follow_files(self) -> None:
        """Before an encryption: at most once per RELOAD_SECONDS, read the files if changed."""
        if self._key_dir is None or time.monotonic() - self._looked_at < RELOAD_SECONDS:
            return
        self._looked_at = time.monotonic()
        if self._files_state() != self._seen:
            self._read_files()

    def _reload_for_unknown(self) -> bool:
        """A key this process does not hold was met: True when the files were read again and
        the keys changed (then the caller retries once)."""
        if self._key_dir is None:
            return False
        changed = self._files_state() != self._seen
        if not changed and time.monotonic() - self._read_at < RELOAD_SECONDS:
            return False
        self._read_at = time.monotonic()
        return self._read_files()

    def _not_held(self) -> str:
        """What the refusal of an unknown key adds: where the keys were looked for."""
        if self._key_dir is None:
            return "the keys come from the environment: add the missing key there and restart"
        if self._reload_problem is not None:
            return f"the key files could not be read again: {self._reload_problem}"
        return (
            f"{self._key_dir} was read again and does not hold it either: put the key back "
            "(after the current one) from the offline backup"
        )

    # `domain.retention.DataKeyring`: what the application may do with the data keys.
    def has_key(self, stream_id: UUID) -> bool:
        return self.data_keys.has_key(stream_id)

    def key_id(self, stream_id: UUID) -> str | None:
        return self.data_keys.key_id(stream_id)

    def ensure_key(self, stream_id: UUID, scope: str) -> str:
        return self.data_keys.ensure_key(stream_id, scope)

    def close(self) -> None:
        if self._data_keys is not None:
            self._data_keys.close()

    def destroy(self, stream_id: UUID) -> str | None:
        return self.data_keys.destroy(stream_id)

    def is_destroyed(self, stream_id: UUID) -> bool:
        return self._data_keys is not None and self._data_keys.is_destroyed(stream_id)

    def refuses_legacy(self, stream_id: UUID) -> bool:
        """Whether a format-1 event of a keyed stream must be refused: its stream was erased
        (see `BoundMapper.to_domain_event`)."""
        return self.is_destroyed(stream_id)

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        return self.encrypt_with_nonce(plaintext, aad, os.urandom(NONCE_SIZE))

    def encrypt_with_nonce(self, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
        """`encrypt` with a given nonce: only for known-answer vectors. A nonce must never be
        used twice with one key; the service always takes a fresh random one (`encrypt`)."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"the nonce must be {NONCE_SIZE} bytes, found {len(nonce)}")
        self._follow_files()
        keys = self._keys  # one snapshot: a reload in another thread swaps it whole
        header = FORMAT_V1 + keys.current_id + nonce
        aead = keys.by_id[keys.current_id]
        return header + aead.encrypt(header[1 + KEY_ID_SIZE :], plaintext, aad + header)

    def decrypt(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        if ciphertext[:1] == FORMAT_V2 and self._data_keys is not None:
            return self.decrypt_v2(ciphertext, aad)
        header = ciphertext[:HEADER_SIZE]
        if len(header) < HEADER_SIZE or header[:1] != FORMAT_V1:
            raise EventIntegrityError("stored state has no valid casetrail header")
        named = header[1 : 1 + KEY_ID_SIZE]
        aead = self._keys.by_id.get(named)
        if aead is None and self._reload_for_unknown():
            aead = self._keys.by_id.get(named)
        if aead is None:
            raise KeyMismatchError(
                f"stored state was written with key id {named.hex()}, which is not configured "
                f"(current key id {self.current_key_id.hex()}); {self._not_held()}"
            )
        try:
            return aead.decrypt(header[1 + KEY_ID_SIZE :], ciphertext[HEADER_SIZE:], aad + header)
        except InvalidTag:
            raise EventIntegrityError("authentication failed") from None

    # --- format 2: a stream's own data key ---------------------------------------------------

    @property
    def data_keys(self) -> DataKeyTable:
        table = self._data_keys
        if table is None:
            raise OSError("this cipher has no key table (the store's place is not configured)")
        return table

    def encrypt_for_stream(
        self, stream_id: UUID, scope: str, plaintext: bytes, aad: bytes, nonce: bytes | None = None
    ) -> bytes:
        """Format 2 under the stream's data key (made at its first event). `nonce` is for
        known-answer vectors only. A cipher given no store (no key table: only unit tests of the
        cipher itself build one) seals format 1 instead."""
        if self._data_keys is None:
            return self.encrypt(plaintext, aad)
        self._follow_files()
        try:
            found = self._with_reload(lambda: self.data_keys.for_writing(stream_id, scope))
        except DataKeyProblem as exc:
            raise KeyMismatchError(str(exc)) from None
        if found is None:
            raise DataErased(
                "this record was erased (its data key was destroyed); nothing more can be "
                "written to it",
                stream_id=stream_id,
            )
        data_key_id, aead = found
        nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
        header = FORMAT_V2 + data_key_id + nonce
        return header + aead.encrypt(nonce, plaintext, aad + header)

    def _with_reload(self, look_up: Callable[[], _T]) -> _T:
        """`look_up` again once the key files were read again, if a data key's wraps name only
        KEKs this process does not hold (a `keys rotate --kek` it has not seen yet)."""
        try:
            return look_up()
        except DataKeyProblem as exc:
            if not self._reload_for_unknown():
                raise DataKeyProblem(f"{exc}; {self._not_held()}") from None
        return look_up()

    def decrypt_v2(self, ciphertext: bytes, aad: bytes) -> bytes:
        header = ciphertext[:HEADER_V2_SIZE]
        if len(header) < HEADER_V2_SIZE:
            raise EventIntegrityError("stored state has no valid casetrail header")
        data_key_id = header[1 : 1 + DATA_KEY_ID_SIZE]
        try:
            found = self._with_reload(lambda: self.data_keys.for_reading(data_key_id))
        except DataKeyProblem as exc:
            raise KeyMismatchError(str(exc)) from None
        if found is None:
            raise KeyMismatchError(
                f"stored state names data key {data_key_id.hex()}, which the key table does not "
                "have"
            )
        stream_id, aead = found
        if aead is None:
            raise DataErased(
                "this record was erased: its data key was destroyed (crypto-shredding)",
                stream_id=stream_id,
            )
        try:
            return aead.decrypt(
                header[1 + DATA_KEY_ID_SIZE :], ciphertext[HEADER_V2_SIZE:], aad + header
            )
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
        aad = associated_data(originator_id, version, topic)
        scope = self.scope_of(domain_event)
        ciphertext = (
            cipher.encrypt(plaintext, aad)
            if scope is None
            else cipher.encrypt_for_stream(originator_id, str(scope), plaintext, aad)
        )
        return StoredEvent(
            originator_id=originator_id, originator_version=version, topic=topic, state=ciphertext
        )

    def scope_of(self, domain_event: DomainEventProtocol[UUID]) -> KeyScope | None:
        """Whose data key seals the event (`domain.retention.key_scope`); None: the service's."""
        return key_scope(domain_event)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        if self.cipher is None:
            return super().to_domain_event(stored_event)
        cls = resolve_topic(stored_event.topic)
        state: dict[str, Any] = self.transcoder.decode(self._plaintext(stored_event))
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        _upcast(cls, state)
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        if stored_event.state[:1] == FORMAT_V1 and key_scope(domain_event) is not None:
            stream_id = UUID(str(stored_event.originator_id))
            if self._bound_cipher().refuses_legacy(stream_id):
                # An event stored before data keys, of a stream since erased: it still opens
                # with the service's key (rows are never rewritten), so the service refuses it.
                raise DataErased(
                    "this record was erased: its data key was destroyed (crypto-shredding)",
                    stream_id=stream_id,
                )
        return domain_event  # type: ignore[no-any-return]

    def to_plain_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """The event's state as its stored JSON holds it, upcast to its class's version, without
        building the event: for a read model that only copies values out
        (`projections.follower.View.plain`; the access log's view, bench/README.md "eleventh
        round"). Values the transcoder encodes keep their stored form (a UUID is
        `{"_type_": "uuid_hex", "_data_": hex}`, a datetime `{"_type_": "datetime_iso", ...}`);
        the stream id and version are the notification's, not in the state. The same checks
        as `to_domain_event`: authentication, an erased stream refused (`DataErased`).
        Proven equal to `to_domain_event`'s values by tests/projections/test_access_log.py."""
        cls = resolve_topic(stored_event.topic)
        if self.cipher is None or (
            stored_event.state[:1] == FORMAT_V1
            and (issubclass(cls, Snapshot) or class_key_scope(cls) is not None)
        ):
            # Unencrypted, or a format-1 state of a stream that may have been erased since
            # (decided on the decoded event): the domain event's own path, its state encoded
            # again as it was stored.
            event = self.to_domain_event(stored_event)
            state = dict(vars(event))
            del state["originator_id"], state["originator_version"]
            return _loads(self.transcoder.encode(state))
        state = _loads(self._plaintext(stored_event))
        _upcast(cls, state)
        return state

    def _plaintext(self, stored_event: StoredEvent) -> bytes:
        aad = associated_data(
            stored_event.originator_id, stored_event.originator_version, stored_event.topic
        )
        try:
            return self._bound_cipher().decrypt(stored_event.state, aad)
        except EventIntegrityError as exc:
            raise type(exc)(
                f"integrity check failed for stored event {stored_event.originator_id} "
                f"version {stored_event.originator_version}: {exc}. The row was altered, moved "
                "from another place, or written with another key; run `casetrail verify`"
            ) from None

    def _bound_cipher(self) -> BoundAESGCMCipher:
        if not isinstance(self.cipher, BoundAESGCMCipher):
            raise TypeError("BoundMapper needs CIPHER_TOPIC set to BoundAESGCMCipher")
        return self.cipher


def _upcast(cls: type, state: dict[str, Any]) -> None:
    """As the library's Mapper: an event stored by an older class version is upcast step by
    step (`upcast_vN_vM` of its class), so stored rows are never rewritten. The upcasters write
    JSON values only, so that they serve the plain state (`to_plain_state`) as well."""
    class_version = getattr(cls, "class_version", 1)
    from_version = state.pop("class_version", 1)
    while from_version < class_version:
        getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
        from_version += 1


# 19 digits: the shortest integer outside orjson's exact range (below -2**63) has that many.
# Found by mapping every digit to "0" and anything else to " " (`bytes.translate`, in C) and
# looking for 19 zeros: a third of a regular expression's time, which cost more than orjson saves.
_DIGITS_ONLY: Final = bytes(ord("0") if b in b"0123456789" else ord(" ") for b in range(256))
_LONG_DIGITS: Final = b"0" * 19


def _loads(plaintext: bytes) -> dict[str, Any]:
    """A stored state's JSON object. orjson parses it in a third of `json`'s time, but reads an
    integer past 64 bits as a float, losing digits: a state with a run of 19 digits or more
    (any such integer has one) is read by `json`, as is one orjson refuses."""
    if _LONG_DIGITS in plaintext.translate(_DIGITS_ONLY):
        found = json.loads(plaintext)
    else:
        try:
            found = orjson.loads(plaintext)
        except orjson.JSONDecodeError:
            found = json.loads(plaintext)
    if not isinstance(found, dict):
        raise EventIntegrityError("a stored state is not a JSON object")
    return found


# --- the Application's environment ---------------------------------------------------------------

CIPHER_TOPIC = get_topic(BoundAESGCMCipher)
MAPPER_TOPIC = get_topic(BoundMapper)
# The store's write path (`gateway.store.persistence`), named by topic as the library resolves
# it: the writer lock is taken by the recorders that factory builds, on every store opened here.
SQLITE_PERSISTENCE = "gateway.store.persistence:SQLiteStore"
POSTGRES_PERSISTENCE = "gateway.store.persistence_postgres:PostgresStore"


def sqlite_environment(path: str) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": SQLITE_PERSISTENCE, "SQLITE_DBNAME": path}


# Connections each PostgreSQL pool keeps open, and the most it opens under load.
POSTGRES_POOL_KEPT: Final = 1
POSTGRES_POOL_MAX: Final = 15


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
        # Each pool keeps one connection open and grows on demand (up to 15, the library's
        # default, closing what stayed idle 10 minutes): with the library's five kept open,
        # one idle service held 47 of the server's 100 default connections (every process
        # has several pools), and two services with their builders used them all up.
        "POSTGRES_POOL_SIZE": str(POSTGRES_POOL_KEPT),
        "POSTGRES_MAX_OVERFLOW": str(POSTGRES_POOL_MAX - POSTGRES_POOL_KEPT),
        # A pooled connection is checked (one empty round trip) before it is handed out: after
        # the server restarts or fails over, the pool's dead connections are replaced instead of
        # failing a read model's query, which the library does not retry (gateway.store.outages).
        "POSTGRES_PRE_PING": "y",
    }
    schema = parse_qs(parts.query).get("schema")
    if schema:
        env["POSTGRES_SCHEMA"] = schema[0]
    return env


def store_environment(
    database_url: str,
    cipher_keys: list[str] | None,
    data_keks: list[str] | None = None,
    key_dir: Path | None = None,
) -> dict[str, str]:
    """Everything the Application needs to find its store and cipher.

    `database_url` is `sqlite:///path/to/file` or `postgresql://...`. `cipher_keys=None` stores
    plaintext: used only by tests and benchmarks that measure or prove encryption. `key_dir`:
    the folder of the key files the keys were read from, which the cipher then follows (the
    module docstring); None when they came from elsewhere (`CASETRAIL_EVENT_KEY`).
    """
    if database_url.startswith("sqlite:///"):
        env = sqlite_environment(database_url.removeprefix("sqlite:///"))
    else:
        env = postgres_environment(database_url)
    env["MAPPER_TOPIC"] = MAPPER_TOPIC
    if cipher_keys is not None:
        env["CIPHER_TOPIC"] = CIPHER_TOPIC
        env[ENV_CIPHER_KEYS] = ",".join(cipher_keys)
        if data_keks:
            env[ENV_DATA_KEKS] = ",".join(data_keks)
        if key_dir is not None:
            env[ENV_KEY_DIR] = str(key_dir)
    return env


def redacted(env: Mapping[str, str]) -> dict[str, str]:
    """The environment with secrets replaced, for logs and status output."""
    hidden = {ENV_CIPHER_KEYS, ENV_DATA_KEKS, "POSTGRES_PASSWORD"}
    return {k: ("***" if k in hidden and v else v) for k, v in env.items()}
