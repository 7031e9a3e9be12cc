"""Sealed messages to units: HPKE to the unit's key, signed by the service.

The normative, byte-exact definition is `docs/specs/notice.md` (with known-answer vectors in
`docs/specs/vectors/notice.json`, checked against this module both ways by
`tests/specs/test_notice_vectors.py`). In short, a message on the broker is one JSON envelope
(`ENVELOPE_VERSION` 2):

    {"v": 2, "id": <message id>, "to": <recipient's opaque user>,
     "ct": <base64url>, "sig": <base64url>}

- `ct` is HPKE (RFC 9180) base mode, single shot, with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
  ChaCha20-Poly1305 (`cryptography.hazmat.primitives.hpke`) to the unit's X25519 public key: the
  encapsulated key (32 bytes) followed by the AEAD ciphertext. The HPKE `info` binds it to the
  version, the recipient and the message id, so a ciphertext moved to another message or unit does
  not open.
- The sealed plaintext is the content padded to a size bucket (`BUCKETS`: 1, 4, 16 or 64 KiB; a
  4-byte big-endian length, the content, zeros), so that a notice's size does not tell its kind:
  every kind's ordinary content fits the first bucket, and an envelope's size depends on its
  bucket alone (`tests/messaging/test_sealing.py`, sizes of every kind).
- `sig` is the service's Ed25519 signature over the version's label, the recipient, the message
  id and `ct` (itself an authenticated encryption of the content).

Version 1 envelopes (unpadded, label `casetrail/msg/v1`), sealed before padding existed, may still
wait in a unit's consumer (the stream keeps 30 days): `open_envelope` still opens them; `seal`
writes version 2 only. A changed `v` breaks the signature, since the label is signed.

The content is JSON: `{"id", "kind", "issued_at", "event", "body"}`; bodies carry ids, codes, dates
and an assignment's task, never a name, an ID number or a case description. The broker sees only
the envelope: an opaque id and user, ciphertext, and one of four sizes.

Message ids and broker names are HMACs under keys derived from the service's index key, so they are
stable (a re-published event keeps its id, which the stream deduplicates) and reveal nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.x509.oid import NameOID

ENVELOPE_VERSION: Final = 2  # what `seal` writes
OPENABLE_VERSIONS: Final = (1, 2)  # what `open_envelope` reads: 1 is legacy, unpadded
SUITE: Final = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
# Sizes of the padded plaintext. The first holds every notice of fixed form with room to spare;
# factors of 4 bound the overhead; the last stays far below the broker's 1 MiB message limit.
BUCKETS: Final = (1024, 4096, 16384, 65536)
_LENGTH_BYTES: Final = 4
MAX_CONTENT: Final = BUCKETS[-1] - _LENGTH_BYTES
MAX_ENVELOPE: Final = 256 * 1024
SIGNATURE_BYTES: Final = 64


class Rejected(Exception):
    """A message that must not be accepted. `reason` is a stable code; the message explains."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- opaque names ---------------------------------------------------------------------------------


def derive_key(index_key: bytes, purpose: str) -> bytes:
    """A purpose-bound subkey of the service's index key."""
    return hmac.new(index_key, b"casetrail/derive/" + purpose.encode(), hashlib.sha256).digest()


def opaque_token(key: bytes, kind: str, value: str) -> str:
    """16 hex digits naming `value` on the broker; the same value always gives the same token."""
    return hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:16]


def unit_user(index_key: bytes, unit_id: str) -> str:
    return "u" + opaque_token(derive_key(index_key, "nats-names"), "unit", unit_id)


def street_token(index_key: bytes, street: str) -> str:
    return "s" + opaque_token(derive_key(index_key, "nats-names"), "street", street)


def message_id(key: bytes, event_id: str, recipient: str) -> str:
    """The message id (and `Nats-Msg-Id`) of one event sent to one recipient: 32 hex digits."""
    return hmac.new(key, f"{event_id}\x00{recipient}".encode(), hashlib.sha256).hexdigest()[:32]


def event_id(originator_id: object, originator_version: int) -> str:
    """An event's identity in the store: its stream and its version there."""
    return f"{originator_id}/{originator_version}"


# --- the envelope (docs/specs/notice.md) ----------------------------------------------------------

_B64URL: Final = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url(data: bytes) -> str:
    """base64url (RFC 4648 section 5) without padding: how `ct` and `sig` are written."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    """The bytes of canonical base64url without padding; `ValueError` for any other text (a
    padded, standard-alphabet or non-canonical form), so that one byte string has one text."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not the canonical base64url of its bytes (trailing bits set)")
    return data


def label(version: int) -> bytes:
    """The domain-separation label of an envelope version: `casetrail/msg/v<version>`."""
    return f"casetrail/msg/v{version}".encode()


def info(recipient: str, message: str, version: int = ENVELOPE_VERSION) -> bytes:
    """The HPKE `info`: label 0x00 recipient 0x00 message id (the AAD is empty)."""
    return label(version) + b"\x00" + recipient.encode() + b"\x00" + message.encode()


def signed_bytes(
    recipient: str, message: str, ciphertext: bytes, version: int = ENVELOPE_VERSION
) -> bytes:
    """What the service signs: label 0x00 "sig" 0x00 recipient 0x00 message id 0x00 ct."""
    return (
        label(version)
        + b"\x00sig\x00"
        + recipient.encode()
        + b"\x00"
        + message.encode()
        + b"\x00"
        + ciphertext
    )


def content_bytes(content: dict[str, Any]) -> bytes:
    """The content as the service writes it: compact JSON, non-ASCII as UTF-8."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def bucket_of(length: int) -> int:
    """The padded size of a content of `length` bytes: the smallest bucket that holds it."""
    for size in BUCKETS:
        if _LENGTH_BYTES + length <= size:
            return size
    raise ValueError(
        f"a notice's content is at most {MAX_CONTENT} bytes; this one has {length}: shorten "
        "what the notice carries"
    )


def pad(content: bytes) -> bytes:
    """uint32 big-endian length || content || zeros, to the smallest bucket that holds it."""
    size = bucket_of(len(content))
    return (
        len(content).to_bytes(_LENGTH_BYTES, "big")
        + content
        + bytes(size - _LENGTH_BYTES - len(content))
    )


def unpad(padded: bytes) -> bytes:
    """The content of a padded plaintext; `Rejected("bad_padding")` unless it is exactly the
    form `pad` writes (a bucket's size, the smallest that holds it, zeros after the content)."""
    if len(padded) not in BUCKETS:
        raise Rejected(
            "bad_padding", f"the sealed plaintext has {len(padded)} bytes, not a bucket's size"
        )
    length = int.from_bytes(padded[:_LENGTH_BYTES], "big")
    if length > len(padded) - _LENGTH_BYTES:
        raise Rejected("bad_padding", "the sealed plaintext's length prefix exceeds its bucket")
    if bucket_of(length) != len(padded):
        raise Rejected("bad_padding", "the sealed plaintext is padded beyond the smallest bucket")
    if any(padded[_LENGTH_BYTES + length :]):
        raise Rejected("bad_padding", "the sealed plaintext's padding is not all zero bytes")
    return padded[_LENGTH_BYTES : _LENGTH_BYTES + length]


def envelope(
    *,
    recipient: str,
    message: str,
    ciphertext: bytes,
    signer: Ed25519PrivateKey,
    version: int = ENVELOPE_VERSION,
) -> bytes:
    """The envelope's bytes around a sealed `ciphertext` (signed here; Ed25519 is deterministic,
    so the same ciphertext always gives the same envelope)."""
    signature = signer.sign(signed_bytes(recipient, message, ciphertext, version))
    document = {
        "v": version,
        "id": message,
        "to": recipient,
        "ct": b64url(ciphertext),
        "sig": b64url(signature),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def seal(
    content: dict[str, Any],
    *,
    recipient: str,
    message: str,
    public_key: X25519PublicKey,
    signer: Ed25519PrivateKey,
) -> bytes:
    """The envelope of `content` (which must hold `id` == `message`) for one recipient."""
    if content.get("id") != message:
        raise ValueError("the content's id must be the message id")
    plaintext = pad(content_bytes(content))
    ciphertext = SUITE.encrypt(plaintext, public_key, info=info(recipient, message))
    return envelope(recipient=recipient, message=message, ciphertext=ciphertext, signer=signer)


@dataclass(frozen=True)
class Opened:
    message_id: str
    content: dict[str, Any]
    version: int = ENVELOPE_VERSION


_ID = re.compile(r"^[0-9a-f]{32}$")


def open_envelope(
    data: bytes,
    *,
    recipient: str,
    private_key: X25519PrivateKey,
    service_key: Ed25519PublicKey,
) -> Opened:
    """Verify, then decrypt, in the order of docs/specs/notice.md section 7. Raises `Rejected`
    with the reason of the first check that fails; returns only verified content."""
    if len(data) > MAX_ENVELOPE:
        raise Rejected("malformed", f"the message is larger than {MAX_ENVELOPE} bytes")
    try:
        # Decoded first: `json.loads` would also take UTF-16 or UTF-32 bytes.
        document = json.loads(data.decode("utf-8"))
    except ValueError:  # also a UnicodeDecodeError
        raise Rejected("malformed", "the message is not JSON: not a casetrail envelope") from None
    if not isinstance(document, dict):
        raise Rejected("malformed", "the message is not a JSON object: not a casetrail envelope")
    version = document.get("v")
    # `true == 1` and `2.0 == 2` in Python: only a JSON integer is a version.
    if type(version) is not int:
        raise Rejected("malformed", "the envelope's `v` is missing or not an integer")
    if version not in OPENABLE_VERSIONS:
        raise Rejected(
            "unsupported_version",
            f"envelope version {version} is not supported (this client opens "
            f"{', '.join(map(str, OPENABLE_VERSIONS))}); upgrade the client",
        )
    message, to = document.get("id"), document.get("to")
    ct_text, sig_text = document.get("ct"), document.get("sig")
    if not (
        isinstance(message, str)
        and isinstance(to, str)
        and isinstance(ct_text, str)
        and isinstance(sig_text, str)
    ):
        raise Rejected("malformed", "the envelope lacks one of `id`, `to`, `ct`, `sig` as a string")
    try:
        ciphertext, signature = unb64url(ct_text), unb64url(sig_text)
    except ValueError:
        raise Rejected(
            "malformed", "`ct` or `sig` is not canonical base64url without padding"
        ) from None
    if not _ID.match(message):
        raise Rejected("malformed", "the message id is not 32 lowercase hex digits")
    if to != recipient:
        raise Rejected("wrong_recipient", "the message is addressed to another unit")
    try:
        if len(signature) != SIGNATURE_BYTES:
            raise InvalidSignature
        service_key.verify(signature, signed_bytes(recipient, message, ciphertext, version))
    except InvalidSignature:
        raise Rejected(
            "bad_signature",
            "the service's signature does not verify: the message was altered or not sent by "
            "casetrail",
        ) from None
    try:
        plaintext = SUITE.decrypt(ciphertext, private_key, info=info(recipient, message, version))
    except Exception:  # any failure to open is the same refusal
        raise Rejected(
            "undecryptable", "the message does not open with this unit's key (rotated key?)"
        ) from None
    if version >= 2:
        plaintext = unpad(plaintext)
    try:
        content = json.loads(plaintext.decode("utf-8"))
    except ValueError:
        raise Rejected("malformed", "the sealed content is not JSON") from None
    if not isinstance(content, dict) or content.get("id") != message:
        raise Rejected("malformed", "the sealed content does not carry the message's id")
    return Opened(message, content, version)


# --- a unit's credentials file --------------------------------------------------------------------

_SEALING_LABEL: Final = "CASETRAIL SEALING KEY"
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


class CredentialsProblem(Exception):
    """A unit's credentials file is missing, too open, or not one casetrail wrote."""


@dataclass(frozen=True)
class UnitCredentials:
    """What a unit's operator holds, in one file (mode 0600), never in the service's store.

    PEM blocks, in this order: the TLS client key and certificate for the broker (read as they
    stand by `ssl.load_cert_chain`), the project's CA, the service's signing public key, and the
    unit's X25519 sealing key (`CASETRAIL SEALING KEY`, PKCS#8 DER).
    """

    unit_id: str
    sealing_key: X25519PrivateKey
    tls_key_pem: bytes
    tls_cert_pem: bytes
    ca_pem: bytes
    service_key: Ed25519PublicKey

    @property
    def user(self) -> str:
        cert = x509.load_pem_x509_certificate(self.tls_cert_pem)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value)

    def render(self) -> bytes:
        sealing = self.sealing_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        service = self.service_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        body = base64.encodebytes(sealing).decode()
        header = (
            "casetrail unit credentials: keep this file secret (mode 0600); it is the only copy "
            "of the unit's keys.\n"
            f"unit: {self.unit_id}\n"
        )
        return (
            header.encode()
            + self.tls_key_pem
            + self.tls_cert_pem
            + self.ca_pem
            + service
            + f"-----BEGIN {_SEALING_LABEL}-----\n{body}-----END {_SEALING_LABEL}-----\n".encode()
        )

    def write(self, path: Path) -> None:
        """Create the file with mode 0600; never overwrite one."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.render())
            handle.flush()
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: Path) -> UnitCredentials:
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CredentialsProblem(f"no unit credentials file at {path}") from None
        if mode & 0o077:
            raise CredentialsProblem(
                f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
            )
        unit_match = re.search(r"^unit: (\S+)$", text, re.MULTILINE)
        blocks = [(m.group(1), m.group(0).encode() + b"\n") for m in _PEM_BLOCK.finditer(text)]
        keys = [pem for label, pem in blocks if label == "PRIVATE KEY"]
        certs = [pem for label, pem in blocks if label == "CERTIFICATE"]
        publics = [pem for label, pem in blocks if label == "PUBLIC KEY"]
        sealing = [m.group(2) for m in _PEM_BLOCK.finditer(text) if m.group(1) == _SEALING_LABEL]
        if unit_match is None or len(keys) != 1 or len(certs) != 2 or len(publics) != 1:
            raise CredentialsProblem(f"{path} is not a casetrail unit credentials file")
        if len(sealing) != 1:
            raise CredentialsProblem(f"{path} holds no sealing key")
        try:
            sealing_key = serialization.load_der_private_key(
                base64.decodebytes(sealing[0].encode()), password=None
            )
            service_key = serialization.load_pem_public_key(publics[0])
        except ValueError:
            raise CredentialsProblem(f"{path}: a key in the file cannot be read") from None
        if not isinstance(sealing_key, X25519PrivateKey) or not isinstance(
            service_key, Ed25519PublicKey
        ):
            raise CredentialsProblem(f"{path}: the keys are not of the expected kinds")
        return cls(
            unit_id=unit_match.group(1),
            sealing_key=sealing_key,
            tls_key_pem=keys[0],
            tls_cert_pem=certs[0],
            ca_pem=certs[1],
            service_key=service_key,
        )


def public_key_text(key: X25519PublicKey) -> str:
    """The raw 32 public bytes in base64: how the registry stores a sealing key."""
    return base64.b64encode(key.public_bytes_raw()).decode()


def public_key_from_text(text: str) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(base64.b64decode(text))
