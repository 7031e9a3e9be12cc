"""What `casetrail serve` runs next to the API: the embedded broker, the relay and the
followers, supervised.

One command brings everything up (`make run`), and Ctrl-C (or SIGTERM) stops everything:

- the broker config is regenerated from the unit registry (TLS material made once, kept);
- unless `CASETRAIL_NATS_URL` names an external server, the embedded nats-server is started
  with it (its output goes to `$CASETRAIL_HOME/nats/nats-server.log`);
- the relay runs as a child process (`casetrail relay run`), its JSON log lines on our stderr;
- with `CASETRAIL_PROJECTIONS=process` (the default with several API workers) the read models
  and the evidence log are followed by a child process (`casetrail projections run`).

A child that dies is started again, with a backoff. A broker that cannot start is logged and
retried, never fatal: the API takes commands without it, and the relay catches up later.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

from domain.application import CaseTrail
from gateway.lifeline import SUPERVISED_BY_OPTION
from gateway.logs import get_logger
from gateway.messaging.broker import BrokerProblem, EmbeddedBroker
from gateway.messaging.broker_config import NatsConfigProblem, NatsLayout
from gateway.messaging.registry import write_broker_config
from gateway.settings import Settings

log = get_logger("casetrail.supervisor")

_CHECK_SECONDS: Final = 1.0
_MAX_BACKOFF: Final = 30.0
_CLI: Final = (sys.executable, "-c", "from gateway.cli.main import main; main()")
RELAY_COMMAND: Final = (*_CLI, "relay", "run")
PROJECTIONS_COMMAND: Final = (*_CLI, "projections", "run")


class _Child:
    """One supervised thing: started, watched, restarted with a backoff, stopped."""

    def __init__(self, name: str, start: Callable[[], None], alive: Callable[[], bool]) -> None:
        self.name = name
        self._start = start
        self._alive = alive
        self.backoff = 1.0
        self.next_try = 0.0

    def check(self, now: float) -> None:
        if self._alive() or now < self.next_try:
            return
        try:
            self._start()
            log.info("child_started", child=self.name)
            self.backoff = 1.0
        except (BrokerProblem, OSError) as exc:
            log.error("child_failed", child=self.name, error=str(exc)[:300])
            self.next_try = now + self.backoff
            self.backoff = min(self.backoff * 2, _MAX_BACKOFF)


class _Process:
    """A child process of ours (a casetrail CLI command), started and stopped; told who
    supervises it, so that it stops by itself should this process die (`gateway.lifeline`)."""

    def __init__(self, command: tuple[str, ...]) -> None:
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = (*self.command, SUPERVISED_BY_OPTION, str(os.getpid()))
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)  # noqa: S603

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        application: CaseTrail,
        *,
        messaging: bool = True,
        projections: bool = False,
    ) -> None:
        self.settings = settings
        self.application = application
        self.nats = settings.nats
        self.layout = NatsLayout(settings.home)
        self.broker: EmbeddedBroker | None = None
        self.relay = _Process(RELAY_COMMAND)
        self.projections = _Process(PROJECTIONS_COMMAND)
        self.with_messaging = messaging
        self.with_projections = projections
        self._children: list[_Child] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.with_projections:
            self._children.append(
                _Child("projections", self.projections.start, self.projections.alive)
            )
        if self.with_messaging:
            self._add_messaging()
        now = time.monotonic()
        for child in self._children:
            child.check(now)
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def _add_messaging(self) -> None:
        try:
            write_broker_config(self.settings, self.application, self.nats)
        except (NatsConfigProblem, OSError) as exc:
            log.error("broker_config_failed", error=str(exc)[:300])
            return
        if self.nats.embedded:
            self.broker = EmbeddedBroker(
                self.layout, host=self.nats.host, port=self.nats.port, binary=self.nats.binary
            )
            broker = self.broker
            self._children.append(_Child("nats-server", broker.start, lambda: broker.running))
        self._children.append(_Child("relay", self.relay.start, self.relay.alive))

    def _watch(self) -> None:
        while not self._stop.wait(_CHECK_SECONDS):
            now = time.monotonic()
            for child in self._children:
                child.check(now)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.relay.stop()
        self.projections.stop()
        if self.broker is not None:
            self.broker.stop()
        log.info("children_stopped")
