"""A minimal unit client for casetrail's sealed notices, written from `docs/specs/notice.md` alone
(and `docs/specs/checkpoint.md` for a checkpoint notice's own signature).

It uses only the standard library, `nats-py` and `cryptography`, and does not import the
project: it is the proof that the notice spec is enough to build a client (see
`docs/specs/examples/README.md`). `tests/specs/test_reference_client.py` runs it as a
subprocess, where the project cannot be imported, against a real nats-server and the real
service, and checks that it prints the notice the service sealed, that the service recorded its
receipt, and that an altered notice or a wrong service key is refused.

What it does, section by section of the spec:

- connects with mutual TLS from the unit's credentials file, with the inbox prefix
  `_INBOX_<user>`, the user being the certificate's CN (sections 3, 9.1);
- binds to the unit's existing durable pull consumer, waiting while it does not exist (9.2);
- opens each envelope with the checks of section 7 in their order, versions 2 and 1 (4, 5, 8);
- checks a checkpoint notice's own signature with `checkpoint.md` section 4's steps, and keeps
  checkpoints by seq (3.2, 9.3);
- keeps each notice (a JSON line, fsync'd) before acknowledging it, tells redelivery from
  replay by the ack subject's delivery count (9.3), acks with confirmation or terminates (9.4);
- confirms the receipt of every notice kept (not checkpoints) to the API, and keeps the answers
  that must not be retried (10).

Output: one JSON line per outcome on stdout, so that a person or a test can read what happened:
`{"outcome": "kept", ...}`, `{"outcome": "rejected", "reason": ...}`, `{"outcome":
"confirmation", ...}`, and so on. Usage: `python unit_client.py --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.x509.oid import NameOID

STREAM = "CASETRAIL"
MAX_ENVELOPE = 262144  # section 7, step 1
BUCKETS = (1024, 4096, 16384, 65536)  # section 4
LABELS = {2: b"casetrail/msg/v2", 1: b"casetrail/msg/v1"}  # sections 1, 5, 8
SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)  # section 5
MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
CHECKPOINT_FORMAT = "casetrail-checkpoint/v1"
RETRY_SECONDS = 5.0  # section 10: how `casetrail unit listen` retries; a client may choose


class Rejected(Exception):
    """A message refused, with the reason of the spec's table (section 7, or 9.3)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --- the credentials file (section 3, 9.1) ---------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What a unit's credentials file holds, read by its PEM blocks' labels and order."""

    path: Path
    user: str
    ca_pem: str
    service_key: Ed25519PublicKey
    sealing_key: X25519PrivateKey

    @classmethod
    def load(cls, path: Path) -> Credentials:
        text = path.read_text(encoding="ascii")
        blocks = [(m.group(1), m.group(0)) for m in PEM_BLOCK.finditer(text)]
        certificates = [pem for label, pem in blocks if label == "CERTIFICATE"]
        # Section 9.1: the unit's key and certificate are the first two blocks, the CA the third.
        if len(blocks) < 3 or blocks[1][0] != "CERTIFICATE" or blocks[2][0] != "CERTIFICATE":
            raise SystemExit(
                f"unit_client: {path} is not a unit's credentials file: expected the TLS key, "
                "its certificate and the CA as its first three PEM blocks"
            )
        certificate = x509.load_pem_x509_certificate(certificates[0].encode())
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1:
            raise SystemExit(f"unit_client: the certificate in {path} has no single CN (the user)")
        user = str(names[0].value)
        by_label = {label: pem for label, pem in blocks}
        if "PUBLIC KEY" not in by_label or "CASETRAIL SEALING KEY" not in by_label:
            raise SystemExit(
                f"unit_client: {path} lacks the PUBLIC KEY or CASETRAIL SEALING KEY block"
            )
        service_key = serialization.load_pem_public_key(by_label["PUBLIC KEY"].encode())
        # The sealing key block is standard base64 of PKCS#8 DER; its label is not a standard
        # one, so the body is decoded here rather than by a PEM loader.
        body = by_label["CASETRAIL SEALING KEY"].split("-----")[2]
        sealing_key = serialization.load_der_private_key(
            base64.b64decode("".join(body.split()), validate=True), password=None
        )
        if not isinstance(service_key, Ed25519PublicKey) or not isinstance(
            sealing_key, X25519PrivateKey
        ):
            raise SystemExit(f"unit_client: {path}: unexpected key types")
        return cls(path, user, certificates[1], service_key, sealing_key)

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem)
        # OpenSSL takes the first private key and the certificates of the file; the other
        # blocks (the service key, the sealing key) are skipped.
        context.load_cert_chain(str(self.path))
        return context


def load_service_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SystemExit(f"unit_client: {path} is not an Ed25519 public key (SPKI PEM)")
    return key


# --- opening an envelope (sections 4, 5, 7, 8) -----------------------------------------------


def b64url(text: str, what: str) -> bytes:
    """Canonical base64url without padding (section 2), or `malformed` (step 6)."""
    if not BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise Rejected("malformed", f"{what} is not base64url without padding")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise Rejected("malformed", f"{what} is not canonical base64url (unused bits set)")
    return raw


def unpad(padded: bytes) -> bytes:
    """Section 4's four checks, in order; `bad_padding` otherwise."""
    size = len(padded)
    if size not in BUCKETS:
        raise Rejected("bad_padding", f"the plaintext is {size} bytes, not a bucket size")
    length = int.from_bytes(padded[:4], "big")
    if length > size - 4:
        raise Rejected("bad_padding", "the length prefix exceeds the plaintext")
    if any(4 + length <= smaller for smaller in BUCKETS if smaller < size):
        raise Rejected("bad_padding", "a smaller bucket would have held the content")
    if padded[4 + length :].strip(b"\x00"):
        raise Rejected("bad_padding", "the padding is not all zero bytes")
    return padded[4 : 4 + length]


@dataclass(frozen=True)
class Opened:
    version: int
    message_id: str
    content: dict[str, Any]


def open_envelope(
    data: bytes, me: str, sealing_key: X25519PrivateKey, service_key: Ed25519PublicKey
) -> Opened:
    """Section 7's thirteen steps in their order; the first that fails gives the reason."""
    if len(data) > MAX_ENVELOPE:  # 1
        raise Rejected("malformed", f"the envelope is {len(data)} bytes, over {MAX_ENVELOPE}")
    try:  # 2
        envelope = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("malformed", "the envelope is not UTF-8 JSON") from exc
    if not isinstance(envelope, dict):
        raise Rejected("malformed", "the envelope is not a JSON object")
    version = envelope.get("v")
    if type(version) is not int:  # 3: bool is a subclass of int, and is refused too
        raise Rejected("malformed", "v is missing or not a JSON integer")
    if version not in LABELS:  # 4
        raise Rejected("unsupported_version", f"envelope version {version} is not 1 or 2")
    fields = {name: envelope.get(name) for name in ("id", "to", "ct", "sig")}
    for name, value in fields.items():  # 5
        if not isinstance(value, str):
            raise Rejected("malformed", f"{name} is missing or not a string")
    message_id, to = str(fields["id"]), str(fields["to"])
    ct = b64url(str(fields["ct"]), "ct")  # 6
    sig = b64url(str(fields["sig"]), "sig")
    if not MESSAGE_ID.fullmatch(message_id):  # 7
        raise Rejected("malformed", "id is not 32 lowercase hex digits")
    if to != me:  # 8
        raise Rejected("wrong_recipient", "the envelope is addressed to another unit")
    label = LABELS[version]
    signed = b"\x00".join([label, b"sig", to.encode("ascii"), message_id.encode("ascii"), ct])
    try:  # 9
        if len(sig) != 64:
            raise InvalidSignature
        service_key.verify(sig, signed)
    except InvalidSignature as exc:
        raise Rejected("bad_signature", "the service's signature does not check") from exc
    info = b"\x00".join([label, to.encode("ascii"), message_id.encode("ascii")])
    try:  # 10: enc || sealed as one input; the single-shot API's AAD is empty
        padded = SUITE.decrypt(ct, sealing_key, info=info)
    except Exception as exc:  # any failure to open is the same reason
        raise Rejected("undecryptable", "HPKE open failed (another key, or another info)") from exc
    plain = unpad(padded) if version == 2 else padded  # 11 (version 1: no padding)
    try:  # 12
        content = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("malformed", "the content is not UTF-8 JSON") from exc
    if not isinstance(content, dict):
        raise Rejected("malformed", "the content is not a JSON object")
    if content.get("id") != message_id:  # 13
        raise Rejected("malformed", "the content's id is not the envelope's")
    return Opened(version, message_id, content)


CHECKPOINT_MEMBERS = ("seq", "size", "root", "time", "key_id", "signature")
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX16 = re.compile(r"[0-9a-f]{16}")
UTC_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
STANDARD_B64_64 = re.compile(r"[A-Za-z0-9+/]{86}==")


def checkpoint_text(body: dict[str, Any]) -> bytes:
    """The signed message of a checkpoint (`checkpoint.md` section 2): five lines, each ending
    with one LF, the last included."""
    return (
        f"{CHECKPOINT_FORMAT}\nseq {body['seq']}\nsize {body['size']}\n"
        f"root {body['root']}\ntime {body['time']}\n"
    ).encode()


def checkpoint_refusal(body: dict[str, Any], service_key: Ed25519PublicKey) -> str | None:
    """`checkpoint.md` section 4's nine steps in their order: the first failure's reason, or
    None for a checkpoint the key signed."""
    if body.get("format") != CHECKPOINT_FORMAT:  # 1
        return "format-unknown"
    if any(name not in body for name in CHECKPOINT_MEMBERS):  # 2
        return "field-missing"
    seq, size = body["seq"], body["size"]
    if type(seq) is not int or type(size) is not int:  # 3: bool is refused too
        return "integer-invalid"
    if not (1 <= seq < 2**63 and 0 <= size < 2**63):
        return "integer-invalid"
    if not (isinstance(body["root"], str) and HEX64.fullmatch(body["root"])):  # 4
        return "root-invalid"
    # 5: also keeps a newline, and so a forged line, out of the signed text
    if not (isinstance(body["time"], str) and UTC_TIME.fullmatch(body["time"])):
        return "time-invalid"
    if not (isinstance(body["key_id"], str) and HEX16.fullmatch(body["key_id"])):  # 6
        return "key-id-invalid"
    text = body["signature"]  # 7: canonical standard base64 of 64 bytes
    if not (isinstance(text, str) and STANDARD_B64_64.fullmatch(text)):
        return "signature-malformed"
    signature = base64.b64decode(text, validate=True)
    if base64.b64encode(signature).decode() != text:
        return "signature-malformed"
    try:  # 8
        service_key.verify(signature, checkpoint_text(body))
    except InvalidSignature:
        return "signature-invalid"
    raw = service_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if body["key_id"] != hashlib.sha256(raw).digest()[:8].hex():  # 9
        return "key-id-mismatch"
    return None


def check_checkpoint(body: dict[str, Any], service_key: Ed25519PublicKey) -> None:
    """A checkpoint notice's own signature (`notice.md` section 3.2): the notice spec's reason
    `checkpoint_signature`, with the checkpoint spec's reason as the detail."""
    reason = checkpoint_refusal(body, service_key)
    if reason is not None:
        raise Rejected("checkpoint_signature", f"{reason}: the checkpoint does not check")


# --- keeping, acknowledging, confirming (sections 9.3, 9.4, 10) ------------------------------


class Inbox:
    """The notices kept: JSON lines, each written and fsync'd before its acknowledgement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reported_path = path.with_name(path.name + ".reported")
        self.entries = read_lines(path)
        self.ids = {str(e["message_id"]) for e in self.entries}
        self.checkpoints = {
            int(e["content"]["body"]["seq"]): e["content"]["body"]
            for e in self.entries
            if e["content"].get("kind") == "checkpoint"
        }
        self.reported = {str(r["message_id"]) for r in read_lines(self.reported_path)}

    def keep(self, opened: Opened) -> None:
        entry = {
            "message_id": opened.message_id,
            "version": opened.version,
            "received_at": time.time(),
            "content": opened.content,
        }
        append_line(self.path, entry)
        self.entries.append(entry)
        self.ids.add(opened.message_id)
        if opened.content.get("kind") == "checkpoint":
            self.checkpoints[int(opened.content["body"]["seq"])] = opened.content["body"]

    def note_reported(self, message_id: str, outcome: str) -> None:
        append_line(self.reported_path, {"message_id": message_id, "outcome": outcome})
        self.reported.add(message_id)

    def unreported(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.entries
            if e["content"].get("kind") != "checkpoint" and e["message_id"] not in self.reported
        ]


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def append_line(path: Path, entry: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def confirm(api: str, token: str, message_id: str) -> tuple[int, str]:
    """Section 10's call: the status and the problem's type code (or `received`)."""
    url = f"{api.rstrip('/')}/v1/notices/{message_id}/receipt"
    request = urllib.request.Request(  # noqa: S310 (the API's URL, given by the operator)
        url, data=b"", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, "received"
    except urllib.error.HTTPError as exc:
        try:
            problem = json.loads(exc.read().decode("utf-8"))
            code = str(problem.get("type", "")).rsplit(":", 1)[-1]
        except ValueError:
            code = ""
        return exc.code, code
    except (urllib.error.URLError, OSError) as exc:
        return 0, f"unreachable: {type(exc).__name__}"


# Section 10: how long a 404 (the publication not recorded yet) is asked about again.
NOT_YET_SECONDS = 24 * 3600


def retryable(status: int, kept_at: float) -> bool:
    # Section 10: 401 (renew the token), 5xx and an unreachable API are retried, and a 404
    # within a day of keeping the notice; 403, 404, 409 and 422 are final answers, noted once.
    if status == 404:
        return time.time() - kept_at < NOT_YET_SECONDS
    return status in (0, 401) or status >= 500


async def confirm_pending(inbox: Inbox, api: str | None, token: str | None) -> bool:
    """Confirm every kept notice not yet answered for good; False if some must wait."""
    if api is None or token is None:
        return True
    done = True
    for entry in inbox.unreported():
        status, code = await asyncio.to_thread(confirm, api, token, entry["message_id"])
        say(
            outcome="confirmation",
            message_id=entry["message_id"],
            kind=entry["content"].get("kind"),
            status=status,
            code=code,
        )
        if retryable(status, float(entry["received_at"])):
            done = False
        else:
            inbox.note_reported(entry["message_id"], f"{status}:{code}")
    return done


# --- the loop ---------------------------------------------------------------------------------


async def handle(msg: Any, creds: Credentials, service_key: Ed25519PublicKey, inbox: Inbox) -> None:
    """One delivered message: open, then keep and ack, or drop and ack, or terminate."""
    delivered = int(msg.metadata.num_delivered)
    try:
        opened = open_envelope(msg.data, creds.user, creds.sealing_key, service_key)
        if opened.message_id in inbox.ids:  # section 9.3
            if delivered > 1:
                say(outcome="redelivered", message_id=opened.message_id, delivered=delivered)
            else:
                say(
                    outcome="rejected",
                    reason="replayed",
                    message_id=opened.message_id,
                    detail="a message id already held, delivered as a new message",
                )
            await msg.ack_sync()
            return
        content = opened.content
        if content.get("kind") == "checkpoint":
            body = content.get("body")
            if not isinstance(body, dict):
                raise Rejected("malformed", "a checkpoint notice without a body object")
            check_checkpoint(body, service_key)
            held = inbox.checkpoints.get(int(body["seq"]))
            if held is not None:
                if held != body:
                    raise Rejected("checkpoint_conflict", "another checkpoint under a held seq")
                say(outcome="checkpoint_held", message_id=opened.message_id, seq=body["seq"])
                await msg.ack_sync()
                return
    except Rejected as refusal:
        say(outcome="rejected", reason=refusal.reason, detail=refusal.detail, delivered=delivered)
        await msg.term()  # section 9.4: it would fail the same way again
        return
    inbox.keep(opened)  # kept durably before the acknowledgement (section 9.3)
    say(
        outcome="kept",
        message_id=opened.message_id,
        version=opened.version,
        signature="verified",
        delivered=delivered,
        kind=content.get("kind"),
        content=content,
    )
    await msg.ack_sync()


async def run(args: argparse.Namespace) -> int:
    creds = Credentials.load(args.credentials)
    service_key = load_service_key(args.service_key) if args.service_key else creds.service_key
    token = args.token_file.read_text(encoding="ascii").strip() if args.token_file else None
    inbox = Inbox(args.inbox)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    nc = await nats.connect(
        servers=args.nats.split(","),
        tls=creds.tls(),
        inbox_prefix=f"_INBOX_{creds.user}",  # section 9.1: the only prefix the user may use
        connect_timeout=5,
    )
    try:
        js = nc.jetstream(timeout=5)
        while True:  # section 9.2: the relay creates the consumer; wait until it has
            try:
                await js.consumer_info(STREAM, creds.user)
                break
            except nats.js.errors.NotFoundError:
                if stop.is_set():
                    return 1
                await asyncio.sleep(1)
        sub = await js.pull_subscribe_bind(durable=creds.user, stream=STREAM)
        confirmed = await confirm_pending(inbox, args.api, token)
        idle_since = time.monotonic()
        last_try = time.monotonic()
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch=16, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                msgs = []
            for msg in msgs:
                await handle(msg, creds, service_key, inbox)
            if msgs:
                idle_since = time.monotonic()
                confirmed = await confirm_pending(inbox, args.api, token)
            elif not confirmed and time.monotonic() - last_try >= RETRY_SECONDS:
                last_try = time.monotonic()
                confirmed = await confirm_pending(inbox, args.api, token)
            if args.idle is not None and time.monotonic() - idle_since >= args.idle:
                break
        return 0 if confirmed else 3
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Receive, verify, open, keep and confirm a unit's sealed casetrail notices "
        "(docs/specs/notice.md).",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        required=True,
        help="the unit's credentials file (from `casetrail unit add`)",
    )
    parser.add_argument(
        "--service-key",
        type=Path,
        help="the service's Ed25519 public key, SPKI PEM, obtained out of band "
        "(default: the credentials file's PUBLIC KEY block)",
    )
    parser.add_argument(
        "--nats", required=True, help="the broker, tls://host:port (comma-separated for several)"
    )
    parser.add_argument(
        "--inbox",
        type=Path,
        required=True,
        help="where kept notices go (JSON lines); <inbox>.reported lists "
        "the confirmations answered",
    )
    parser.add_argument("--api", help="the API's base URL, to confirm assignments")
    parser.add_argument(
        "--token-file", type=Path, help="a file holding the unit member's bearer token"
    )
    parser.add_argument(
        "--idle",
        type=float,
        help="stop after this many seconds without a message (default: run until SIGINT/SIGTERM)",
    )
    args = parser.parse_args(argv)
    if (args.api is None) != (args.token_file is None):
        parser.error("--api and --token-file go together")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
