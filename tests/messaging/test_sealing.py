"""Sealing: HPKE as RFC 9180 defines it, the envelope's checks, and the unit's credentials file.

`cryptography.hazmat.primitives.hpke` provides HPKE (cryptography >= 46), so casetrail does not
implement it. These tests hold the library to RFC 9180: a small reference implementation of
the base-mode key schedule written here from the RFC (with cryptography's HKDF, X25519 and
ChaCha20-Poly1305 primitives) reproduces the RFC's test vector A.2.1, and opens what the
library's `Suite.encrypt` produces, so the library's output is RFC 9180 base mode for
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.

The envelope (docs/specs/notice.md; its vectors are checked by tests/specs/test_notice_vectors.py):
each damage rejected with its reason, padding to size buckets and every other padded form refused,
version 1 envelopes (unpadded, sealed before padding) still opened, and the sizes of sealed notices
of every kind, built from real events by the relay's own router, all in one bucket. Over a real
nats-server, `casetrail unit listen` takes a version 1 envelope left in the stream and refuses a
badly padded one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.clock import local_today
from domain.commands import MAX_NOTE
from domain.compliance.config import RULE_IDS
from domain.compliance.findings import Finding
from domain.notices import OpenAssignment, reminders_due
from domain.taxonomy import Purpose, Role
from domain.units import RegisterUnit
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.messaging.broker_config import CertificateAuthority, NatsLayout, ensure_tls
from gateway.messaging.registry import register_unit
from gateway.messaging.relay import (
    CHECKPOINT_KIND,
    Directory,
    Outgoing,
    Publisher,
    Router,
    checkpoint_event,
)
from gateway.messaging.sealing import (
    SUITE,
    CredentialsProblem,
    Rejected,
    UnitCredentials,
    content_bytes,
    derive_key,
    envelope,
    info,
    message_id,
    open_envelope,
    pad,
    public_key_from_text,
    seal,
    street_token,
    unit_user,
    unpad,
)
from gateway.settings import Settings
from projections.evidence.checkpoints import Checkpoint
from tests.integration.planted import planted_case
from tests.messaging.stack import build_stack, wait_for

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

# The envelope's size for each bucket of the padded plaintext (docs/specs/notice.md section 6).
ENVELOPE_SIZES = {1024: 1605, 4096: 5701, 16384: 22085, 65536: 87621}

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
    assert (
        X25519PrivateKey.from_private_bytes(V["skEm"]).public_key().public_bytes_raw() == V["enc"]
    )
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
        (lambda d: edit(d, "v", 3), "unsupported_version"),  # type: ignore[arg-type]
        # The label is signed: a version 2 envelope presented as version 1 does not verify.
        (lambda d: edit(d, "v", 1), "bad_signature"),  # type: ignore[arg-type]
        (lambda d: edit(d, "v", True), "malformed"),  # type: ignore[arg-type]
        (lambda d: edit(d, "v", 2.0), "malformed"),  # type: ignore[arg-type]
        (lambda d: edit(d, "v", "2"), "malformed"),
        (lambda d: edit(d, "ct", json.loads(d)["ct"] + "=="), "malformed"),
        (lambda d: edit(d, "ct", "+" + json.loads(d)["ct"][1:]), "malformed"),
        (lambda d: edit(d, "id", "0F" * 16), "malformed"),
        (lambda d: d[:-5], "malformed"),
        (lambda d: b"\x00" * 40, "malformed"),
        (lambda d: d.decode().encode("utf-16"), "malformed"),
        (lambda d: b"[" + d + b"]", "malformed"),
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


# --- padding to size buckets (docs/specs/notice.md section 4) ------------------------------------


@pytest.mark.parametrize(
    ("length", "bucket"),
    [(0, 1024), (1020, 1024), (1021, 4096), (4092, 4096), (4093, 16384), (65532, 65536)],
)
def test_a_content_is_padded_to_the_smallest_bucket_that_holds_it(length: int, bucket: int) -> None:
    content = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    padded = pad(content)
    assert len(padded) == bucket
    assert padded[:4] == length.to_bytes(4, "big")
    assert padded[4 + length :] == bytes(bucket - 4 - length)
    assert unpad(padded) == content


def test_a_content_larger_than_the_last_bucket_is_not_sealed() -> None:
    with pytest.raises(ValueError, match="at most 65532 bytes"):
        pad(bytes(65533))


@pytest.mark.parametrize(
    ("padded", "why"),
    [
        ((5).to_bytes(4, "big") + b"hello" + bytes(1014), "not a bucket's size"),  # 1023 bytes
        ((1021).to_bytes(4, "big") + bytes(1020), "exceeds its bucket"),
        ((5).to_bytes(4, "big") + b"hello" + bytes(4087), "beyond the smallest bucket"),
        ((5).to_bytes(4, "big") + b"hello" + bytes(1014) + b"\x01", "not all zero"),
        (b"", "not a bucket's size"),
    ],
)
def test_a_padded_plaintext_in_any_other_form_is_bad_padding(padded: bytes, why: str) -> None:
    with pytest.raises(Rejected, match=why) as caught:
        unpad(padded)
    assert caught.value.reason == "bad_padding"


def test_bad_padding_under_a_valid_seal_and_signature_is_rejected() -> None:
    """Only a wrong sender can produce it (the padding is inside the AEAD and the signature):
    the opening still refuses it, after the signature and the decryption pass."""
    plaintext = pad(content_bytes(CONTENT))[:-1] + b"\x01"
    ciphertext = SUITE.encrypt(plaintext, UNIT_KEY.public_key(), info=info(USER, MESSAGE))
    data = envelope(recipient=USER, message=MESSAGE, ciphertext=ciphertext, signer=SERVICE)
    with pytest.raises(Rejected) as caught:
        opened(data)
    assert caught.value.reason == "bad_padding"


def test_an_unpadded_version_1_envelope_still_opens() -> None:
    """What the service sealed before padding (and may still wait in a consumer: the stream
    keeps 30 days), built here literally as the previous `seal` did."""
    label = b"casetrail/msg/v1"
    plaintext = json.dumps(CONTENT, ensure_ascii=False, separators=(",", ":")).encode()
    hpke_info = label + b"\x00" + USER.encode() + b"\x00" + MESSAGE.encode()
    ciphertext = SUITE.encrypt(plaintext, UNIT_KEY.public_key(), info=hpke_info)
    signed = label + b"\x00sig\x00" + USER.encode() + b"\x00" + MESSAGE.encode() + b"\x00"
    old = {
        "v": 1,
        "id": MESSAGE,
        "to": USER,
        "ct": base64.urlsafe_b64encode(ciphertext).decode().rstrip("="),
        "sig": base64.urlsafe_b64encode(SERVICE.sign(signed + ciphertext)).decode().rstrip("="),
    }
    data = json.dumps(old, separators=(",", ":")).encode()
    result = open_envelope(
        data, recipient=USER, private_key=UNIT_KEY, service_key=SERVICE.public_key()
    )
    assert (result.content, result.version) == (CONTENT, 1)
    # Relabelled as version 2 it does not verify.
    with pytest.raises(Rejected) as caught:
        opened(edit(data, "v", 2))  # type: ignore[arg-type]
    assert caught.value.reason == "bad_signature"


def test_a_new_seal_is_version_2_and_its_size_is_its_buckets_alone() -> None:
    for task in ("家访。", "核实监护情况。" * 20):
        data = sealed({**CONTENT, "body": {"assignment": {"task": task}}})
        assert json.loads(data)["v"] == 2
        assert len(data) == ENVELOPE_SIZES[1024]


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


# --- sizes of sealed notices of every kind -------------------------------------------------------

STREET = "chengguan-street"
# Ids as long as their bounds allow (a unit code: 64 characters), so that the sizes below are the
# largest the fixed-form kinds reach.
LONG_UNIT = "chengguan-" + "x" * 54
LONG_USER = "user-" + "y" * 59


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    return Settings.from_env({"CASETRAIL_HOME": str(home)})


@pytest.fixture
def application(settings: Settings) -> Iterator[CaseTrail]:
    opened_application = open_application(settings)
    try:
        yield opened_application
    finally:
        opened_application.close()


def notices_of_every_kind(settings: Settings, application: CaseTrail, task: str) -> list[Outgoing]:
    """Real events through the relay's own router: a new-clue alert, an assignment with `task`,
    an escalation, both compliance alerts, a due-date reminder, deadline facts, and a checkpoint
    as the relay
    sends it."""
    for unit, kind, street in (
        (LONG_UNIT, "school_district_office", STREET),
        ("chengguan-governance-office", "governance_office", STREET),
        ("county-audit", "compliance_audit", "county"),
        ("chengguan-" + "s" * 54, "street_supervision", STREET),
    ):
        register_unit(
            settings,
            application,
            RegisterUnit(unit_id=unit, name="测试单位", type=kind, street=street),
            settings.home / f"{unit}.pem",
        )
    coordinator = Actor(LONG_USER, Role.COORDINATOR, "chengguan-governance-office", STREET)
    reporter = Actor(LONG_USER, Role.REPORTER, "dongshan-village", STREET)
    case_id = application.report_clue(cmd.ReportClue(**planted_case().body), reporter)
    due = local_today() + timedelta(days=1)
    assignment_id = application.change_case(
        case_id,
        coordinator,
        "assign_unit",
        lambda c: c.assign_unit(
            cmd.AssignUnit(unit=LONG_UNIT, function="family", task=task, due_on=due),
            by=coordinator.as_record(),
        ),
    )
    application.change_case(
        case_id,
        coordinator,
        "escalate",
        lambda c: c.escalate(
            cmd.Escalate(to="school_district_office", to_level="county", reason="紧急。"),
            by=coordinator.as_record(),
        ),
    )
    outsider = Actor(LONG_USER, Role.UNIT_MEMBER, "far-" + "z" * 60, "far-street")
    with pytest.raises(Exception):  # noqa: B017 (a refused read: AccessRefused, stored)
        application.read_case(case_id, outsider, Purpose.COMPLIANCE_REVIEW, str(uuid.uuid4()))
    emergency = Actor(LONG_USER, Role.COORDINATOR, "far-" + "z" * 60, "far-street")
    application.read_case(
        case_id, emergency, Purpose.EMERGENCY, str(uuid.uuid4()), break_glass_reason="急需。"
    )
    # A due-date reminder as scans stored them before issue 14 (still routed), and every
    # deadline fact, escalations included, a year and more on.
    old = OpenAssignment(case_id, str(assignment_id), LONG_UNIT, due)
    application.store_events(reminders_due([old], due + timedelta(days=1)))
    facts = application.record_missed_deadlines(datetime.now(UTC) + timedelta(days=400))
    assert {type(f).__name__ for f in facts} >= {"ConsultationOverdue", "DeadlineEscalated"}
    # A compliance finding (issue 15): its longest rule id, counts of four digits.
    application.record_findings(
        [
            Finding(
                rule=max(RULE_IDS, key=len),
                evidence=list(range(2**53 - 10**3, 2**53)),
                person=LONG_USER,
                role="unit_member",
                unit=LONG_UNIT,
                street=STREET,
                case_ids=[str(case_id)] * 10**3,
                window_start=datetime.now(UTC).isoformat(),
                window_end=datetime.now(UTC).isoformat(),
                detail={},
            )
        ]
    )

    directory = Directory(application)
    directory.load()
    router = Router(application, directory)
    found: list[Outgoing] = []
    for notification in application.notifications():
        found += router.route(application.mapper.to_domain_event(notification))
    signer = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    checkpoint = Checkpoint.sign(signer, seq=2**53, size=2**53, root=bytes(32))
    found += [
        Outgoing(
            r,
            CHECKPOINT_KIND,
            checkpoint_event(checkpoint.seq),
            checkpoint.time,
            checkpoint.to_json(),
        )
        for r in directory.all()
    ]
    return found


def sealed_sizes(settings: Settings, notices: list[Outgoing]) -> dict[str, set[int]]:
    signer = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    publisher = Publisher(None, signer, os.urandom(32))  # type: ignore[arg-type]
    sizes: dict[str, set[int]] = {}
    for out in notices:
        _, data = publisher.envelope(out)
        sizes.setdefault(out.kind, set()).add(len(data))
    return sizes


def test_sizes_of_sealed_notices_of_every_kind_fall_into_the_same_buckets(
    settings: Settings, application: CaseTrail
) -> None:
    """An observer of the broker (who sees sizes) cannot tell a notice's kind: with an ordinary
    task (here 100 CJK characters) every kind, its ids at their longest, is one 1 KiB bucket,
    so every envelope has the same size to the byte."""
    sizes = sealed_sizes(
        settings, notices_of_every_kind(settings, application, "核实监护情况。" * 14 + "家")
    )
    assert set(sizes) == {
        "assignment",
        "case_escalated",
        "compliance_alert",
        "due_date_reminder",
        "deadline_missed",
        "deadline_escalated",
        "checkpoint",
        "new_clue",
        "finding_raised",
    }
    assert {size for found in sizes.values() for size in found} == {ENVELOPE_SIZES[1024]}


@pytest.mark.parametrize(("char", "bucket"), [("家", 4096), ("\U00020000", 16384)])
def test_only_a_long_task_leaves_the_first_bucket_and_the_longest_fits(
    settings: Settings, application: CaseTrail, char: str, bucket: int
) -> None:
    """A task at its bound (1000 characters) of 3-byte (CJK) or 4-byte characters: the only
    notice that can leave the first bucket, and never beyond 16 KiB."""
    notices = notices_of_every_kind(settings, application, char * MAX_NOTE)
    sizes = sealed_sizes(settings, notices)
    assert sizes.pop("assignment") == {ENVELOPE_SIZES[bucket]}
    assert {size for found in sizes.values() for size in found} == {ENVELOPE_SIZES[1024]}


# --- through a real broker: what a stream may still hold ------------------------------------------

POLICE = "chengguan-police-station"


def version_1_envelope(
    content: dict[str, object], recipient: str, public_key: X25519PublicKey, signer: Any
) -> bytes:
    """An envelope exactly as the service sealed before padding (envelope version 1)."""
    label = b"casetrail/msg/v1"
    message = str(content["id"])
    plaintext = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    hpke_info = label + b"\x00" + recipient.encode() + b"\x00" + message.encode()
    ciphertext = SUITE.encrypt(plaintext, public_key, info=hpke_info)
    signed = label + b"\x00sig\x00" + recipient.encode() + b"\x00" + message.encode() + b"\x00"
    document = {
        "v": 1,
        "id": message,
        "to": recipient,
        "ct": base64.urlsafe_b64encode(ciphertext).decode().rstrip("="),
        "sig": base64.urlsafe_b64encode(signer.sign(signed + ciphertext)).decode().rstrip("="),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def test_the_unit_client_takes_a_version_1_envelope_left_in_the_stream_and_refuses_bad_padding(
    tmp_path: Path,
) -> None:
    """Over a real nats-server, with `casetrail unit listen`: a notice sealed before padding
    existed (still in the unit's consumer after the upgrade) is taken into the inbox like any
    other; a version 2 notice whose padding is wrong, though signed by the service, is refused
    with `bad_padding` and terminated."""
    stack = build_stack(tmp_path, [(POLICE, "城关派出所", "police_station")])
    try:
        stack.start_api()
        stack.start_relay()
        listener = stack.start_listener(POLICE)
        stack.wait_api()
        # A real notice first: the stream and the unit's consumer exist once it arrives.
        case_id = httpx.post(
            f"{stack.api_url}/v1/cases",
            json=planted_case().body,
            headers=stack.headers(Role.REPORTER, "dongshan-village"),
        ).json()["id"]
        assigned = httpx.post(
            f"{stack.api_url}/v1/cases/{case_id}/assignments",
            json={
                "unit": POLICE,
                "function": "judicial",
                "task": "家访。",
                "due_on": (local_today() + timedelta(days=7)).isoformat(),
            },
            headers=stack.headers(Role.COORDINATOR, "chengguan-governance-office"),
        )
        assert assigned.status_code == 201, assigned.text
        wait_for(lambda: len(listener.entries()) == 1, 30, "the first notice")

        with stack.application() as application:
            unit = application.unit(POLICE)
        signer = keyring.load_private_key(
            stack.settings.keys_dir / keyring.SERVICE_KEY, "service key"
        )
        public_key = public_key_from_text(unit.sealing_key)
        old_id, bad_id = "a1" * 16, "b2" * 16
        old = version_1_envelope(
            {
                "id": old_id,
                "kind": "case_escalated",
                "issued_at": "2026-03-02T08:15:00+00:00",
                "event": f"{case_id}/9",
                "body": {"case_ref": case_id, "to_level": "county", "to": None},
            },
            unit.nats_user,
            public_key,
            signer,
        )
        content = {"id": bad_id, "kind": "case_escalated", "body": {}}
        wrong = pad(content_bytes(content))[:-1] + b"\x01"
        ciphertext = SUITE.encrypt(wrong, public_key, info=info(unit.nats_user, bad_id))
        bad = envelope(
            recipient=unit.nats_user, message=bad_id, ciphertext=ciphertext, signer=signer
        )
        subject = f"ct.{unit.street_token}.{unit.nats_user}"

        async def publish() -> None:
            nc = await stack.connect(stack.layout.service_bundle)
            js = nc.jetstream()
            await js.publish(subject, old, headers={"Nats-Msg-Id": old_id})
            await js.publish(subject, bad, headers={"Nats-Msg-Id": bad_id})
            await nc.close()

        asyncio.run(publish())
        wait_for(lambda: len(listener.entries()) == 2, 30, "the version 1 notice")

        def rejected() -> list[dict[str, Any]]:
            return listener.process.events("message_rejected")

        wait_for(lambda: bool(rejected()), 30, "the badly padded notice to be refused")
        assert [e["message_id"] for e in listener.entries()][1] == old_id
        assert listener.entries()[1]["body"]["case_ref"] == case_id
        assert [line["cause"] for line in rejected()] == ["bad_padding"]
    finally:
        stack.close()
