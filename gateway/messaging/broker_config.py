"""The broker's configuration: TLS material made by the project, and one NATS user per unit.

Everything lives under `$CASETRAIL_HOME/nats/`:

    nats/nats-server.conf      the generated server config (`casetrail nats config`)
    nats/nats-server.pid       written by the embedded server; `unit add` signals it to reload
    nats/jetstream/            the JetStream file store
    nats/tls/ca.pem, ca.key    a self-signed CA (P-256) that signs every certificate below
    nats/tls/server.pem, .key  the server's certificate (127.0.0.1, localhost and any --san)
    nats/tls/service.pem       the relay's client key and certificate (CN=casetrail-service)
    nats/tls/admin.pem         an operator's client key and certificate (CN=casetrail-admin)

A cluster (`casetrail nats config --cluster`, `write_cluster_config`) adds, per node `nK`:

    nats/cluster/nodes.json    the nodes (name, host, client and route ports): `unit add` reads it
                               to regenerate every node's config, then signals each local node
    nats/cluster/nK.conf       the node's config: its own `server_name`, `listen`, `pid_file`,
                               `jetstream.store_dir`, the same users and pinned certificates as a
                               single server, and a `cluster` block whose routes use mutual TLS
    nats/cluster/nK.pid, nK/jetstream/, nK.log
    nats/tls/route-nK.pem, .key  the node's route certificate (server and client auth, the node's
                               host as its SAN), signed by the same CA

A route is admitted only with a certificate the CA signed (`verify: true`) **and** pinned in the
cluster's `tls` block (`pinned_certs`: the route certificates only), so a unit's client
certificate, though signed by the same CA, cannot join the cluster. Proven with real processes by
`tests/messaging/test_cluster.py` (a node with another CA's certificate, a unit's certificate at
the route port, failover of the relay and a unit client, a unit's permissions on every node).

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
import re
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
DEFAULT_ROUTE_PORT: Final = 6223  # beside nats-server's customary 6222, as 4223 is to 4222
CLUSTER_NAME: Final = "casetrail"
_NODE_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,31}$")

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

    # --- a cluster's nodes (`write_cluster_config`) ---

    @property
    def cluster_dir(self) -> Path:
        return self.root / "cluster"

    @property
    def cluster_manifest(self) -> Path:
        return self.cluster_dir / "nodes.json"

    def node_config(self, name: str) -> Path:
        return self.cluster_dir / f"{name}.conf"

    def node_pid_file(self, name: str) -> Path:
        return self.cluster_dir / f"{name}.pid"

    def node_store_dir(self, name: str) -> Path:
        return self.cluster_dir / name / "jetstream"

    def node_log(self, name: str) -> Path:
        return self.cluster_dir / f"{name}.log"

    def route_cert(self, name: str) -> Path:
        return self.tls / f"route-{name}.pem"

    def route_key(self, name: str) -> Path:
        return self.tls / f"route-{name}.key"


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
        route: bool = False,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A leaf certificate. `route`: a cluster node's, which both accepts routes (server
        auth) and dials them (client auth), so it carries both usages whatever `client` says."""
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
        if route:
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
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
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
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

    The server certificate is re-issued when it does not name every host in `hosts` (one that
    names more is kept: a later call without the hosts, as `unit add` makes, must not drop a
    cluster node's or a `--san` host from it).
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
        for stale in layout.tls.glob("route-*.pem"):
            stale.unlink()  # signed by the CA just replaced
    ca = CertificateAuthority.load(layout)
    wanted = sorted({DEFAULT_HOST, "localhost", *hosts})
    if not layout.server_cert.exists() or not set(wanted) <= set(_server_hosts(layout.server_cert)):
        if layout.server_cert.exists():
            wanted = sorted({*wanted, *_server_hosts(layout.server_cert)})
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


def _clients(layout: NatsLayout, units: Iterable[UnitUser]) -> list[str]:
    """The lines every server of the deployment shares: client TLS, users and permissions."""
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
    return [
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
    ]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(
    layout: NatsLayout,
    units: Iterable[UnitUser],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> str:
    lines = [
        "# Generated by `casetrail nats config` from the unit registry. Do not edit: regenerate.",
        "server_name: casetrail",
        f"listen: {_quote(f'{host}:{port}')}",
        f"pid_file: {_quote(str(layout.pid_file))}",
        "max_payload: 1048576",
        "jetstream " + _render_value({"store_dir": str(layout.store_dir)}, 0),
        *_clients(layout, units),
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


# --- a cluster ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterNode:
    """One node of a JetStream cluster: clients reach it at `host:port`, nodes at
    `host:route_port`. `name` is its `server_name` and names its files."""

    name: str
    host: str
    port: int
    route_port: int

    @property
    def client_url(self) -> str:
        return f"tls://{_host_port(self.host, self.port)}"

    @property
    def route_url(self) -> str:
        return f"tls://{_host_port(self.host, self.route_port)}"


def cluster_nodes(
    count: int,
    hosts: Sequence[str] = (DEFAULT_HOST,),
    *,
    port: int = DEFAULT_PORT,
    route_port: int = DEFAULT_ROUTE_PORT,
) -> list[ClusterNode]:
    """`count` nodes named n1, n2, ...; `hosts`: one for every node, or one per node. Nodes
    that share a host get consecutive ports from `port` and `route_port`; a node alone on its
    host gets `port` and `route_port` themselves."""
    if len(hosts) == 1:
        hosts = list(hosts) * count
    if len(hosts) != count:
        raise NatsConfigProblem(
            f"{len(hosts)} hosts given for {count} nodes: give one host for all, or one per node"
        )
    seen: dict[str, int] = {}
    nodes = []
    for index, host in enumerate(hosts, 1):
        step = seen.get(host, 0)
        seen[host] = step + 1
        nodes.append(ClusterNode(f"n{index}", host, port + step, route_port + step))
    return nodes


def check_cluster(nodes: Sequence[ClusterNode]) -> None:
    """JetStream's meta group and an R3 stream need a majority: three nodes or more, odd."""
    if len(nodes) < 3 or len(nodes) % 2 == 0:
        raise NatsConfigProblem(
            f"a cluster of {len(nodes)} nodes: JetStream needs an odd number, at least 3, to "
            "keep a majority when one node is down"
        )
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise NatsConfigProblem(f"node names repeat ({', '.join(names)}): give each its own")
    for name in names:
        if not _NODE_NAME.match(name):
            raise NatsConfigProblem(
                f"node name {name!r} is unusable: a lowercase letter, then letters, digits, '-'"
            )
    endpoints = [(n.host, p) for n in nodes for p in (n.port, n.route_port)]
    if len(set(endpoints)) != len(endpoints):
        raise NatsConfigProblem(
            "two nodes (or a node's client and route ports) share a host and port: "
            "give each node its own ports"
        )


def ensure_route_tls(layout: NatsLayout, nodes: Sequence[ClusterNode]) -> list[str]:
    """Each node's route certificate (made if missing, or re-issued when it does not name the
    node's host). Returns the names of the nodes whose certificate was made now."""
    ca = CertificateAuthority.load(layout)
    made = []
    for node in nodes:
        path = layout.route_cert(node.name)
        if path.exists() and node.host in _server_hosts(path):
            continue
        key, cert = ca.issue(
            f"casetrail-route-{node.name}", client=False, hosts=[node.host], route=True
        )
        _write(layout.route_key(node.name), _key_pem(key), 0o600)
        _write(path, _cert_pem(cert) + ca.pem, 0o644)
        made.append(node.name)
    return made


def render_cluster_config(
    layout: NatsLayout,
    units: Iterable[UnitUser],
    node: ClusterNode,
    nodes: Sequence[ClusterNode],
) -> str:
    """One node's config: the single server's clients part, and routes to every other node
    over mutual TLS, pinned to the nodes' route certificates."""
    routes = [other.route_url for other in nodes if other.name != node.name]
    pinned = [bundle_fingerprint(layout.route_cert(other.name)) for other in nodes]
    cluster = {
        "name": CLUSTER_NAME,
        "listen": _host_port(node.host, node.route_port),
        "routes": routes,
        "tls": {
            "cert_file": str(layout.route_cert(node.name)),
            "key_file": str(layout.route_key(node.name)),
            "ca_file": str(layout.ca_cert),
            "verify": True,
            "pinned_certs": pinned,
            "timeout": 5,
        },
    }
    lines = [
        "# Generated by `casetrail nats config --cluster` from the unit registry. Do not edit: "
        "regenerate.",
        f"server_name: {_quote(node.name)}",
        f"listen: {_quote(_host_port(node.host, node.port))}",
        f"pid_file: {_quote(str(layout.node_pid_file(node.name)))}",
        "max_payload: 1048576",
        "jetstream " + _render_value({"store_dir": str(layout.node_store_dir(node.name))}, 0),
        *_clients(layout, units),
        "cluster " + _render_value(cluster, 0),
        "",
    ]
    return "\n".join(lines)


def write_cluster_config(
    layout: NatsLayout,
    units: Iterable[UnitUser],
    nodes: Sequence[ClusterNode],
    *,
    hosts: Sequence[str] = (),
) -> list[Path]:
    """Every node's config (TLS material made if missing; the client certificate names every
    node's host and `hosts`), and `nodes.json`, which `unit add` reads to write them again.
    Returns the configs' paths, in the nodes' order."""
    check_cluster(nodes)
    units = list(units)
    ensure_tls(layout, [*hosts, *(n.host for n in nodes)])
    ensure_route_tls(layout, nodes)
    layout.cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = []
    for node in nodes:
        layout.node_store_dir(node.name).mkdir(parents=True, exist_ok=True, mode=0o700)
        text = render_cluster_config(layout, units, node, nodes)
        _write(layout.node_config(node.name), text.encode(), 0o600)
        paths.append(layout.node_config(node.name))
    manifest = {
        "nodes": [
            {"name": n.name, "host": n.host, "port": n.port, "route_port": n.route_port}
            for n in nodes
        ],
        "hosts": sorted(set(hosts)),
    }
    _write(layout.cluster_manifest, (json.dumps(manifest, indent=2) + "\n").encode(), 0o600)
    return paths


def read_cluster(layout: NatsLayout) -> tuple[list[ClusterNode], list[str]] | None:
    """The nodes and extra hosts `write_cluster_config` wrote last, or None (no cluster)."""
    try:
        found = json.loads(layout.cluster_manifest.read_text())
        nodes = [
            ClusterNode(str(n["name"]), str(n["host"]), int(n["port"]), int(n["route_port"]))
            for n in found["nodes"]
        ]
        return nodes, [str(h) for h in found.get("hosts", [])]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise NatsConfigProblem(
            f"{layout.cluster_manifest} is unreadable ({type(exc).__name__}): run "
            "`casetrail nats config --cluster` again"
        ) from None
