"""Prometheus metrics at `/metrics` and readiness at `/readyz` (issue 21, docs/operations.md).

What is measured, and the only labels there are:
- `casetrail_http_request_duration_seconds{method, route, status}`: every answer, by the route's
  TEMPLATE (`/v1/cases/{case_id}`), never the path: a path may hold a case id, and a path that
  matched no route (`unmatched`) may hold anything.
- `casetrail_audit_write_seconds{committer}` and `casetrail_audit_write_group_size{committer}`:
  each transaction of the group committers (`domain.group_commit`): access events
  (`access-group-commit`) and commands (`command-group-commit`).
- `casetrail_access_refusals_total{rule}`: reads refused, by the rule that refused them (its name
  only: the part before any `:`); `casetrail_command_refusals_total{code}`: commands refused by
  a rule of the case file, by the rule's code.
- At each scrape, from the store (`gateway.http.probes`, the same whichever worker answers):
  `casetrail_store_position`, `casetrail_projection_lag_events{projection}`,
  `casetrail_projection_running{projection}`, `casetrail_relay_backlog_events`,
  `casetrail_relay_running`,
  `casetrail_evidence_lag_events`, `casetrail_undelivered_notices`,
  `casetrail_checkpoint_age_seconds`, `casetrail_checkpoint_uncovered_events`.
Label values come from fixed sets (route templates, rule names, view names, HTTP methods and
statuses): no person, no case id. Proven by tests/integration/test_observability.py, which
plants personal data and case ids, drives requests, scrapes and scans the exposition.

Several workers: `casetrail serve` sets `PROMETHEUS_MULTIPROC_DIR` (`$CASETRAIL_HOME/metrics`,
emptied at each start) before it spawns them, each worker writes its figures there, and a
scrape on any worker adds up every worker's (prometheus-client's multiprocess mode). One worker:
the figures are this process's own.

Who may read them: `/metrics` and the figures of `/readyz` carry no personal data, but they tell
how busy the service is. With `CASETRAIL_METRICS_TOKEN` set, a caller must send it as a bearer
token; without it, only a caller on this host (a loopback peer that is not a trusted proxy)
gets them. `/readyz`'s verdict (200 ready or 503, and which checks failed) is for anyone: a load
balancer's probe needs no secret.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain import errors, group_commit
from domain.application import AccessRefused
from gateway.http.probes import Probes
from gateway.http.problems import problem
from gateway.logs import get_logger

log = get_logger("casetrail.metrics")

ENV_TOKEN: Final = "CASETRAIL_METRICS_TOKEN"  # noqa: S105 - the variable's name
ENV_MULTIPROC: Final = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH: Final = "/metrics"
READY_PATH: Final = "/readyz"

# prometheus-client chooses where values live when it is first imported: in files shared by
# the workers when `PROMETHEUS_MULTIPROC_DIR` names a directory (set by `casetrail serve` before
# the workers start: gateway.settings.export_metrics_directory), else in this process's memory.
MULTIPROCESS: Final = values.ValueClass is not values.MutexValue

# Metrics of this process; in multiprocess mode their values are in the shared files.
_OWN = CollectorRegistry(auto_describe=True)

REQUEST_SECONDS = Histogram(
    "casetrail_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template.",
    ("method", "route", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=_OWN,
)
AUDIT_WRITE_SECONDS = Histogram(
    "casetrail_audit_write_seconds",
    "Time of one group-committed transaction of events (access events or commands).",
    ("committer",),
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=_OWN,
)
AUDIT_GROUP_SIZE = Histogram(
    "casetrail_audit_write_group_size",
    "Events stored by one group-committed transaction.",
    ("committer",),
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=_OWN,
)
ACCESS_REFUSALS = Counter(
    "casetrail_access_refusals",
    "Reads refused (each stored as AccessDenied), by the rule that refused them.",
    ("rule",),
    registry=_OWN,
)
COMMAND_REFUSALS = Counter(
    "casetrail_command_refusals",
    "Commands and requests refused by a rule of the case file, by the rule's code.",
    ("code",),
    registry=_OWN,
)

# Paths served by a mount (no route object): their template.
_MOUNTS: Final = (("/docs/static/", "/docs/static/{path}"), ("/static/", "/static/{path}"))
UNMATCHED: Final = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's template; never the request's own path."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    raw = str(scope.get("path", ""))
    for prefix, template in _MOUNTS:
        if raw.startswith(prefix):
            return template
    return UNMATCHED


class RequestMetrics:
    """Times every HTTP answer by route template. Plain ASGI (as `RequestContext`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes everything is answered 500 by the server

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            REQUEST_SECONDS.labels(
                _method(scope.get("method", "")), route_template(scope), str(status)
            ).observe(time.perf_counter() - started)


_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(method: str) -> str:
    return method if method in _METHODS else "other"  # a client may send any token


def _observe_commit(name: str, size: int, seconds: float) -> None:
    AUDIT_WRITE_SECONDS.labels(name).observe(seconds)
    AUDIT_GROUP_SIZE.labels(name).observe(size)


def rule_label(rule: str) -> str:
    """A refusal rule's name: the part before any `:` (what follows may name a purpose)."""
    return rule.partition(":")[0][:60] or "unknown"


# --- the store's figures, at each scrape -----------------------------------------------------


class StoreFigures(Collector):
    """Gauges read from the store when scraped (`gateway.http.probes`): any worker gives the
    same, so they need no multiprocess aggregation. A figure that cannot be read is left out
    (and `casetrail_store_up` is 0 when the store does not answer)."""

    def __init__(self, probes: Probes) -> None:
        self.probes = probes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        probes = self.probes
        up = GaugeMetricFamily("casetrail_store_up", "1 when the event store answers.")
        try:
            head = probes.head()
        except Exception:  # a scrape reports the store down, never fails
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _gauge("casetrail_store_position", "The store's largest notification id.", head)
        yield from _guarded(self._projections)
        yield from _guarded(lambda: self._followers(head))
        yield from _guarded(self._checkpoint)
        yield from _guarded(
            lambda: [
                _gauge(
                    "casetrail_undelivered_notices",
                    "Notices to units that could not be delivered (NoticeUndeliverable).",
                    probes.undelivered_notices(),
                )
            ]
        )

    def _projections(self) -> list[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "casetrail_projection_lag_events",
            "Events stored after a read model's position.",
            labels=["projection"],
        )
        running = GaugeMetricFamily(
            "casetrail_projection_running",
            "1 when a read model's follower runs, in this process or another (heartbeat).",
            labels=["projection"],
        )
        for status in self.probes.projections():
            lag.add_metric([status.name], status.lag)
            running.add_metric([status.name], 1 if status.running else 0)
        return [lag, running]

    def _followers(self, head: int) -> list[GaugeMetricFamily]:
        found = []
        backlog = self.probes.relay_backlog(head)
        if backlog is not None:
            found.append(
                _gauge(
                    "casetrail_relay_backlog_events",
                    "Events stored after the relay's position (not yet published).",
                    backlog,
                )
            )
        found.append(
            _gauge(
                "casetrail_relay_running",
                "1 when the relay runs (its heartbeat, from whichever process runs it).",
                1 if self.probes.relay_running() else 0,
            )
        )
        lag = self.probes.evidence_lag(head)
        if lag is not None:
            found.append(
                _gauge(
                    "casetrail_evidence_lag_events",
                    "Events stored after the Merkle log's position.",
                    lag,
                )
            )
        return found

    def _checkpoint(self) -> list[GaugeMetricFamily]:
        age, uncovered = self.probes.checkpoint()
        found = [
            _gauge(
                "casetrail_checkpoint_uncovered_events",
                "Events in the Merkle log after the newest signed checkpoint.",
                uncovered,
            )
        ]
        if age is not None:
            found.append(
                _gauge(
                    "casetrail_checkpoint_age_seconds",
                    "Seconds since the newest signed checkpoint.",
                    age,
                )
            )
        return found


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _guarded(figures: Callable[[], Iterable[GaugeMetricFamily]]) -> list[GaugeMetricFamily]:
    try:
        return list(figures())
    except Exception as exc:  # one unreadable figure does not fail the scrape
        log.warning("metrics_figure_failed", error_type=type(exc).__name__)
        return []


class _Own(Collector):
    """This process's own metrics (one worker: no shared files)."""

    def collect(self) -> Iterator[Any]:
        yield from _OWN.collect()


def exposition(probes: Probes | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Own())
    if probes is not None:
        registry.register(StoreFigures(probes))
    return generate_latest(registry)


# --- who may read the figures ----------------------------------------------------------------


def _token(request: Request) -> str:
    """The metrics token the settings give (`CASETRAIL_METRICS_TOKEN`), or ''."""
    services = getattr(request.app.state, "services", None)
    token = services.settings.metrics_token if services is not None else None
    return token or ""


def may_read_figures(request: Request) -> bool:
    """With `CASETRAIL_METRICS_TOKEN`: its bearer. Without: a loopback peer that is not a
    trusted proxy (a proxy's requests come from everyone it forwards)."""
    token = _token(request)
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )
    peer = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if not address.is_loopback:
        return False
    services = getattr(request.app.state, "services", None)
    if services is not None and services.settings.trusted_proxy_header:
        return not any(address in network for network in services.settings.trusted_proxy_networks)
    return True


def _probes(request: Request) -> Probes | None:
    found: Probes | None = getattr(request.app.state, "probes", None)
    services = getattr(request.app.state, "services", None)
    if found is None and services is not None:
        found = Probes(
            services.application,
            services.readmodels,
            getattr(request.app.state, "evidence", None),
            services.settings,
        )
        request.app.state.probes = found
    if found is not None and found.readmodels is None and services is not None:
        # Opened in the background since (gateway.bootstrap.Service): also when they were
        # opened between this probe's making and its keeping above.
        found.readmodels = services.readmodels
    return found


router = APIRouter(tags=["service"])


@router.get(METRICS_PATH, include_in_schema=False)
async def metrics(request: Request) -> Response:
    if not may_read_figures(request):
        return _refused(request)
    body = await run_in_threadpool(exposition, _probes(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# Not in the OpenAPI document, like /metrics: an orchestrator's probe, whose 503 ("not ready",
# with the checks that failed) is its answer, not a problem of a client's request.
@router.get(READY_PATH, include_in_schema=False)
async def readiness(request: Request) -> JSONResponse:
    """Ready (200) or not (503), with each check's verdict; the figures behind them (lags,
    ages, counts; never case content) only to a caller allowed `/metrics`."""
    probes = _probes(request)
    if probes is None:
        return JSONResponse({"status": "not_ready", "checks": {}}, status_code=503)
    checks = await run_in_threadpool(probes.checks)
    ready = all(check.ok for check in checks.values())
    detailed = may_read_figures(request)
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {
            name: {"ok": check.ok, **(check.figures if detailed else {})}
            for name, check in checks.items()
        },
    }
    return JSONResponse(body, status_code=200 if ready else 503)


def _refused(request: Request) -> Response:
    if _token(request):
        return problem(
            request,
            status=401,
            code="unauthenticated",
            title="Authentication required",
            detail=f"send the metrics token ({ENV_TOKEN}) as a bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return problem(
        request,
        status=403,
        code="metrics-local-only",
        title="Metrics are served to this host only",
        detail=f"scrape from this host, or set {ENV_TOKEN} and send it as a bearer token",
    )


# --- wiring ----------------------------------------------------------------------------------

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def _counting(handler: Handler, count: Callable[[Any], None]) -> Handler:
    async def counted(request: Request, exc: Any) -> Response:
        count(exc)
        answer = handler(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    return counted


def install(app: FastAPI) -> None:
    """`/metrics`, `/readyz`, the request timer, the refusal counters, the commit observer.
    Called once the app's own error handlers are installed (the counters wrap them)."""
    app.include_router(router)
    app.add_middleware(RequestMetrics)
    group_commit.observe_commits(_observe_commit)
    handlers = app.exception_handlers
    if AccessRefused in handlers:
        handlers[AccessRefused] = _counting(
            handlers[AccessRefused], lambda exc: ACCESS_REFUSALS.labels(rule_label(exc.rule)).inc()
        )
    if errors.DomainError in handlers:
        handlers[errors.DomainError] = _counting(
            handlers[errors.DomainError],
            lambda exc: COMMAND_REFUSALS.labels(rule_label(str(exc.code))).inc(),
        )
