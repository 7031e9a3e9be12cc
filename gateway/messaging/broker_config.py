"""The broker's configuration: TLS material made by the project, and one NATS user per unit.

Everything lives under `$CASETRAIL_HOME/nats/`:

    nats/nats-server.conf      the generated server config (`casetrail nats config`)
    nats/nats-server.pid       written by the embedded server; `unit add` signals it to reload
    nats/jetstream/            the JetStream file store
    nats/tls/ca.pem, ca.key    a self-signed CA (P-256) that signs every certificate below
    nats/tls/server.pem, .key  the server's certificate (127.0.0.1, localhost and any --san)
    nats/tls/service.pem       the relay's client key and certificate (CN=casetrail-service)
    nats/tls/admin.pem         an operator's client key and certificate (CN=casetrail-admin)

Clients authenticate with their certificate (mutual TLS, `verify_and_map`): the server maps the
certificate's subject to a user, and `pinned_certs` admits only the certificates currently in the
registry, so a rotated unit certificate stops working at the next reload. No password exists.

A unit's user may only pull from its own durable consumer, acknowledge its own messages, read its
consumer's info, and receive on its own inbox prefix. It may not create consumers, read the stream
by sequence (`$JS.API.STREAM.MSG.GET`, `$JS.API.DIRECT.GET`) or subscribe to any message subject.
Every name the broker sees (users, subjects, consumers, inboxes) is an opaque token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

STREAM: Final = "CASETRAIL"
SUBJECT_ROOT: Final = "ct"
SERVICE_USER: Final = "casetrail-service"
ADMIN_USER: Final = "casetrail-admin"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4223  # not 4222: a system nats-server often holds that one

_CA_DAYS: Final = 3650
_LEAF_DAYS: Final = 825


class NatsConfigProblem(Exception):
    """The broker's configuration or TLS material is missing or unusable."""


# --- names the broker sees ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitAddress:
    """Where a unit's messages go, in opaque tokens only."""

    user: str  # the certificate's common name and the NATS user: "u" + 16 hex digits
    street_token: str  # "s" + 16 hex digits

    @property
    def subject(self) -> str:
        return f"{SUBJECT_ROOT}.{self.street_token}.{self.user}"

    @property
    def filter_subject(self) -> str:
        return f"{SUBJECT_ROOT}.*.{self.user}"

    @property
    def consumer(self) -> str:
        return self.user

    @property
    def inbox_prefix(self) -> str:
        return f"_INBOX_{self.user}"


def user_subject(common_name: str) -> str:
    """The user name `verify_and_map` derives from a certificate whose subject is only a CN."""
    return f"CN={common_name}"


def unit_permissions(address: UnitAddress) -> dict[str, object]:
    consumer = address.consumer
    return {
        "publish": {
            "allow": [
                f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}",
                f"$JS.API.CONSUMER.INFO.{STREAM}.{consumer}",
                f"$JS.ACK.{STREAM}.{consumer}.>",
            ],
            # Redundant with the allow list, and kept explicit so that a widened allow list can
            # never grant reads by sequence or consumer creation.
            "deny": [
                "$JS.API.DIRECT.GET.>",
                "$JS.API.STREAM.MSG.GET.>",
                "$JS.API.CONSUMER.CREATE.>",
                "$JS.API.CONSUMER.DURABLE.CREATE.>",
                f"{SUBJECT_ROOT}.>",
            ],
        },
        "subscribe": {
            "allow": [f"{address.inbox_prefix}.>"],
            "deny": [f"{SUBJECT_ROOT}.>", "$JS.>"],
        },
    }


def service_permissions() -> dict[str, object]:
    """The relay: publishes sealed messages and manages the stream and the consumers."""
    return {
        "publish": {
            "allow": [f"{SUBJECT_ROOT}.>", "$JS.API.>"],
            "deny": [
                "$JS.API.DIRECT.GET.>",
                "$JS.API.STREAM.MSG.GET.>",
                "$JS.API.CONSUMER.MSG.NEXT.>",
            ],
        },
        "subscribe": {"allow": ["_INBOX.>"], "deny": [f"{SUBJECT_ROOT}.>"]},
    }


# --- files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsLayout:
    home: Path

    @property
    def root(self) -> Path:
        return self.home / "nats"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def config(self) -> Path:
        return self.root / "nats-server.conf"

    @property
    def pid_file(self) -> Path:
        return self.root / "nats-server.pid"

    @property
    def store_dir(self) -> Path:
        return self.root / "jetstream"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.tls / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.tls / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.tls / "server.key"

    @property
    def service_bundle(self) -> Path:
        return self.tls / "service.pem"

    @property
    def admin_bundle(self) -> Path:
        return self.tls / "admin.pem"


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write a file atomically with the given mode (a private key: 0600)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def spki_fingerprint(cert: x509.Certificate) -> str:
    """What `pinned_certs` lists: SHA-256 of the DER SubjectPublicKeyInfo, in hex."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


@dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def load(cls, layout: NatsLayout) -> CertificateAuthority:
        try:
            key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
        except FileNotFoundError:
            raise NatsConfigProblem(
                f"the broker's CA is missing under {layout.tls}: run `casetrail nats config`"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise NatsConfigProblem(f"{layout.ca_key} is not an EC private key")
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return _cert_pem(self.cert)

    def issue(
        self,
        common_name: str,
        *,
        client: bool,
        hosts: Sequence[str] = (),
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            _builder(common_name, self.cert.subject, key.public_key(), _LEAF_DAYS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _new_ca() -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "casetrail NATS CA")])
    cert = (
        _builder("casetrail NATS CA", name, key.public_key(), _CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, cert)


def client_bundle(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, ca_pem: bytes) -> bytes:
    """Key first, then certificate, then the CA: `ssl.load_cert_chain(path)` reads it as is."""
    return _key_pem(key) + _cert_pem(cert) + ca_pem


def ensure_tls(layout: NatsLayout, hosts: Sequence[str] = ()) -> list[str]:
    """Create whatever TLS material is missing; never replaces what exists. Returns what was made.

    The server certificate is re-issued when it does not name every host in `hosts`.
    """
    layout.tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(layout.root, 0o700)
    os.chmod(layout.tls, 0o700)
    made: list[str] = []
    if not layout.ca_key.exists():
        ca = _new_ca()
        _write(layout.ca_key, _key_pem(ca.key), 0o600)
        _write(layout.ca_cert, ca.pem, 0o644)
        made.append("ca")
        for stale in (layout.server_cert, layout.service_bundle, layout.admin_bundle):
            stale.unlink(missing_ok=True)
    ca = CertificateAuthority.load(layout)
    wanted = sorted({DEFAULT_HOST, "localhost", *hosts})
    if not layout.server_cert.exists() or _server_hosts(layout.server_cert) != wanted:
        key, cert = ca.issue("casetrail-nats", client=False, hosts=wanted)
        _write(layout.server_key, _key_pem(key), 0o600)
        _write(layout.server_cert, _cert_pem(cert) + ca.pem, 0o644)
        made.append("server")
    for bundle, user in ((layout.service_bundle, SERVICE_USER), (layout.admin_bundle, ADMIN_USER)):
        if not bundle.exists():
            key, cert = ca.issue(user, client=True)
            _write(bundle, client_bundle(key, cert, ca.pem), 0o600)
            made.append(user)
    return made


def _server_hosts(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    hosts = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return sorted([*hosts, *san.get_values_for_type(x509.DNSName)])


def bundle_fingerprint(path: Path) -> str:
    return spki_fingerprint(x509.load_pem_x509_certificate(path.read_bytes()))


# --- the server's config file ---------------------------------------------------------------------


@dataclass(frozen=True)
class UnitUser:
    """What the config needs of one registered unit: its opaque address and pinned certificate."""

    address: UnitAddress
    tls_fingerprint: str


def _quote(value: str) -> str:
    return json.dumps(value)


def _render_value(value: object, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, Mapping):
        inner = "\n".join(
            f"{pad}  {key}: {_render_value(item, indent + 1)}" for key, item in value.items()
        )
        return "{\n" + inner + "\n" + pad + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_render_value(v, indent) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _quote(str(value))


def render_config(
    layout: NatsLayout,
    units: Iterable[UnitUser],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> str:
    units = list(units)
    users: list[dict[str, object]] = [
        {"user": user_subject(SERVICE_USER), "permissions": service_permissions()},
        {"user": user_subject(ADMIN_USER)},
    ]
    pinned = [bundle_fingerprint(layout.service_bundle), bundle_fingerprint(layout.admin_bundle)]
    for unit in units:
        users.append(
            {"user": user_subject(unit.address.user), "permissions": unit_permissions(unit.address)}
        )
        pinned.append(unit.tls_fingerprint)
    lines = [
        "# Generated by `casetrail nats config` from the unit registry. Do not edit: regenerate.",
        "server_name: casetrail",
        f"listen: {_quote(f'{host}:{port}')}",
        f"pid_file: {_quote(str(layout.pid_file))}",
        "max_payload: 1048576",
        "jetstream " + _render_value({"store_dir": str(layout.store_dir)}, 0),
        "tls "
        + _render_value(
            {
                "cert_file": str(layout.server_cert),
                "key_file": str(layout.server_key),
                "ca_file": str(layout.ca_cert),
                "verify_and_map": True,
                "pinned_certs": pinned,
                "timeout": 5,
            },
            0,
        ),
        "authorization " + _render_value({"users": users}, 0),
        "",
    ]
    return "\n".join(lines)


def write_config(
    layout: NatsLayout,
    units: Iterable[UnitUser],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    hosts: Sequence[str] = (),
) -> Path:
    ensure_tls(layout, hosts)
    layout.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(layout.config, render_config(layout, units, host=host, port=port).encode(), 0o600)
    return layout.config
