"""How `casetrail serve` runs the service: API worker processes, and the children beside them.

    casetrail serve                          CASETRAIL_WORKERS=1: one API process
    CASETRAIL_WORKERS=2 casetrail serve      two API processes sharing the port (one per CPU)

This process checks the keys and the store first (a bad setting fails here, in one line), then
starts the supervised children (`gateway.supervisor`: the embedded broker, the relay, and with
`CASETRAIL_PROJECTIONS=process` the followers), then runs uvicorn until SIGINT or SIGTERM, then
stops the children. With several workers, their metrics meet in `$CASETRAIL_HOME/metrics`
(`_prepare_metrics`, `gateway.http.metrics`).

Several workers are several Python processes: a process runs Python on one core at a time, and
the HTTP work of a request (parsing, routing, validation, serialising) is CPU-bound. Everything
that must be single is outside the workers: the followers (one writer per read model) and the
relay run once, as children of this process. What the workers share, they share through the
store: the version check decides between concurrent commands on one case, and each worker
commits its own batches of access events (`domain.group_commit`).

uvicorn runs with httptools (a C HTTP parser, instead of the pure-Python h11) and uvloop (a
libuv event loop): together they take about a third of the CPU of a small request off every
request (bench/README.md, "Profiling"). The protocol is httptools' with bounds uvicorn lacks
(`gateway.http.limits.GuardedHttpToolsProtocol`: a request's head is at most 32 KiB and must arrive
within 10 s, else 431 or 408); each worker holds at most `MAX_CONNECTIONS` connections (beyond,
503), closes idle keep-alive connections after `KEEP_ALIVE_SECONDS`, and does not name its
server software. Proven over sockets by `tests/integration/test_http_limits.py`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Final

import uvicorn
from fastapi import FastAPI

from domain.application import CaseTrail
from gateway import bootstrap, lifeline, logs, supervisor
from gateway.bootstrap import StartupProblem
from gateway.http.app import create_app
from gateway.settings import Settings, export_metrics_directory

log = logs.get_logger("casetrail.serve")

# The ASGI app each worker builds for itself (`factory=True`): an import string, since worker
# processes are spawned, not forked.
SERVICE_APP: Final = "gateway.serving:service_app"

MAX_CONNECTIONS: Final = 1000  # per worker; the benchmarks use 32 clients
KEEP_ALIVE_SECONDS: Final = 5

UVICORN_OPTIONS: Final[dict[str, Any]] = {
    "http": "gateway.http.limits:GuardedHttpToolsProtocol",
    "limit_concurrency": MAX_CONNECTIONS,
    "timeout_keep_alive": KEEP_ALIVE_SECONDS,
    "server_header": False,
    "loop": "uvloop",
    "log_config": None,  # our JSON logs (gateway.logs), configured by each worker
    "access_log": False,  # one line per request comes from gateway.http.app.RequestContext
    "timeout_graceful_shutdown": 10,
    # uvicorn kills a worker that does not answer its health check within this many seconds
    # (default 5) and starts another: a spawned worker first imports the whole service, which
    # on a loaded machine takes longer, so with 5 s the workers were killed and restarted
    # forever and the API never came up (tests/integration/test_users_workers.py, issue 16).
    "timeout_worker_healthcheck": 60,
    # The socket peer stays the peer: uvicorn would otherwise take X-Forwarded-For from any
    # local client (its default trusts 127.0.0.1) before the service sees it. Which header,
    # from which proxies, is the service's setting (CASETRAIL_TRUSTED_PROXY_HEADER,
    # gateway/http/client.py).
    "proxy_headers": False,
}


def service_app() -> FastAPI:
    """One worker's app: settings from the environment, logs configured, its service built
    by the wiring point (`gateway.bootstrap.api`).

    The service is built here, before uvicorn runs the app's lifespan: a problem at start is
    then one log line and exit status 2, where from the lifespan it would be uvicorn's
    "Application startup failed" and a traceback (tests/integration/test_first_start.py)."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    # A worker of several does not outlive `casetrail serve` killed without stopping it.
    lifeline.exit_with_spawning_process()
    try:
        service = bootstrap.api(settings)
    except StartupProblem as exc:
        log.error("worker_start_failed", error=str(exc))
        raise SystemExit(2) from None
    return create_app(settings, service)


def _prepare_read_models(settings: Settings, application: CaseTrail) -> None:
    """Create the read models' tables and indexes once, here, before the workers and the
    followers open them: several processes creating an index on a large table at once would
    wait on each other's locks (SQLite) until one gave up. Not fatal, as in the API itself."""
    try:
        bootstrap.open_read_models(settings, application).close()
    except StartupProblem as exc:
        log.error("projections_unavailable", error=str(exc))


METRICS_DIR: Final = "metrics"  # under $CASETRAIL_HOME


def _prepare_metrics(settings: Settings) -> None:
    """Several workers: each writes its metrics to files in `$CASETRAIL_HOME/metrics`, which
    a scrape on any worker adds up (`gateway.http.metrics`). Set before the workers are spawned
    (prometheus-client reads it when first imported); emptied first, or a past run's counts
    would be added to this one's. A directory the operator set is theirs: left as it is."""
    if settings.workers < 2 or settings.prometheus_multiproc_dir is not None:
        return
    directory = settings.home / METRICS_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    export_metrics_directory(directory)


class _Stopped(Exception):
    """SIGINT or SIGTERM reached this process outside uvicorn's own handling."""


def _stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signum)


def run(
    settings: Settings,
    *,
    host: str,
    port: int,
    messaging: bool = True,
    app: str = SERVICE_APP,
    announce: Callable[[], None] | None = None,
) -> None:
    """Serve until stopped. `app` is a factory's import string (benchmarks pass their own);
    `announce` is called once the keys and the store have been checked."""
    # Fails here, in one line, if keys or store are bad.
    application = bootstrap.open_application(settings)
    _prepare_read_models(settings, application)
    if announce is not None:
        announce()
    _prepare_metrics(settings)
    children = supervisor.Supervisor(
        settings, application, messaging=messaging, projections=settings.followers_in_child
    )
    # With one worker uvicorn shuts down on SIGTERM, then raises the signal again under the
    # handler it found: ours turns it into an exception, so that the children are stopped
    # (not orphaned) before this process ends, with status 0.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        children.start()
        uvicorn.run(
            app,
            factory=True,
            host=host,
            port=port,
            workers=settings.workers,
            **UVICORN_OPTIONS,
        )
    except _Stopped:
        pass
    finally:
        children.stop()
        application.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
