"""Key files under `$CASETRAIL_HOME/keys/`: created once with mode 0600, loaded with clear errors.

- event.key: AES-256 key(s) that encrypt stored events (or CASETRAIL_EVENT_KEY);
- token-signing.key/.pub: Ed25519 pair that signs/verifies access tokens (the service verifies
  with CASETRAIL_TOKEN_PUBLIC_KEYS when an identity provider signs them instead);
- service-signing.key/.pub: Ed25519 pair the service signs its messages and checkpoints with;
- index.key: HMAC key for blind-index lookups in read models.

A key is never printed, logged, or written anywhere else.

The event store's codec (`gateway.store.eventstore`) is imported only by the functions of the
event key: loading a public key stays light for the offline checks of the command line (issue 23).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyProblem(Exception):
    """A key is missing or unusable; the message says which and what to do."""


EVENT_KEY = "event.key"
TOKEN_KEY = "token-signing.key"  # noqa: S105 (a file name)
TOKEN_PUB = "token-signing.pub"  # noqa: S105
SERVICE_KEY = "service-signing.key"
SERVICE_PUB = "service-signing.pub"
INDEX_KEY = "index.key"


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
