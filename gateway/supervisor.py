"""What `casetrail serve` runs next to the API: the embedded broker and the relay, supervised.

One command brings everything up (`make run`), and Ctrl-C (or SIGTERM) stops everything:

- the broker config is regenerated from the unit registry (TLS material made once, kept);
- unless `CASETRAIL_NATS_URL` names an external server, the embedded nats-server is started
  with it (its output goes to `$CASETRAIL_HOME/nats/nats-server.log`);
- the relay runs as a child process (`casetrail relay run`), its JSON log lines on our stderr.

A child that dies is started again, with a backoff. A broker that cannot start is logged and
retried, never fatal: the API takes commands without it, and the relay catches up later.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI

from domain.application import CaseTrail
from gateway.broker import BrokerProblem, EmbeddedBroker, NatsSettings
from gateway.logs import get_logger
from gateway.nats_config import NatsConfigProblem, NatsLayout
from gateway.settings import Settings
from gateway.unit_registry import write_broker_config

log = get_logger("casetrail.supervisor")

_CHECK_SECONDS: Final = 1.0
_MAX_BACKOFF: Final = 30.0
RELAY_COMMAND: Final = (
    sys.executable,
    "-c",
    "from gateway.cli import main; main()",
    "relay",
    "run",
)


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


class Supervisor:
    def __init__(
        self, settings: Settings, application: CaseTrail, *, relay: bool = True
    ) -> None:
        self.settings = settings
        self.application = application
        self.nats = NatsSettings.from_env()
        self.layout = NatsLayout(settings.home)
        self.broker: EmbeddedBroker | None = None
        self.relay: subprocess.Popen[bytes] | None = None
        self.with_relay = relay
        self._children: list[_Child] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            write_broker_config(self.settings, self.application, self.nats)
        except (NatsConfigProblem, OSError) as exc:
            log.error("broker_config_failed", error=str(exc)[:300])
            return
        if self.nats.embedded:
            self.broker = EmbeddedBroker(self.layout, host=self.nats.host, port=self.nats.port)
            broker = self.broker
            self._children.append(_Child("nats-server", broker.start, lambda: broker.running))
        if self.with_relay:
            self._children.append(_Child("relay", self._start_relay, self._relay_alive))
        now = time.monotonic()
        for child in self._children:
            child.check(now)
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def _start_relay(self) -> None:
        self.relay = subprocess.Popen(RELAY_COMMAND, stdin=subprocess.DEVNULL)  # noqa: S603

    def _relay_alive(self) -> bool:
        return self.relay is not None and self.relay.poll() is None

    def _watch(self) -> None:
        while not self._stop.wait(_CHECK_SECONDS):
            now = time.monotonic()
            for child in self._children:
                child.check(now)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        relay, self.relay = self.relay, None
        if relay is not None and relay.poll() is None:
            relay.terminate()
            try:
                relay.wait(10)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait(5)
        if self.broker is not None:
            self.broker.stop()
        log.info("messaging_stopped")


def attach(app: FastAPI, settings: Settings, application: CaseTrail, *, relay: bool = True) -> None:
    """Run the broker and the relay for as long as the app's lifespan: started before the API
    serves, stopped after it has stopped, whatever ends it."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: FastAPI) -> AsyncIterator[Any]:
        supervisor = Supervisor(settings, application, relay=relay)
        supervisor.start()
        try:
            async with inner(target) as state:
                yield state
        finally:
            supervisor.stop()

    app.router.lifespan_context = lifespan
