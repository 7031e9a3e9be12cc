"""Registering units: their keys made here, the private halves written to the operator's file.

`register_unit` makes an X25519 sealing key and a TLS client key with a certificate signed by
the project's CA (CN = the unit's opaque broker user), writes them (with the CA and the service's
signing public key) to one credentials file, mode 0600, and stores only the public halves in the
registry (`Unit.UnitRegistered`). The broker config is then regenerated and the embedded server,
if one runs, reloads it: the new user may connect at once, and the relay makes its consumer when
it reads the registration from the log. When `casetrail nats config --cluster` configured a
cluster here (`nats/cluster/nodes.json`), every node's config is regenerated too, and each node
running on this host is signalled to reload; the message names the others, whose configs must
be copied to their hosts.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from domain.application import CaseTrail
from domain.units import RegisterUnit, Unit, UnitAlreadyRegistered, UnitKeys, UnknownUnit
from gateway import keyring
from gateway.messaging.broker import NatsSettings, signal_reload
from gateway.messaging.broker_config import (
    CertificateAuthority,
    ClusterNode,
    NatsLayout,
    UnitAddress,
    UnitUser,
    ensure_tls,
    read_cluster,
    spki_fingerprint,
    write_cluster_config,
    write_config,
)
from gateway.messaging.sealing import UnitCredentials, public_key_text, street_token, unit_user
from gateway.settings import Settings


def cli_actor() -> dict[str, str]:
    """Who registers units from the command line: the operating-system user."""
    return {"user": f"cli:{getpass.getuser()}", "role": "admin", "unit": "-", "street": "-"}


def unit_users(application: CaseTrail) -> list[UnitUser]:
    return [
        UnitUser(UnitAddress(u.nats_user, u.street_token), u.tls_fingerprint)
        for u in application.units()
    ]


def write_broker_config(
    settings: Settings,
    application: CaseTrail,
    nats: NatsSettings,
    hosts: tuple[str, ...] = (),
) -> Path:
    """The broker config for the registry as it stands (TLS material made if missing); and,
    when a cluster was configured here, every node's config as well (`write_cluster`)."""
    layout = NatsLayout(settings.home)
    users = unit_users(application)
    path = write_config(layout, users, host=nats.host, port=nats.port, hosts=hosts)
    cluster = read_cluster(layout)
    if cluster is not None:
        nodes, extra = cluster
        write_cluster_config(layout, users, nodes, hosts=[*extra, *hosts])
    return path


def write_cluster(
    settings: Settings,
    application: CaseTrail,
    nodes: Sequence[ClusterNode],
    hosts: Sequence[str] = (),
) -> list[Path]:
    """Every cluster node's config for the registry as it stands (`nats config --cluster`)."""
    return write_cluster_config(
        NatsLayout(settings.home), unit_users(application), nodes, hosts=hosts
    )


def apply_broker_config(settings: Settings, application: CaseTrail, nats: NatsSettings) -> str:
    """Regenerate the config and have the embedded server, or every cluster node running on
    this host, reload it. Says what happened, and what is left to do by hand."""
    path = write_broker_config(settings, application, nats)
    layout = NatsLayout(settings.home)
    cluster = read_cluster(layout)
    if cluster is not None:
        nodes, _ = cluster
        reloaded = [n.name for n in nodes if signal_reload(layout, n.name)]
        others = [n for n in nodes if n.name not in reloaded]
        said = f"cluster configs written to {layout.cluster_dir}; "
        said += f"reloaded here: {', '.join(reloaded)}" if reloaded else "no node runs here"
        if others:
            said += (
                "; copy the config of each other node to its host and reload it "
                "(`systemctl reload casetrail-nats@NODE`): "
                + ", ".join(
                    f"{n.name} ({layout.node_config(n.name).name} -> {n.host})" for n in others
                )
            )
        return said
    if not nats.embedded:
        return (
            f"broker config written to {path}; {nats.url} is an external server: install the "
            "config there and reload it (`nats-server --signal reload`)"
        )
    if signal_reload(NatsLayout(settings.home)):
        return f"broker config written to {path}; the embedded server reloaded it"
    return f"broker config written to {path}; the embedded server is not running"


def _credentials(
    settings: Settings, unit_id: str, nats_user: str
) -> tuple[UnitCredentials, str, str]:
    """New keys for a unit: its credentials, and the public halves (sealing key, fingerprint)."""
    layout = NatsLayout(settings.home)
    ensure_tls(layout)
    ca = CertificateAuthority.load(layout)
    tls_key, tls_cert = ca.issue(nats_user, client=True)
    sealing = X25519PrivateKey.generate()
    service_key = keyring.load_public_key(
        settings.keys_dir / keyring.SERVICE_PUB, "service signing public key"
    )
    credentials = UnitCredentials(
        unit_id=unit_id,
        sealing_key=sealing,
        tls_key_pem=tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        tls_cert_pem=tls_cert.public_bytes(serialization.Encoding.PEM),
        ca_pem=ca.pem,
        service_key=service_key,
    )
    return credentials, public_key_text(sealing.public_key()), spki_fingerprint(tls_cert)


def register_unit(
    settings: Settings, application: CaseTrail, command: RegisterUnit, out: Path
) -> Unit:
    """Register a unit and write its credentials file to `out` (which must not exist)."""
    try:
        application.unit(command.unit_id)
    except UnknownUnit:
        pass
    else:
        raise UnitAlreadyRegistered(
            f"unit '{command.unit_id}' is already registered; rotate its keys instead",
            field="unit_id",
        )
    index_key = keyring.load_index_key(settings.keys_dir)
    user = unit_user(index_key, command.unit_id)
    credentials, sealing_key, fingerprint = _credentials(settings, command.unit_id, user)
    keys = UnitKeys(
        sealing_key=sealing_key,
        nats_user=user,
        street_token=street_token(index_key, command.street),
        tls_fingerprint=fingerprint,
    )
    credentials.write(out)  # refuses to overwrite; written before the registration is stored
    try:
        return application.register_unit(command, keys, cli_actor())
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def rotate_unit_keys(
    settings: Settings, application: CaseTrail, unit_id: str, out: Path
) -> Unit:
    """New keys for a registered unit; the old certificate stops working at the next reload."""
    unit = application.unit(unit_id)
    credentials, sealing_key, fingerprint = _credentials(settings, unit_id, unit.nats_user)
    keys = UnitKeys(
        sealing_key=sealing_key,
        nats_user=unit.nats_user,
        street_token=unit.street_token,
        tls_fingerprint=fingerprint,
    )
    credentials.write(out)
    try:
        return application.rotate_unit_keys(unit_id, keys, cli_actor())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
