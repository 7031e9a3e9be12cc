"""Key files under `$CASETRAIL_HOME/keys/`: created once with mode 0600, loaded with clear errors.

- event.key: AES-256 key(s) that encrypt stored events (or CASETRAIL_EVENT_KEY);
- data-keys.kek: AES-256 key(s) that wrap the files' data keys (issue 19; the key-encryption key,
  rotated and retired on its own: `casetrail keys rotate --kek`, `keys retire-kek`);
- token-signing.key/.pub: Ed25519 pair that signs/verifies access tokens (the service verifies
  with CASETRAIL_TOKEN_PUBLIC_KEYS when an identity provider signs them instead);
- service-signing.key/.pub: Ed25519 pair the service signs its messages and checkpoints with;
- index.key: HMAC key for blind-index lookups in read models.

A key is never printed, logged, or written anywhere else.

Rotation (`casetrail keys rotate`, `keys status`; docs/operations.md, "Keys"):

- event key: `rotate_event_key` writes a new key first in event.key (it encrypts new events);
  the old ones stay after it, for reading the events they wrote. Running processes follow the
  file, and data-keys.kek likewise, without a restart (`gateway.store.eventstore`, "Keys that
  change while the process runs": re-read on an unknown key id, at most once a second while
  unchanged; writers switch to the first key within a second; tests/evidence/test_key_reload.py);
- token key: `rotate_token_key` replaces the pair; the old public key stays as
  `token-signing.<key id>.pub` and verifies tokens until its grace ends (the longest token
  lifetime by default), then it is no longer loaded (`token_public_key_paths`);
- service key: `stage_service_key` writes the successor as `service-signing.next.key` first,
  the store then announces it in a checkpoint signed by the old key
  (`gateway.evidence.maintainer.Checkpointer.announce`), and `install_service_key` puts it in
  place, keeping the old public key as `service-signing.<key id>.pub` for old bundles/reports.
- `key-history.json` records when each key was made and retired (its age in `keys status`);
  without it (keys made before it existed) a key's age is its file's.

Proven by tests/evidence/test_key_rotation.py.

The event store's codec (`gateway.store.eventstore`) is imported only by the functions of the
event key: loading a public key stays light for the offline checks of the command line (issue 23).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyProblem(Exception):
    """A key is missing or unusable; the message says which and what to do."""


EVENT_KEY = "event.key"
KEK = "data-keys.kek"
TOKEN_KEY = "token-signing.key"  # noqa: S105 (a file name)
TOKEN_PUB = "token-signing.pub"  # noqa: S105
SERVICE_KEY = "service-signing.key"
SERVICE_PUB = "service-signing.pub"
INDEX_KEY = "index.key"
SERVICE_NEXT_KEY = "service-signing.next.key"
SERVICE_NEXT_PUB = "service-signing.next.pub"
HISTORY = "key-history.json"
HISTORY_FORMAT: Final = "casetrail-key-history/v1"
# Tokens live at most this long (gateway.auth.MAX_TTL_SECONDS, kept equal by a test): an old
# token public key is kept that long after a rotation by default.
TOKEN_GRACE_SECONDS: Final = 7 * 24 * 3600


def _write_secret(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only; never overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _ed25519_pair(private_path: Path, public_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    _write_secret(
        private_path,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_public(
        public_path,
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def init_keys(keys_dir: Path) -> list[str]:
    """Create whichever keys do not exist yet; return the names of those created."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys_dir, 0o700)
    created: list[str] = []
    if not (keys_dir / KEK).exists():
        from gateway.store.eventstore import new_key_text  # noqa: PLC0415 (see the docstring)

        _write_secret(keys_dir / KEK, new_key_text().encode() + b"\n")
        created.append(KEK)
    if not (keys_dir / EVENT_KEY).exists():
        from gateway.store.eventstore import new_key_text  # noqa: PLC0415 (see the docstring)

        _write_secret(keys_dir / EVENT_KEY, new_key_text().encode() + b"\n")
        created.append(EVENT_KEY)
    for private, public in ((TOKEN_KEY, TOKEN_PUB), (SERVICE_KEY, SERVICE_PUB)):
        if not (keys_dir / private).exists():
            _ed25519_pair(keys_dir / private, keys_dir / public)
            created += [private, public]
    if not (keys_dir / INDEX_KEY).exists():
        _write_secret(keys_dir / INDEX_KEY, base64.b64encode(os.urandom(32)) + b"\n")
        created.append(INDEX_KEY)
    return created


def _read(path: Path, what: str) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise KeyProblem(
            f"{what} not found at {path}: run `casetrail keys init` (or restore it from backup)"
        ) from None
    if path.name.endswith(".key") and mode & 0o077:
        raise KeyProblem(
            f"{what} at {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
        )
    return path.read_bytes()


@dataclass(frozen=True)
class EventKeys:
    """Base64 AES-256 keys; the first encrypts new events."""

    texts: list[str]


def load_event_keys(keys_dir: Path, env_value: str | None) -> EventKeys:
    if env_value:
        texts = [t.strip() for t in env_value.split(",") if t.strip()]
        source = "CASETRAIL_EVENT_KEY"
    else:
        texts = [t.strip() for t in _read(keys_dir / EVENT_KEY, "event key").decode().split()]
        source = str(keys_dir / EVENT_KEY)
    if not texts:
        raise KeyProblem(f"the event key in {source} is empty")
    from gateway.store.eventstore import decode_key  # noqa: PLC0415 (see the docstring)

    for text in texts:
        try:
            decode_key(text)
        except ValueError as exc:
            raise KeyProblem(f"{exc} (in {source})") from None
    return EventKeys(texts)


def load_private_key(path: Path, what: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, what), password=None)
    except ValueError:
        raise KeyProblem(f"{what} at {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"{what} at {path} is not an Ed25519 key")
    return key


def load_public_key(path: Path, what: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path, what))
    except ValueError:
        raise KeyProblem(f"{what} at {path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyProblem(f"{what} at {path} is not an Ed25519 key")
    return key


def load_index_key(keys_dir: Path) -> bytes:
    return base64.b64decode(_read(keys_dir / INDEX_KEY, "index key").strip())


# --- rotation ---------------------------------------------------------------------------------


def _utc(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write `path` whole or not at all (a temporary file renamed over it), durably."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """The key id checkpoints and reports name a public key by (first 8 bytes of SHA-256 of
    its raw form, hex): the same as `projections.evidence.checkpoints.key_id`."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_history(keys_dir: Path) -> list[dict[str, Any]]:
    """The recorded keys (kind, key_id, created, retired, verify_until), oldest first."""
    path = keys_dir / HISTORY
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise KeyProblem(
            f"{path} is not a key history file: restore it from backup or remove it (key ages "
            "then come from the key files)"
        ) from None
    if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
        raise KeyProblem(f"{path} is not a {HISTORY_FORMAT} file")
    return [entry for entry in data.get("keys", []) if isinstance(entry, dict)]


def _record(
    keys_dir: Path,
    kind: str,
    created: str | None,
    retired: str | None,
    new: str,
    old: str | None,
    verify_until: str | None = None,
) -> None:
    entries = load_history(keys_dir)
    if old is not None:
        found = [e for e in entries if e.get("kind") == kind and e.get("key_id") == old]
        if not found:
            entries.append({"kind": kind, "key_id": old, "created": created})
            found = entries[-1:]
        for entry in found:
            entry["retired"] = retired
            if verify_until is not None:
                entry["verify_until"] = verify_until
    entries.append({"kind": kind, "key_id": new, "created": retired})
    document = {"format": HISTORY_FORMAT, "keys": entries}
    _replace(keys_dir / HISTORY, (json.dumps(document, indent=2) + "\n").encode(), 0o600)


def _mtime(path: Path) -> str | None:
    try:
        return _utc(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    except FileNotFoundError:
        return None


def event_key_ids(keys_dir: Path) -> list[str]:
    """The ids (hex) of the keys in event.key, the encrypting one first."""
    from gateway.store.eventstore import decode_key, key_id  # noqa: PLC0415 (see the docstring)

    texts = _read(keys_dir / EVENT_KEY, "event key").decode().split()
    return [key_id(decode_key(text)).hex() for text in texts]


def load_keks(keys_dir: Path) -> list[str]:
    """The key-encryption keys (first wraps new data keys); empty when the file is absent (a
    home made before issue 19: the event keys wrap the data keys then)."""
    path = keys_dir / KEK
    if not path.exists():
        return []
    texts = [t.strip() for t in _read(path, "key-encryption key").decode().split() if t.strip()]
    from gateway.store.eventstore import decode_key  # noqa: PLC0415 (see the docstring)

    for text in texts:
        try:
            decode_key(text)
        except ValueError as exc:
            raise KeyProblem(f"{exc} (in {path})") from None
    return texts


def rotate_kek(keys_dir: Path) -> str:
    """Put a new key-encryption key first in data-keys.kek (creating the file with the event
    key's current key after it when absent: that one wrapped the data keys so far). Returns the
    new key id (hex). Running processes follow the file within a second; then `keys
    retire-kek OLD_ID`."""
    from gateway.store.eventstore import decode_key, key_id, new_key_text  # noqa: PLC0415

    path = keys_dir / KEK
    texts = load_keks(keys_dir) or [load_event_keys(keys_dir, None).texts[0]]
    new_text = new_key_text()
    if path.exists():
        _replace(path, ("\n".join([new_text, *texts]) + "\n").encode(), 0o600)
    else:
        _write_secret(path, ("\n".join([new_text, *texts]) + "\n").encode())
    return key_id(decode_key(new_text)).hex()


def drop_kek(keys_dir: Path, kek_id: str) -> None:
    """Remove a retired key-encryption key from data-keys.kek (never the current one)."""
    from gateway.store.eventstore import decode_key, key_id  # noqa: PLC0415

    path = keys_dir / KEK
    texts = load_keks(keys_dir)
    ids = [key_id(decode_key(t)).hex() for t in texts]
    if kek_id not in ids:
        raise KeyProblem(f"{path} holds no such key-encryption key (it holds {', '.join(ids)})")
    if ids[0] == kek_id:
        raise KeyProblem(f"{kek_id} is the current key-encryption key: rotate first (--kek)")
    kept = [t for t, i in zip(texts, ids, strict=True) if i != kek_id]
    _replace(path, ("\n".join(kept) + "\n").encode(), 0o600)


def rotate_event_key(keys_dir: Path) -> str:
    """Put a new event key first in event.key (it encrypts what is written from now on) and
    keep the others after it (they still decrypt what they wrote). Returns the new key id (hex).

    The file is replaced whole (`_replace`): running processes, which follow it, read either the
    old list or the new one, never half of one."""
    from gateway.store.eventstore import decode_key, key_id, new_key_text  # noqa: PLC0415

    path = keys_dir / EVENT_KEY
    texts = _read(path, "event key").decode().split()
    if not texts:
        raise KeyProblem(f"the event key in {path} is empty: restore it from backup")
    created = _mtime(path)
    new_text = new_key_text()
    _replace(path, ("\n".join([new_text, *texts]) + "\n").encode(), 0o600)
    new_id = key_id(decode_key(new_text)).hex()
    old_id = key_id(decode_key(texts[0])).hex()
    _record(keys_dir, "event", created, _utc(), new_id, old_id)
    return new_id


@dataclass(frozen=True)
class TokenRotation:
    new_key_id: str
    old_key_id: str
    verify_until: str


def rotate_token_key(keys_dir: Path, grace_seconds: int = TOKEN_GRACE_SECONDS) -> TokenRotation:
    """A new token signing pair; the old public key stays (`token-signing.<id>.pub`) and
    verifies tokens for `grace_seconds` more (those already issued live until they expire)."""
    old_public = load_public_key(keys_dir / TOKEN_PUB, "token public key")
    load_private_key(keys_dir / TOKEN_KEY, "token signing key")  # present and usable
    old_id = public_key_id(old_public)
    created = _mtime(keys_dir / TOKEN_PUB)
    retired_path = keys_dir / f"token-signing.{old_id}.pub"
    if not retired_path.exists():
        _replace(retired_path, _public_pem(old_public), 0o644)
    new = Ed25519PrivateKey.generate()
    # Private first: a crash between the two leaves a pair that verifies nothing it signs,
    # which `keys rotate --token` run again repairs.
    _replace(keys_dir / TOKEN_KEY, _private_pem(new), 0o600)
    _replace(keys_dir / TOKEN_PUB, _public_pem(new.public_key()), 0o644)
    now = datetime.now(UTC)
    until = _utc(now + timedelta(seconds=grace_seconds))
    new_id = public_key_id(new.public_key())
    _record(keys_dir, "token", created, _utc(now), new_id, old_id, verify_until=until)
    return TokenRotation(new_id, old_id, until)


def token_public_key_paths(keys_dir: Path, now: datetime | None = None) -> tuple[Path, ...]:
    """The token public keys to verify with: the current one and each retired one whose grace
    has not ended."""
    moment = _utc(now)
    paths = [keys_dir / TOKEN_PUB]
    for entry in load_history(keys_dir):
        until = entry.get("verify_until")
        if entry.get("kind") != "token" or not isinstance(until, str) or until <= moment:
            continue
        retired = keys_dir / f"token-signing.{entry.get('key_id')}.pub"
        if retired.exists():
            paths.append(retired)
    return tuple(paths)


def stage_service_key(keys_dir: Path) -> Ed25519PrivateKey:
    """The successor of the service signing key, written (0600) before the store announces it,
    so that a rotation cut short is finished by running it again: an existing staged key is
    used as it is."""
    staged = keys_dir / SERVICE_NEXT_KEY
    if staged.exists():
        return load_private_key(staged, "staged service signing key")
    key = Ed25519PrivateKey.generate()
    _write_secret(staged, _private_pem(key))
    return key


def install_service_key(keys_dir: Path) -> str:
    """Put the staged successor in place (after the store announced it); the old public key
    stays as `service-signing.<id>.pub`. Returns the new key id."""
    staged = load_private_key(keys_dir / SERVICE_NEXT_KEY, "staged service signing key")
    old_public = load_public_key(keys_dir / SERVICE_PUB, "service public key")
    old_id = public_key_id(old_public)
    created = _mtime(keys_dir / SERVICE_PUB)
    retired_path = keys_dir / f"service-signing.{old_id}.pub"
    if not retired_path.exists():
        _replace(retired_path, _public_pem(old_public), 0o644)
    _replace(keys_dir / SERVICE_PUB, _public_pem(staged.public_key()), 0o644)
    _replace(keys_dir / SERVICE_KEY, _private_pem(staged), 0o600)
    (keys_dir / SERVICE_NEXT_KEY).unlink()
    new_id = public_key_id(staged.public_key())
    _record(keys_dir, "service", created, _utc(), new_id, old_id)
    return new_id


@dataclass(frozen=True)
class KeyInfo:
    kind: str  # event | token | service | index
    key_id: str
    use: str  # what the key does now
    created: str | None  # UTC, from the history or the file's time
    retired: str | None = None
    verify_until: str | None = None

    def age_days(self, now: datetime | None = None) -> float | None:
        if self.created is None:
            return None
        made = datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return ((now or datetime.now(UTC)) - made).total_seconds() / 86400


def key_status(keys_dir: Path) -> list[KeyInfo]:
    """Every key the directory holds, with what it is used for and when it was made."""
    history = {(e.get("kind"), e.get("key_id")): e for e in load_history(keys_dir)}

    def info(kind: str, kid: str, use: str, file: Path) -> KeyInfo:
        entry = history.get((kind, kid), {})
        return KeyInfo(
            kind,
            kid,
            use,
            entry.get("created") or _mtime(file),
            entry.get("retired"),
            entry.get("verify_until"),
        )

    found: list[KeyInfo] = []
    for position, kid in enumerate(event_key_ids(keys_dir)):
        use = "encrypts new events" if position == 0 else "decrypts the events it wrote"
        found.append(info("event", kid, use, keys_dir / EVENT_KEY))
    from gateway.store.eventstore import decode_key, key_id  # noqa: PLC0415 (see the docstring)

    for position, text in enumerate(load_keks(keys_dir)):
        use = "wraps new data keys" if position == 0 else "opens the data keys it wrapped"
        found.append(info("kek", key_id(decode_key(text)).hex(), use, keys_dir / KEK))
    token = load_public_key(keys_dir / TOKEN_PUB, "token public key")
    found.append(info("token", public_key_id(token), "signs tokens", keys_dir / TOKEN_PUB))
    valid = set(token_public_key_paths(keys_dir))
    for path in sorted(keys_dir.glob("token-signing.*.pub")):
        kid = path.name.removeprefix("token-signing.").removesuffix(".pub")
        use = "verifies tokens (grace)" if path in valid else "expired (verifies nothing)"
        found.append(info("token", kid, use, path))
    service = load_public_key(keys_dir / SERVICE_PUB, "service public key")
    found.append(
        info("service", public_key_id(service), "signs checkpoints", keys_dir / SERVICE_PUB)
    )
    for path in sorted(keys_dir.glob("service-signing.*.pub")):
        kid = path.name.removeprefix("service-signing.").removesuffix(".pub")
        if kid != "next":
            found.append(info("service", kid, "verifies older checkpoints", path))
    if (keys_dir / SERVICE_NEXT_KEY).exists():
        staged = load_private_key(keys_dir / SERVICE_NEXT_KEY, "staged service signing key")
        found.append(
            info(
                "service",
                public_key_id(staged.public_key()),
                "staged (rotation unfinished)",
                keys_dir / SERVICE_NEXT_KEY,
            )
        )
    return found
