"""The HTTP API. Identity, purpose of use and the audited read arrive as dependencies, so an
endpoint can neither skip authentication nor read a case without its access event stored first.

Every answer carries `SecurityHeaders`: `Cache-Control: no-store` (answers hold personal data:
case reads, ledgers, lookups, worklists), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
no-referrer`, `X-Frame-Options: DENY` and a Content-Security-Policy that forbids framing (and,
for the API's JSON, everything else). `/docs` is Swagger UI served from the `fastapi-offline`
package under `/docs/static`: no page loads anything from another site. The OpenAPI document
lists every answer an operation can give (401, 403, 404, 409, 413, 422, 431, 503... as
`application/problem+json`). Limits on headers, body and time: `gateway.http.limits`. Problems never
repeat what was submitted: `gateway.http.problems`. Proven by
`tests/integration/test_http_answers.py` and `tests/integration/test_no_echo.py`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.resources
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Final

import psycopg
import structlog
from eventsourcing.persistence import MapperDeserialisationError, PersistenceError
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain import errors
from domain.access import Actor
from domain.application import AccessRefused
from gateway import bootstrap, web
from gateway.auth import AuthenticationFailed
from gateway.bootstrap import Service
from gateway.http import limits, metrics, sessions
from gateway.http.dependencies import ReadModelsOpening, Services
from gateway.http.limits import RequestLimits
from gateway.http.problems import MEDIA_TYPE, Problem, more_errors, problem, validation_errors
from gateway.http.reader import refusal_answer
from gateway.http.routes import access as access_routes
from gateway.http.routes import cases as case_routes
from gateway.http.routes import compliance as compliance_routes
from gateway.http.routes import corrections as correction_routes
from gateway.http.routes import disclosures as disclosure_routes
from gateway.http.routes import evidence as evidence_routes
from gateway.http.routes import guardian_requests as guardian_request_routes
from gateway.http.routes import inbox as inbox_routes
from gateway.http.routes import investigations as investigation_routes
from gateway.http.routes import ledger as ledger_routes
from gateway.http.routes import notices as notice_routes
from gateway.http.routes import reports as report_routes
from gateway.http.routes import retention as retention_routes
from gateway.http.routes import screening as screening_routes
from gateway.http.routes import signin as signin_routes
from gateway.http.routes import submissions as submission_routes
from gateway.http.routes import users as user_routes
from gateway.http.routes import workbench as workbench_routes
from gateway.logs import get_logger
from gateway.settings import Settings
from gateway.store.outages import fault_of
from projections.readmodels import ReadModels

# Each module of endpoints contributes one router.
ROUTERS = (
    case_routes.router,
    access_routes.router,
    ledger_routes.router,
    evidence_routes.router,
    investigation_routes.router,
    inbox_routes.router,
    workbench_routes.router,
    notice_routes.router,
    report_routes.router,
    screening_routes.router,
    correction_routes.router,
    guardian_request_routes.router,
    submission_routes.router,
    compliance_routes.router,
    disclosure_routes.router,
    signin_routes.router,
    user_routes.router,
    retention_routes.router,  # issue 19
)

log = get_logger("casetrail.api")

# A request id a proxy gives (nginx's $request_id: 32 hex digits; or a UUID) is kept, so that its
# logs and ours meet; anything else is replaced, never repeated: an id of free text could carry
# an ID number or a phone, and it would come back in the answer and in every log line.
_REQUEST_ID = re.compile(
    r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$",
    re.IGNORECASE,
)


# --- the app ------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """The ASGI app. Its lifespan serves with `service`, what the wiring point built
    (`gateway.bootstrap.api`: `casetrail serve` builds it in each worker before uvicorn runs);
    without one it asks the wiring point for one when it starts (tests). It starts the service's
    followers (when they run in the API) and closes it all when it stops."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal service
        running = service or bootstrap.api(settings)
        service = None  # used once: a second start builds its own
        services = Services(running.application, running.verifier, settings, running.readmodels)
        app.state.services = services

        def read_models_opened(readmodels: ReadModels) -> None:
            # Opened in the background after a start while the store was away: the ledgers
            # and /readyz use them from now on (plain assignments: each request reads once).
            services.readmodels = readmodels
            probes = getattr(app.state, "probes", None)
            if probes is not None:
                probes.readmodels = readmodels

        running.start(read_models_opened)
        app.state.evidence = running.evidence
        log.info("service_started", store=settings.store_kind)
        try:
            yield
        finally:
            running.close()
            log.info("service_stopped")

    app = _CaseTrailAPI(
        title="casetrail",
        version="0.1.0",
        summary="Audited case files for early-warning issues of minor students (苗头性问题).",
        lifespan=lifespan,
        # The default pages load their scripts from a CDN: /docs is served below, from a package.
        docs_url=None,
        redoc_url=None,
    )
    _install_middleware(app)
    _install_error_handlers(app)
    sessions.install(app)  # a CSRF refusal is 403, not the 401 of a refused token
    for router in ROUTERS:
        app.include_router(router)
    _install_docs(app)
    web.install(app)  # the pages at `/` (issue 18)
    metrics.install(app)  # /metrics, /readyz, request timing (issue 21); after the handlers
    return app


class _CaseTrailAPI(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware too, so that a 500 carries the headers.
        return SecurityHeaders(super().build_middleware_stack())

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            # FastAPI's document (which it caches), then every problem answer added to it.
            self.openapi_schema = _with_problem_answers(super().openapi())
        return self.openapi_schema


def _install_middleware(app: FastAPI) -> None:
    # The last added runs first: the request id, then the limits.
    app.add_middleware(RequestLimits)
    app.add_middleware(RequestContext)


# --- headers of every answer ---------------------------------------------------------------------

DOCS_URL: Final = "/docs"
DOCS_STATIC: Final = "/docs/static"
WEB_STATIC: Final = "/static"

# Nothing of an API answer is to be run, framed or loaded by a browser.
# The headers every answer carries: defined beside the protocol's own refusals (limits).
API_CSP, _ALWAYS, _NO_STORE = limits.API_CSP, limits.ALWAYS_HEADERS, limits.NO_STORE


class SecurityHeaders:
    """Security headers on every answer, `Cache-Control: no-store` on all but the docs' static
    assets, and the API's Content-Security-Policy where an answer does not set its own (/docs
    does). Plain ASGI, like `RequestContext`, to stay off the hot path's CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Static assets (the docs', the pages' script and style) hold no personal data.
        cacheable = scope["path"].startswith((DOCS_STATIC + "/", WEB_STATIC + "/"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in _ALWAYS if h[0] not in names)
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", API_CSP.encode()))
                if not cacheable:
                    headers = [h for h in headers if h[0].lower() != b"cache-control"]
                    headers.append(_NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContext:
    """Request id, start time, bound log context, and one log line per request.

    A plain ASGI middleware: Starlette's `@app.middleware("http")` (`BaseHTTPMiddleware`) runs
    each request through an extra task and memory streams, which cost about 0.4 ms of CPU per
    request on the 2-core benchmark machine. What the endpoints see is the same:
    `request.state.request_id`, `request.state.started`, and `X-Request-ID` on the answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = started
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
        route = scope.get("route")
        actor: Actor | None = state.get("actor")
        # The route template, never the raw path or query: those may carry identifiers.
        log.info(
            "request",
            actor=actor.user if actor else None,
            unit=actor.unit if actor else None,
            method=scope["method"],
            route=getattr(route, "path", "unmatched"),
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )


async def _pad_refusal(request: Request) -> None:
    """Answer every "no such case visible" refusal no sooner than a fixed floor after the
    request began, so that the time taken does not tell a missing case from one not yours."""
    floor = request.app.state.services.settings.refusal_floor_ms / 1000
    elapsed = time.perf_counter() - request.state.started
    if elapsed < floor:
        await asyncio.sleep(floor - elapsed)


def _allowed_methods(request: Request) -> str:
    allowed: set[str] = set()
    # The routers' own routes: included without a prefix, their paths are the app's. An
    # included router is one entry of the app's routes (FastAPI's `_IncludedRouter`): its
    # routes are walked too, or a page's 405 named no method at all.
    routes = [
        *_walked(request.app.router.routes),
        *(r for router in ROUTERS for r in router.routes),
    ]
    for route in routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                allowed |= route.methods
    return ", ".join(sorted(allowed))


def _walked(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walked(inner.routes)
        else:
            yield route


def _shortened(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_HTTP_PROBLEMS: Final = {
    400: ("unreadable-body", "The body could not be read"),
    404: ("not-found", "No such resource"),
    405: ("method-not-allowed", "Method not allowed"),
    503: ("service-unavailable", "The service cannot answer this now"),
}
_HTTP_DETAILS: Final = {
    400: "the body is not JSON encoded as UTF-8; send it so, with Content-Type: application/json",
    404: "nothing is served at this path; the API's paths are listed at /openapi.json",
    405: "this path does not take this method; the Allow header lists the methods it takes",
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        found = validation_errors(exc)
        more = more_errors(exc)
        # Field paths only (never an unknown key: see gateway.http.problems), bounded by
        # gateway.logs.
        log.info("request_invalid", fields=[e["field"] for e in found], more=more)
        # The first few in the detail, each shortened, so that the count of the rest survives
        # the bound on a detail's length.
        detail = "; ".join(f"{e['field']}: {_shortened(e['message'])}" for e in found[:2])
        if len(found) + more > 2:
            detail += f"; and {len(found) + more - 2} more (see errors)"
        return problem(
            request,
            status=422,
            code="validation-error",
            title="The request is not valid",
            detail=detail,
            errors=found,
        )

    @app.exception_handler(errors.DomainError)
    async def rule_broken(request: Request, exc: errors.DomainError) -> Response:
        log.info("command_refused", code=exc.code)
        if isinstance(exc, errors.CaseNotFound):
            await _pad_refusal(request)
        return problem(
            request,
            status=exc.status,
            code=exc.code.replace("_", "-"),
            title="The command breaks a rule of the case file",
            detail=exc.message,
            errors=[{"field": exc.field, "message": exc.message}] if exc.field else (),
        )

    @app.exception_handler(AuthenticationFailed)
    async def unauthenticated(request: Request, exc: AuthenticationFailed) -> Response:
        return problem(
            request,
            status=401,
            code="unauthenticated",
            title="Authentication required",
            detail=str(exc),
            errors=[{"field": "Authorization", "message": str(exc)}],
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(AccessRefused)
    async def refused(request: Request, exc: AccessRefused) -> Response:
        # One answer per rule, whatever the channel (gateway.http.reader): a "no such case"
        # after the same time whether the case does not exist or is not yours.
        answer = refusal_answer(exc.rule)
        if answer.padded:
            await _pad_refusal(request)
        return problem(
            request,
            status=answer.status,
            code=answer.code,
            title=answer.title,
            detail=answer.detail,
            errors=answer.errors(),
        )

    @app.exception_handler(MapperDeserialisationError)
    async def integrity(request: Request, exc: MapperDeserialisationError) -> Response:
        log.error("event_integrity_failure", error=str(exc))
        return problem(
            request,
            status=500,
            code="integrity-error",
            title="A stored event failed its integrity check",
            detail="a stored event did not decrypt or authenticate; nothing was disclosed. Report "
            "this, with the request id, to the operators",
        )

    # A database that failed (unreachable, full, read-only, locked) is a 503 naming its cause
    # (gateway.store.outages), whether the library wrapped the error or a read model's own query
    # raised it: never a 500, never the database's text. A raw error of another kind (a
    # statement the database refused) stays a 500: it is a defect, retrying will not help.
    async def store_failed(request: Request, exc: Exception) -> Response:
        fault = fault_of(exc).value
        log.error("store_failed", error_type=type(exc).__name__, cause=fault.code)
        return problem(
            request,
            status=503,
            code=fault.code,
            title=fault.title,
            detail=fault.detail,
            headers={"Retry-After": "5"},
        )

    for database_error in (PersistenceError, sqlite3.OperationalError, psycopg.OperationalError):
        app.add_exception_handler(database_error, store_failed)

    @app.exception_handler(ReadModelsOpening)
    async def read_models_opening(request: Request, exc: ReadModelsOpening) -> Response:
        return problem(
            request,
            status=503,
            code="read-models-opening",
            title="The service is starting: its read models are not open yet",
            detail="this process started while the store did not answer and is still opening "
            "its read models (ledgers, worklists, lookups), retrying by itself; retry in a few "
            "seconds. Case reads and commands are served meanwhile. Operators: the log's "
            "projections_still_unavailable says why, and /readyz says when it is ready",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code, title = _HTTP_PROBLEMS.get(exc.status_code, ("http-error", str(exc.detail)))
        headers = dict(exc.headers) if exc.headers else {}  # e.g. 503's `Retry-After`
        if exc.status_code == 405:
            # RFC 9110 §15.5.6: every method the path takes; Starlette names only the methods
            # of the first route that matched the path (GET and POST /v1/cases are two routes).
            headers["Allow"] = _allowed_methods(request)
        return problem(
            request,
            status=exc.status_code,
            code=code,
            title=title,
            detail=_HTTP_DETAILS.get(exc.status_code, str(exc.detail)),
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected_error", error_type=type(exc).__name__)
        return problem(
            request,
            status=500,
            code="internal-error",
            title="Internal error",
            detail="the server failed; the request id identifies it in the logs",
        )


# --- /docs, from a package -----------------------------------------------------------------------

_DOCS_ASSETS: Final = importlib.resources.files("fastapi_offline") / "static"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _install_docs(app: FastAPI) -> None:
    """Swagger UI with its script, style and icon served here (`fastapi-offline`'s copies), and
    a Content-Security-Policy that lets the page load nothing from anywhere else."""
    app.mount(DOCS_STATIC, StaticFiles(directory=str(_DOCS_ASSETS)), name="docs-static")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="casetrail - API",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            # Swagger UI would otherwise send the document to an outside validator.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = _docs_policy(bytes(page.body))
        return page


def _docs_policy(page: bytes) -> str:
    """The page's own inline script is allowed by its hash; everything else only from here."""
    scripts = [m.group(1).encode() for m in _INLINE_SCRIPT.finditer(page.decode())]
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in scripts
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


# --- the OpenAPI document: every answer ----------------------------------------------------------

_PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
_ANSWERS: Final = {
    400: "The body could not be read as UTF-8 JSON",
    401: "No valid bearer token (`urn:casetrail:problem:unauthenticated`)",
    403: "Not permitted: role, purpose of use, or a rule of the case",
    404: "No such case (or evidence) is visible to you",
    408: "The body was not received in time",
    409: "The command conflicts with the case's state (closed, already done, a lost race)",
    410: "The case file was erased under a retention rule (`urn:casetrail:problem:erased`): "
    "when, and which rule; the attempt is recorded",
    413: f"The body is larger than {limits.MAX_BODY_BYTES} bytes",
    422: "A field (body, query, path or header) is not valid, or a rule refused it",
    431: f"More than {limits.MAX_HEADERS} headers, or more than {limits.MAX_HEADER_BYTES} bytes",
    500: "The server failed (the request id identifies it in the logs)",
    503: "The event store or the read models could not serve this request; retry later",
}
_READS_WITHOUT_PATH_ID: Final = frozenset({"evidence"})  # tags whose reads may answer 404
_WITHOUT_CONFLICTS: Final = frozenset({"ledgers"})  # tags whose POSTs change nothing


def _with_problem_answers(document: dict[str, Any]) -> dict[str, Any]:
    """Each operation lists the problem answers it can give, as `application/problem+json`."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            for status in _problem_statuses(path, method, operation):
                answer = operation["responses"].setdefault(str(status), {})
                answer["description"] = _ANSWERS[status]
                answer["content"] = {MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    # FastAPI's own 422 shape is never answered: every 422 is a problem.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return document


def _problem_statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    secured = bool(operation.get("security"))
    tags = set(operation.get("tags", ()))
    has_body = "requestBody" in operation
    found = {431, 500}
    if "422" in operation["responses"] or operation.get("parameters") or has_body:
        found.add(422)
    if secured:
        found |= {401, 403, 503}
    if "{" in path or tags & _READS_WITHOUT_PATH_ID:
        found.add(404)
    if method == "post" and not tags & _WITHOUT_CONFLICTS:
        found |= {404, 409}  # a command's body may name a case, an order, a unit
    if has_body:
        found |= {400, 408, 413}
    if 404 in found and secured and not path.startswith("/v1/notices/"):
        # What names a case may name an erased one (issue 19); a notice's facts are under the
        # service's key, never erased, so its receipt never answers 410.
        found.add(410)
    return sorted(found)
