"""`casetrail nats config --cluster` and the stream's replicas, on real nats-server processes.

The command writes one config per node and prints the settings every host needs; a cluster size
JetStream cannot keep a majority with is refused. `ensure_stream` raises a single-replica stream
(made before the broker became a cluster) to three replicas with its messages, never lowers it,
and a single server's refusal of three replicas is an error that says what to do.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from pathlib import Path

import nats.js.errors
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from nats.aio.client import Client as NATS

from gateway import keyring, logs
from gateway.cli.main import cli
from gateway.messaging.broker import EmbeddedBroker, EmbeddedCluster, NatsSettings
from gateway.messaging.broker_config import (
    STREAM,
    SUBJECT_ROOT,
    ClusterNode,
    NatsConfigProblem,
    NatsLayout,
    check_cluster,
    cluster_nodes,
    read_cluster,
    write_cluster_config,
    write_config,
)
from gateway.messaging.relay import MESSAGE_ID_HEADER, ensure_stream
from tests.messaging.stack import connect_as, free_port, require_nats_server


def test_nats_config_cluster_writes_a_config_per_node_and_prints_the_url(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    env = {"CASETRAIL_HOME": str(home), "CASETRAIL_NATS_URL": ""}
    runner = CliRunner()
    done = runner.invoke(
        cli, ["nats", "config", "--cluster", "--port", "5001", "--route-port", "7001"], env=env
    )
    assert done.exit_code == 0, done.output
    url = "tls://127.0.0.1:5001,tls://127.0.0.1:5002,tls://127.0.0.1:5003"
    assert f"CASETRAIL_NATS_URL={url}" in done.output
    assert "CASETRAIL_NATS_REPLICAS=3" in done.output
    layout = NatsLayout(home)
    found = read_cluster(layout)
    assert found is not None
    nodes, _ = found
    assert [(n.name, n.port, n.route_port) for n in nodes] == [
        ("n1", 5001, 7001),
        ("n2", 5002, 7002),
        ("n3", 5003, 7003),
    ]
    for node in nodes:
        text = layout.node_config(node.name).read_text()
        assert f'server_name: "{node.name}"' in text
        assert f'listen: "127.0.0.1:{node.port}"' in text
        assert str(layout.node_store_dir(node.name)) in text
        assert str(layout.node_pid_file(node.name)) in text
        others = [f'"tls://127.0.0.1:{n.route_port}"' for n in nodes if n is not node]
        assert f"routes: [{', '.join(others)}]" in text
        assert "verify: true" in text and "verify_and_map: true" in text
        assert layout.node_config(node.name).stat().st_mode & 0o777 == 0o600
        # The route certificate: both usages, the node's host, the project's CA.
        cert = x509.load_pem_x509_certificate(layout.route_cert(node.name).read_bytes())
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
        assert cert.issuer == ca.subject
        assert layout.route_key(node.name).stat().st_mode & 0o777 == 0o600

    # N even or below 3, and cluster options without --cluster: refused, in one line.
    for argv, words in (
        (["--cluster", "4"], "an odd number, at least 3"),
        (["--cluster", "2"], "2 is not in the range x>=3"),
        (["--host", "nats-1"], "go with --cluster"),
        (["--cluster", "3", "--host", "a", "--host", "b"], "2 hosts given for 3 nodes"),
    ):
        refused = runner.invoke(cli, ["nats", "config", *argv], env=env)
        assert refused.exit_code == 2, (argv, refused.output)
        assert words in refused.output, refused.output


def test_nodes_on_their_own_hosts_share_the_ports_and_the_client_certificate_names_them(
    tmp_path: Path,
) -> None:
    nodes = cluster_nodes(3, ["nats-1.internal", "nats-2.internal", "nats-3.internal"], port=4222)
    assert {(n.port, n.route_port) for n in nodes} == {(4222, 6223)}
    layout = NatsLayout(tmp_path / "home")
    write_cluster_config(layout, [], nodes, hosts=["nats.example"])
    # A later single-server write (as `unit add` makes, without the hosts) keeps every name.
    write_config(layout, [])
    cert = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    assert {"nats-1.internal", "nats-2.internal", "nats-3.internal", "nats.example"} <= names
    with pytest.raises(NatsConfigProblem, match="share a host and port"):
        check_cluster([ClusterNode(f"n{i}", "h", 4222, 6222 + i) for i in range(3)])
    with pytest.raises(NatsConfigProblem, match="names repeat"):
        check_cluster([ClusterNode("n1", f"h{i}", 4222, 6222) for i in range(3)])


async def publish(nc: NATS, count: int) -> None:
    js = nc.jetstream()
    for _ in range(count):
        await js.publish(
            f"{SUBJECT_ROOT}.stest.utest",
            b"sealed",
            stream=STREAM,
            headers={MESSAGE_ID_HEADER: uuid.uuid4().hex},
        )


def test_a_single_replica_stream_is_raised_to_three_on_a_cluster_and_never_lowered(
    tmp_path: Path,
) -> None:
    require_nats_server()
    layout = NatsLayout(tmp_path / "home")
    ports: list[int] = []
    while len(ports) < 6:
        if (port := free_port()) not in ports:
            ports.append(port)
    nodes = [
        ClusterNode(f"n{i + 1}", "127.0.0.1", ports[2 * i], ports[2 * i + 1]) for i in range(3)
    ]
    write_cluster_config(layout, [], nodes)
    cluster = EmbeddedCluster(layout, nodes)
    cluster.start()

    async def run() -> tuple[int, int, int, int]:
        nc = await connect_as(NatsSettings(url=cluster.url), layout, layout.service_bundle)
        try:
            js = nc.jetstream()
            await ensure_stream(js, 1)  # as a relay before the broker became a cluster
            await publish(nc, 3)
            before = (await js.stream_info(STREAM)).config.num_replicas or 1
            await ensure_stream(js, 3)
            raised = await js.stream_info(STREAM)
            await ensure_stream(js, 1)  # a host that forgot CASETRAIL_NATS_REPLICAS
            kept = (await js.stream_info(STREAM)).config.num_replicas or 1
            return before, raised.config.num_replicas or 1, raised.state.messages, kept
        finally:
            await nc.close()

    try:
        before, raised, messages, kept = asyncio.run(run())
    finally:
        cluster.stop()
    assert (before, raised, messages, kept) == (1, 3, 3, 3)


def test_three_replicas_on_a_single_server_are_refused_with_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_nats_server()
    layout = NatsLayout(tmp_path / "home")
    port = free_port()
    write_config(layout, [], port=port)
    broker = EmbeddedBroker(layout, host="127.0.0.1", port=port)
    broker.start()

    async def run() -> None:
        nc = await connect_as(
            NatsSettings(url=f"tls://127.0.0.1:{port}"), layout, layout.service_bundle
        )
        try:
            with pytest.raises(nats.js.errors.APIError):
                await ensure_stream(nc.jetstream(), 3)
        finally:
            await nc.close()

    stream = io.StringIO()
    logs.configure("info", stream=stream)
    caplog.set_level(logging.INFO)
    try:
        asyncio.run(run())
    finally:
        logs.configure("info")
        broker.stop()
    said = stream.getvalue() + "\n".join(caplog.handler.format(r) for r in caplog.records)
    assert "stream_refused" in said
    assert "CASETRAIL_NATS_REPLICAS=1" in said
