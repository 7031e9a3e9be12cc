"""Sealing: HPKE as RFC 9180 defines it, the envelope's checks, and the unit's credentials file.

`cryptography.hazmat.primitives.hpke` provides HPKE (cryptography >= 46), so casetrail does not
implement it. These tests hold the library to RFC 9180: a small reference implementation of
the base-mode key schedule written here from the RFC (with cryptography's HKDF, X25519 and
ChaCha20-Poly1305 primitives) reproduces the RFC's test vector A.2.1, and opens what the
library's `Suite.encrypt` produces, so the library's output is RFC 9180 base mode for
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gateway.messaging.broker_config import CertificateAuthority, NatsLayout, ensure_tls
from gateway.messaging.sealing import (
    SUITE,
    CredentialsProblem,
    Rejected,
    UnitCredentials,
    derive_key,
    message_id,
    open_envelope,
    seal,
    street_token,
    unit_user,
)

# RFC 9180, Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, mode_base.
A21 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "skRm": "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
    "pkRm": "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a",
    "skEm": "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600",
    "enc": "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
    "shared_secret": "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7",
    "key": "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91",
    "base_nonce": "5c4d98150661b848853b547f",
    # Sequence number 0.
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad": "436f756e742d30",
    "ct": "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db"
    "21993c62ce81883d2dd1b51a28",
}
V = {k: bytes.fromhex(v) for k, v in A21.items()}

# Identifiers of RFC 9180 section 7.
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003
KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
HPKE_SUITE = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (KEM_ID, KDF_ID, AEAD_ID))


def _extract(salt: bytes, ikm: bytes) -> bytes:
    mac = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def reference_decap(enc: bytes, sk_r: X25519PrivateKey) -> bytes:
    """DHKEM(X25519, HKDF-SHA256).Decap, RFC 9180 section 4.1."""
    dh = sk_r.exchange(X25519PublicKey.from_public_bytes(enc))
    kem_context = enc + sk_r.public_key().public_bytes_raw()
    eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", kem_context, 32)


def reference_key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """KeySchedule for mode_base (0x00) with the default PSK, RFC 9180 section 5.1."""
    psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE, shared_secret, b"secret", b"")
    key = labeled_expand(HPKE_SUITE, secret, b"key", context, 32)
    base_nonce = labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)
    return key, base_nonce


def reference_open(ciphertext: bytes, sk_r: X25519PrivateKey, info: bytes, aad: bytes) -> bytes:
    """Single-shot Open at sequence number 0: enc (32 bytes) then the AEAD ciphertext."""
    enc, ct = ciphertext[:32], ciphertext[32:]
    key, nonce = reference_key_schedule(reference_decap(enc, sk_r), info)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, aad)


def test_the_reference_reproduces_rfc_9180_vector_a_2_1() -> None:
    sk_r = X25519PrivateKey.from_private_bytes(V["skRm"])
    assert sk_r.public_key().public_bytes_raw() == V["pkRm"]
    assert X25519PrivateKey.from_private_bytes(V["skEm"]).public_key().public_bytes_raw() == V[
        "enc"
    ]
    shared = reference_decap(V["enc"], sk_r)
    assert shared == V["shared_secret"]
    assert reference_key_schedule(shared, V["info"]) == (V["key"], V["base_nonce"])
    assert reference_open(V["enc"] + V["ct"], sk_r, V["info"], V["aad"]) == V["pt"]


def test_the_library_suite_is_rfc_9180_base_mode_x25519_hkdf_sha256_chacha20poly1305() -> None:
    sk_r = X25519PrivateKey.from_private_bytes(V["skRm"])
    sealed = SUITE.encrypt(V["pt"], sk_r.public_key(), info=V["info"])
    # Single shot: no application AAD, so the AEAD's is empty; the info binds the context.
    assert reference_open(sealed, sk_r, V["info"], b"") == V["pt"]
    assert SUITE.decrypt(sealed, sk_r, info=V["info"]) == V["pt"]
    with pytest.raises(Exception):  # noqa: B017 (the library's own InvalidTag type)
        SUITE.decrypt(sealed, sk_r, info=b"another context")
    # A fresh ephemeral key each time.
    assert SUITE.encrypt(V["pt"], sk_r.public_key(), info=V["info"])[:32] != sealed[:32]


# --- the envelope ---------------------------------------------------------------------------------

SERVICE = Ed25519PrivateKey.generate()
UNIT_KEY = X25519PrivateKey.generate()
USER = "u0123456789abcdef"
MESSAGE = "0f" * 16
CONTENT: dict[str, object] = {
    "id": MESSAGE,
    "kind": "assignment",
    "body": {"assignment": {"task": "家访。"}},
}


def sealed(content: dict[str, object] = CONTENT, recipient: str = USER) -> bytes:
    return seal(
        dict(content),
        recipient=recipient,
        message=MESSAGE,
        public_key=UNIT_KEY.public_key(),
        signer=SERVICE,
    )


def opened(
    data: bytes, recipient: str = USER, key: X25519PrivateKey = UNIT_KEY
) -> dict[str, object]:
    return open_envelope(
        data, recipient=recipient, private_key=key, service_key=SERVICE.public_key()
    ).content


def edit(data: bytes, field: str, change: str) -> bytes:
    doc = json.loads(data)
    doc[field] = change
    return json.dumps(doc).encode()


def test_a_sealed_message_opens_for_its_unit_and_holds_nothing_in_clear() -> None:
    data = sealed()
    assert opened(data) == CONTENT
    assert "家访".encode() not in data
    assert b"assignment" not in data
    assert set(json.loads(data)) == {"v", "id", "to", "ct", "sig"}


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: edit(d, "ct", json.loads(d)["ct"][:-4] + "AAAA"), "bad_signature"),
        (lambda d: edit(d, "sig", json.loads(d)["sig"][:-4] + "AAAA"), "bad_signature"),
        (lambda d: edit(d, "id", "1e" * 16), "bad_signature"),
        (lambda d: edit(d, "to", "u" + "9" * 16), "wrong_recipient"),
        (lambda d: edit(d, "v", 2), "unsupported_version"),  # type: ignore[arg-type]
        (lambda d: d[:-5], "malformed"),
        (lambda d: b"\x00" * 40, "malformed"),
    ],
)
def test_a_damaged_message_is_rejected_with_its_reason(damage: object, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        opened(damage(sealed()))  # type: ignore[operator]
    assert caught.value.reason == reason
    assert str(caught.value)


def test_a_message_for_another_unit_does_not_open_even_if_readdressed() -> None:
    other_unit = "u" + "1" * 16
    for_other = sealed(recipient=other_unit)
    with pytest.raises(Rejected) as caught:
        opened(for_other)
    assert caught.value.reason == "wrong_recipient"
    # Signed for the other unit: changing `to` breaks the signature.
    with pytest.raises(Rejected) as caught:
        opened(edit(for_other, "to", USER))
    assert caught.value.reason == "bad_signature"
    # The right address but another unit's key: it does not open.
    with pytest.raises(Rejected) as caught:
        opened(sealed(), key=X25519PrivateKey.generate())
    assert caught.value.reason == "undecryptable"


def test_the_content_must_carry_the_message_id() -> None:
    with pytest.raises(ValueError, match="message id"):
        sealed({**CONTENT, "id": "other"})


def test_names_and_message_ids_are_stable_opaque_and_keyed() -> None:
    key_a, key_b = os.urandom(32), os.urandom(32)
    police = "chengguan-police-station"
    assert unit_user(key_a, police) == unit_user(key_a, police)
    assert unit_user(key_a, police) != unit_user(key_b, police)
    assert "police" not in unit_user(key_a, police)
    assert street_token(key_a, "s") != unit_user(key_a, "s")[1:]
    ids = derive_key(key_a, "message-ids")
    assert message_id(ids, "case/3", USER) == message_id(ids, "case/3", USER)
    assert message_id(ids, "case/3", USER) != message_id(ids, "case/3", "u" + "1" * 16)
    assert message_id(ids, "case/3", USER) != message_id(ids, "case/4", USER)


# --- the credentials file -------------------------------------------------------------------------


def credentials(tmp_path: Path) -> UnitCredentials:
    layout = NatsLayout(tmp_path)
    ensure_tls(layout)
    ca = CertificateAuthority.load(layout)
    key, cert = ca.issue(USER, client=True)
    return UnitCredentials(
        unit_id="chengguan-police-station",
        sealing_key=UNIT_KEY,
        tls_key_pem=key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
        tls_cert_pem=cert.public_bytes(Encoding.PEM),
        ca_pem=ca.pem,
        service_key=SERVICE.public_key(),
    )


def test_the_credentials_file_is_private_complete_and_never_overwritten(tmp_path: Path) -> None:
    made = credentials(tmp_path)
    path = tmp_path / "unit.pem"
    made.write(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = UnitCredentials.load(path)
    assert loaded.unit_id == made.unit_id
    assert loaded.user == USER
    assert loaded.sealing_key.private_bytes_raw() == UNIT_KEY.private_bytes_raw()
    assert loaded.ca_pem == made.ca_pem
    with pytest.raises(FileExistsError):
        made.write(path)
    path.chmod(0o640)
    with pytest.raises(CredentialsProblem, match="chmod 600"):
        UnitCredentials.load(path)


def test_a_file_that_is_not_casetrail_credentials_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CredentialsProblem, match="not a casetrail unit credentials file"):
        UnitCredentials.load(path)
