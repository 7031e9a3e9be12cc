"""The real service for tests that probe it from outside: `casetrail serve` in a process of its
own, on a free port, with a temporary `CASETRAIL_HOME`, its stdout and stderr captured to a file,
tokens minted with `casetrail token issue`, stopped with SIGTERM.

Used by the schema fuzz run (`test_schema_fuzz.py`) and the canary leak scan
(`test_canary_leaks.py`); both must be able to fail, so a service that does not start is a failure,
never a skip, and a tool the CI needs that is missing fails when `CI=true`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from domain.taxonomy import Role
from gateway.bootstrap import open_application
from gateway.cli.main import DEFAULT_STREET
from gateway.settings import Settings
from tests.domain.builders import register_units
from tests.people import ensure_registered

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))


def missing(what: str) -> None:
    """A needed tool or service is absent: a skip on a developer machine, a failure in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(what)
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a service under test: only its own home and store settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    environ["CASETRAIL_HOME"] = str(home)
    environ.update(extra or {})
    return environ


def register_units_before_start(
    home: Path, *unit_ids: str, env: dict[str, str] | None = None
) -> None:
    """Register member units in the store of `home` before its service starts (only a
    registered unit can be assigned): `tests.domain.builders.register_units` on this store."""
    settings = Settings.from_env({**(env or {}), "CASETRAIL_HOME": str(home)})
    application = open_application(settings)
    try:
        register_units(application, *unit_ids)
    finally:
        application.close()


def register_user_of(
    home: Path, user: str, role: str, unit: str, street: str, env: dict[str, str] | None = None
) -> None:
    """Register the user (or grant the role) in the store of `home`, as an administrator
    would (`CaseTrail.ensure_user`); the service, running or not, finds them there."""
    settings = Settings.from_env({**(env or {}), "CASETRAIL_HOME": str(home)})
    application = open_application(settings)
    try:
        ensure_registered(application, user, Role(role), unit, street)
    finally:
        application.close()


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `casetrail ARGS` for this home; its stdout, or a test failure with its stderr."""
    result = subprocess.run(
        [CASETRAIL, *args],
        env=service_env(home, env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"casetrail {args[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@dataclass
class LiveService:
    """One `casetrail serve --no-messaging` process."""

    home: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 40) -> LiveService:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [CASETRAIL, "serve", "--port", str(self.port), "--no-messaging"],
            env=service_env(self.home, self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"casetrail serve did not start; its log:\n{self.logs()[-4000:]}")
            time.sleep(0.2)

    def token(self, role: str, unit: str, *, user: str | None = None, street: str = "") -> str:
        """A token from `casetrail token issue` for a user registered first (issue 16: only a
        registered, active user holding the role gets one)."""
        who = user or f"probe-{role}"
        register_user_of(self.home, who, role, unit, street or DEFAULT_STREET, env=self.env)
        args = ["token", "issue", "--user", who, "--role", role]
        args += ["--unit", unit]
        if street:
            args += ["--street", street]
        return cli(self.home, *args, env=self.env).strip()

    def headers(self, token: str, purpose: str | None = None) -> dict[str, str]:
        found = {"Authorization": f"Bearer {token}"}
        if purpose:
            found["X-Purpose-Of-Use"] = purpose
        return found

    def caught_up(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until every read model has applied every stored event, as an operator checks
        (`casetrail projections status --json`); each read model's status."""
        deadline = time.monotonic() + timeout
        while True:
            found = json.loads(cli(self.home, "projections", "status", "--json", env=self.env))
            projections: list[dict[str, Any]] = found["projections"]
            if projections and all(p["lag"] == 0 for p in projections):
                return projections
            if time.monotonic() > deadline:
                pytest.fail(f"the read models did not catch up: {projections}")
            time.sleep(0.3)

    def stop(self) -> int | None:
        """SIGTERM, as an operator stops it; the exit status."""
        status = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            status = self.process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return status

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")
