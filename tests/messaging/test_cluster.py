"""A three-node JetStream cluster with mutual-TLS routes: failover without loss or doubling.

Three nats-server processes on loopback, configured by `write_cluster_config` and run by
`EmbeddedCluster`; the stream at three replicas (`CASETRAIL_NATS_REPLICAS=3`); the API, the relay
and a unit client as processes, the relay and the client given every node
(`CASETRAIL_NATS_URL=tls://…,tls://…,tls://…`). During a burst of assignments over HTTP the node
the relay is connected to is SIGKILLed (and, in the next test, the node the unit client is on):
each fails over to another node, every assignment reaches the unit's inbox exactly once and is
stored once in the stream, and the killed node, restarted, catches up (its replica current).

The routes: a node whose certificate another CA signed, one with a certificate the project's CA
signed but the cluster does not pin (a unit's own), and one that speaks plain TCP cannot join,
while one with a pinned route certificate can (the control: the probe can pass). A unit's
permissions hold on every node, and `unit add` reloads every node running here.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest

from domain.clock import local_today
from domain.taxonomy import Role
from domain.units import Unit
from gateway import keyring
from gateway.messaging.broker import (
    EmbeddedCluster,
    NatsSettings,
    nats_server_binary,
    port_open,
)
from gateway.messaging.broker_config import (
    STREAM,
    CertificateAuthority,
    ClusterNode,
    NatsLayout,
    _cert_pem,
    _key_pem,
    _new_ca,
)
from gateway.messaging.registry import write_cluster
from gateway.messaging.sealing import UnitCredentials
from gateway.settings import Settings
from tests.integration.planted import planted_case
from tests.messaging.stack import (
    Listener,
    Stack,
    connect_as,
    free_port,
    require_nats_server,
    wait_for,
)

POLICE = "chengguan-police-station"
OFFICE = "chengguan-governance-office"
BURST = 10  # assignments per burst; the node goes down after KILL_AT of them
KILL_AT = 3


def free_ports(count: int) -> list[int]:
    found: list[int] = []
    while len(found) < count:
        port = free_port()
        if port not in found:
            found.append(port)
    return found


def build_cluster_stack(root: Path) -> Stack:
    require_nats_server()
    home = root / "home"
    keyring.init_keys(home / "keys")
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    layout = NatsLayout(home)
    ports = free_ports(6)
    nodes = [
        ClusterNode(f"n{i + 1}", "127.0.0.1", ports[2 * i], ports[2 * i + 1]) for i in range(3)
    ]
    cluster = EmbeddedCluster(layout, nodes)
    stack = Stack(
        root=root,
        home=home,
        settings=settings,
        nats=NatsSettings(url=cluster.url, port=nodes[0].port, replicas=3),
        layout=layout,
        broker=cluster,
        api_port=free_port(),
    )
    stack.register(POLICE, "城关派出所", "police_station")
    with stack.application() as application:
        write_cluster(settings, application, nodes)
    cluster.start()
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_cluster_stack(tmp_path_factory.mktemp("cluster"))
    try:
        built.start_api()
        built.start_relay("--batch-size", "2")
        built.listeners[POLICE] = built.start_listener(POLICE)
        built.wait_api()
        yield built
    finally:
        built.close()


def cluster_of(stack: Stack) -> EmbeddedCluster:
    assert isinstance(stack.broker, EmbeddedCluster)
    return stack.broker


def node_index(stack: Stack, server: str | None) -> int:
    """Which node a `server` field of a log line (`host:port`) names."""
    for index, node in enumerate(cluster_of(stack).nodes):
        if server == f"{node.host}:{node.port}":
            return index
    raise AssertionError(f"no node listens at {server}")


def last_server(lines: list[dict[str, Any]], events: tuple[str, ...]) -> str | None:
    found = [line.get("server") for line in lines if line.get("event") in events]
    return found[-1] if found else None


def relay_node(stack: Stack) -> int:
    assert stack.relay is not None
    lines = stack.relay.lines()
    return node_index(stack, last_server(lines, ("relay_connected", "broker_reconnected")))


def listener_node(listener: Listener) -> str | None:
    return last_server(listener.process.lines(), ("unit_connected", "unit_reconnected"))


def placed(listener: Listener) -> bool:
    return listener_node(listener) is not None


def apart(stack: Stack) -> Listener:
    """The unit client on another node than the relay's (each picks one of the list at random):
    started again until it is, so that a kill takes down one of them only."""
    police = stack.listeners[POLICE]
    for _ in range(8):
        wait_for(partial(placed, police), 30, "the unit client")
        if node_index(stack, listener_node(police)) != relay_node(stack):
            return police
        police.process.stop()
        police = stack.listeners[POLICE] = stack.start_listener(POLICE)
    pytest.fail("the unit client kept choosing the relay's node")


def assignment_ids(listener: Listener) -> Counter[str]:
    return Counter(a["id"] for a in listener.assignments())


def stream_ids(stack: Stack) -> Counter[str]:
    return Counter(json.loads(data)["id"] for _, _, data in stack.stream_messages())


def burst_with_a_kill(stack: Stack, kill: Callable[[], None]) -> set[str]:
    """BURST cases, each assigned to the police, over HTTP; `kill` runs once KILL_AT
    are taken, while the rest keep coming. Returns the assignment ids."""
    reporter = stack.headers(Role.REPORTER, "dongshan-village")
    coordinator = stack.headers(Role.COORDINATOR, OFFICE)
    due = (local_today() + timedelta(days=10)).isoformat()
    taken: list[str] = []
    failures: list[str] = []
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:

        def burst() -> None:
            try:
                for _ in range(BURST):
                    # A case each: a unit gets one assignment per function of a case.
                    answer = client.post(
                        "/v1/cases", json=planted_case("dongshan-village").body, headers=reporter
                    )
                    assert answer.status_code == 201, answer.text
                    case = answer.json()["id"]
                    body = {"unit": POLICE, "function": "family", "task": "家访。", "due_on": due}
                    found = client.post(
                        f"/v1/cases/{case}/assignments", json=body, headers=coordinator
                    )
                    assert found.status_code == 201, found.text
                    taken.append(str(found.json()["assignment_id"]))
                    time.sleep(0.05)
            except Exception as exc:  # reported below: every command must be taken
                failures.append(repr(exc))

        sender = threading.Thread(target=burst)
        sender.start()
        try:
            wait_for(lambda: len(taken) >= KILL_AT or bool(failures), 30, "the burst to start")
            kill()
        finally:
            sender.join(60)
    assert failures == []
    assert len(taken) == BURST
    return set(taken)


def arrives_exactly_once(stack: Stack, listener: Listener, expected: set[str]) -> None:
    wait_for(lambda: set(assignment_ids(listener)) >= expected, 45, "every assignment")
    time.sleep(1.0)  # time for a copy to show up
    counts = assignment_ids(listener)
    assert expected <= set(counts)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    # Stored once in the stream, too: the relay's `Nats-Msg-Id` across the leader's change.
    ids = stream_ids(stack)
    assert max(ids.values()) == 1, [k for k, n in ids.items() if n > 1]


async def replicas(stack: Stack) -> list[tuple[str, bool, int]]:
    """The stream's peers as the leader sees them: (node, current, lag); the leader first."""
    nc = await stack.connect(stack.layout.admin_bundle)
    try:
        info = await nc.jsm().stream_info(STREAM)
    finally:
        await nc.close()
    cluster = info.cluster
    assert cluster is not None and info.config.num_replicas == 3
    found = [(str(cluster.leader), True, 0)]
    for peer in cluster.replicas or []:
        found.append((str(peer.name), bool(peer.current) and not peer.offline, peer.lag or 0))
    return found


def caught_up(stack: Stack, name: str) -> bool:
    try:
        peers = asyncio.run(replicas(stack))
    except (nats.errors.Error, TimeoutError, OSError):
        return False  # a leader is being elected
    return (
        len(peers) == 3
        and any(p[0] == name for p in peers)
        and all(current and lag == 0 for _, current, lag in peers)
    )


def restart_and_catch_up(stack: Stack, index: int) -> None:
    cluster = cluster_of(stack)
    cluster.restart(index)
    name = cluster.nodes[index].name
    wait_for(partial(caught_up, stack, name), 30, f"node {name} to catch up")


def test_the_relays_node_killed_mid_burst_fails_over_and_every_assignment_arrives_once(
    stack: Stack,
) -> None:
    assert stack.relay is not None
    relay = stack.relay
    wait_for(lambda: bool(relay.events("relay_connected")), 30, "the relay")
    police = apart(stack)
    before = set(assignment_ids(police))
    killed = relay_node(stack)
    cluster = cluster_of(stack)
    expected = burst_with_a_kill(stack, partial(cluster.kill, killed))
    arrives_exactly_once(stack, police, expected | before)
    # The relay went on through another node, and nothing made it restart.
    assert relay_node(stack) != killed
    assert relay.popen.poll() is None
    restart_and_catch_up(stack, killed)


def test_the_unit_clients_node_killed_mid_burst_fails_over_and_every_assignment_arrives_once(
    stack: Stack,
) -> None:
    police = apart(stack)
    cluster = cluster_of(stack)
    killed = node_index(stack, listener_node(police))
    assert stack.relay is not None
    relay = stack.relay
    relay_drops = len(relay.events("broker_disconnected"))
    before = set(assignment_ids(police))
    expected = burst_with_a_kill(stack, partial(cluster.kill, killed))
    arrives_exactly_once(stack, police, expected | before)
    assert node_index(stack, listener_node(police)) != killed
    assert police.process.popen.poll() is None
    # The relay's node stayed up: only the unit client failed over.
    assert len(relay.events("broker_disconnected")) == relay_drops
    restart_and_catch_up(stack, killed)


# --- the routes -----------------------------------------------------------------------------------


def route_tls(cert: Path, key: Path, ca: Path) -> str:
    return (
        f'tls {{ cert_file: "{cert}", key_file: "{key}", ca_file: "{ca}", verify: true, '
        "timeout: 5 }"
    )


async def crosses(stack: Stack, client_port: int) -> bool:
    """Does a message published on the outsider's client port reach a subscriber on n1?"""
    nodes = cluster_of(stack).nodes
    one = NatsSettings(url=nodes[0].client_url)
    admin = await connect_as(one, stack.layout, stack.layout.admin_bundle)
    got: list[bytes] = []

    async def keep(msg: Any) -> None:
        got.append(msg.data)

    await admin.subscribe("probe.route", cb=keep)
    await admin.flush()
    outsider = await nats.connect(servers=[f"nats://127.0.0.1:{client_port}"])
    try:
        for _ in range(15):  # a route that forms does so within a few hundred ms
            await outsider.publish("probe.route", b"probe")
            await outsider.flush()
            await asyncio.sleep(0.1)
            if got:
                break
    finally:
        await outsider.close()
        await admin.close()
    return bool(got)


def test_only_a_pinned_route_certificate_joins_the_cluster(stack: Stack, tmp_path: Path) -> None:
    layout = stack.layout
    nodes = cluster_of(stack).nodes
    foreign = _new_ca()
    key, cert = foreign.issue("casetrail-route-n9", client=False, hosts=["127.0.0.1"], route=True)
    (tmp_path / "foreign.key").write_bytes(_key_pem(key))
    (tmp_path / "foreign.pem").write_bytes(_cert_pem(cert))
    (tmp_path / "foreign-ca.pem").write_bytes(foreign.pem)
    # A unit's own certificate: signed by the project's CA, but not a route's (not pinned).
    unit = UnitCredentials.load(stack.credentials[POLICE])
    (tmp_path / "unit.key").write_bytes(unit.tls_key_pem)
    (tmp_path / "unit.pem").write_bytes(unit.tls_cert_pem)
    outsiders = {
        "foreign-ca": (
            "tls",
            route_tls(
                tmp_path / "foreign.pem", tmp_path / "foreign.key", tmp_path / "foreign-ca.pem"
            ),
        ),
        "unit-cert": (
            "tls",
            route_tls(tmp_path / "unit.pem", tmp_path / "unit.key", layout.ca_cert),
        ),
        "plain-tcp": ("nats", ""),
        # The control: a node's own route certificate is let in (so the probe can pass).
        "pinned": (
            "tls",
            route_tls(layout.route_cert("n3"), layout.route_key("n3"), layout.ca_cert),
        ),
    }
    joined: dict[str, bool] = {}
    binary = nats_server_binary()
    for name, (scheme, tls) in outsiders.items():
        client_port, route_port = free_ports(2)
        config = tmp_path / f"{name}.conf"
        config.write_text(
            f'server_name: "outsider-{name}"\nlisten: "127.0.0.1:{client_port}"\n'
            f'cluster {{\n  name: "casetrail"\n  listen: "127.0.0.1:{route_port}"\n'
            f'  routes: ["{scheme}://127.0.0.1:{nodes[0].route_port}"]\n  {tls}\n}}\n'
        )
        with open(tmp_path / f"{name}.log", "wb") as log:
            process = subprocess.Popen([str(binary), "-c", str(config)], stdout=log, stderr=log)
            try:
                wait_for(partial(port_open, "127.0.0.1", client_port), 10, f"the {name} outsider")
                joined[name] = asyncio.run(crosses(stack, client_port))
            finally:
                process.terminate()
                process.wait(10)
    assert joined == {"foreign-ca": False, "unit-cert": False, "plain-tcp": False, "pinned": True}
    # Refused by n1 in the route's TLS handshake, each for its own reason.
    refusals = layout.node_log("n1").read_text()
    assert "TLS route handshake error: certificate not pinned" in refusals
    assert "first record does not look like a TLS handshake" in refusals
    foreign_log = (tmp_path / "foreign-ca.log").read_text()
    assert "TLS route handshake error" in foreign_log
    assert "certificate signed by unknown authority" in foreign_log


# --- every node enforces the same users ----------------------------------------------------------


async def as_unit_on(stack: Stack, node: ClusterNode, bundle: Path, user: str) -> list[str]:
    """Connected to `node` alone as a unit: its own consumer answers; reading the stream by
    sequence and subscribing to the messages' subjects are refused. Returns the refusals."""
    errors: list[str] = []
    one = NatsSettings(url=node.client_url)
    nc = await connect_as(one, stack.layout, bundle, errors, inbox_prefix=f"_INBOX_{user}")
    try:
        assert nc.connected_url is not None and nc.connected_url.port == node.port
        info = await nc.jetstream(timeout=5).consumer_info(STREAM, user)
        assert info.name == user
        await nc.subscribe("ct.>")
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.request(f"$JS.API.STREAM.MSG.GET.{STREAM}", b'{"seq": 1}', timeout=1)
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    return errors


def test_unit_add_reloads_every_node_and_each_node_enforces_a_units_permissions(
    stack: Stack,
) -> None:
    out = stack.root / "tribunal.pem"
    added = stack.spawn(
        "unit-add",
        "unit",
        "add",
        "--unit",
        "chengguan-tribunal",
        "--name",
        "城关人民法庭",
        "--type",
        "tribunal",
        "--street",
        "chengguan-street",
        "--out",
        str(out),
    )
    assert added.popen.wait(60) == 0, added.text()
    assert "reloaded here: n1, n2, n3" in added.text()
    stack.credentials["chengguan-tribunal"] = out
    with stack.application() as application:
        tribunal: Unit = application.unit("chengguan-tribunal")
        police: Unit = application.unit(POLICE)
    # The relay makes the new unit's consumer when it reads the registration.
    wait_for(lambda: asyncio.run(_has_consumer(stack, tribunal.nats_user)), 30, "the new consumer")
    for node in cluster_of(stack).nodes:
        for bundle, user in (
            (out, tribunal.nats_user),
            (stack.credentials[POLICE], police.nats_user),
        ):
            errors = "\n".join(asyncio.run(as_unit_on(stack, node, bundle, user))).lower()
            assert 'subscription to "ct.>"' in errors, (node.name, errors)
            assert f'publish to "$js.api.stream.msg.get.{STREAM.lower()}"' in errors, node.name


async def _has_consumer(stack: Stack, user: str) -> bool:
    nc = await stack.connect(stack.layout.admin_bundle)
    try:
        await nc.jsm().consumer_info(STREAM, user)
        return True
    except nats.errors.Error:
        return False
    finally:
        await nc.close()


def test_a_certificate_the_ca_signed_for_no_unit_is_refused_by_every_node(
    stack: Stack, tmp_path: Path
) -> None:
    ca = CertificateAuthority.load(stack.layout)
    key, cert = ca.issue("u0000000000000000", client=True)
    bundle = tmp_path / "stranger.pem"
    bundle.write_bytes(_key_pem(key) + _cert_pem(cert) + ca.pem)
    for node in cluster_of(stack).nodes:

        async def usable(url: str = node.client_url) -> bool:
            try:
                nc = await connect_as(NatsSettings(url=url), stack.layout, bundle)
            except Exception:  # refused in the handshake or at CONNECT
                return False
            try:
                await nc.flush(timeout=2)
                return nc.is_connected
            except Exception:  # refused after the handshake
                return False
            finally:
                await nc.close()

        assert asyncio.run(usable()) is False, node.name
        assert "certificate not pinned" in stack.layout.node_log(node.name).read_text()
