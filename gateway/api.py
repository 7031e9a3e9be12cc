"""The HTTP API. Identity, purpose of use and the audited read arrive as dependencies, so an
endpoint can neither skip authentication nor read a case without its access event stored first.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import structlog
from eventsourcing.persistence import MapperDeserialisationError, PersistenceError
from fastapi import Body, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import commands as cmd
from domain import errors
from domain.access import Actor
from domain.application import AccessRefused, CaseTrail
from domain.case import Case
from domain.taxonomy import (
    CATEGORY_LABELS,
    PROTECTION_FUNCTION_LABELS,
    SUBTYPES,
    Purpose,
)
from gateway import keyring
from gateway.auth import AuthenticationFailed, TokenVerifier
from gateway.examples import REPORT_CLUE_EXAMPLE
from gateway.logs import get_logger
from gateway.problems import problem, validation_errors
from gateway.settings import Settings
from gateway.startup import open_application

log = get_logger("casetrail.api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@dataclass
class Services:
    application: CaseTrail
    verifier: TokenVerifier
    settings: Settings


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


# --- dependencies: who, why, and the audited read ------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="Ed25519 JWT from `casetrail token issue`")


async def current_actor(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None:
        raise AuthenticationFailed("no bearer token; send `Authorization: Bearer <token>`")
    actor = svc.verifier.verify(credentials.credentials)
    structlog.contextvars.bind_contextvars(actor=actor.user, role=str(actor.role), unit=actor.unit)
    request.state.actor = actor
    return actor


def purpose_of_use(
    x_purpose_of_use: Annotated[
        Purpose, Header(description="Why you are reading: recorded with the access event")
    ],
) -> Purpose:
    return x_purpose_of_use


@dataclass
class AuditedReader:
    """The only way an endpoint gets case content: each read is recorded before it returns."""

    application: CaseTrail
    actor: Actor
    purpose: Purpose
    request_id: str

    def case(self, case_id: UUID) -> dict[str, Any]:
        return self.application.read_case(case_id, self.actor, self.purpose, self.request_id)


def audited_reader(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    actor: Annotated[Actor, Depends(current_actor)],
    purpose: Annotated[Purpose, Depends(purpose_of_use)],
) -> AuditedReader:
    return AuditedReader(svc.application, actor, purpose, request.state.request_id)


ActorDep = Annotated[Actor, Depends(current_actor)]
ServicesDep = Annotated[Services, Depends(services)]
ReaderDep = Annotated[AuditedReader, Depends(audited_reader)]


# --- the app ------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, application: CaseTrail | None = None) -> FastAPI:
    """The ASGI app; opens the store (unless given one) and checks the keys when it starts."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal application
        application = application or open_application(settings)
        verifier = TokenVerifier(
            [
                keyring.load_public_key(p, "token public key")
                for p in settings.token_public_key_paths
            ]
        )
        app.state.services = Services(application, verifier, settings)
        log.info("service_started", store=settings.store_kind)
        try:
            yield
        finally:
            application.close()
            application = None
            log.info("service_stopped")

    app = FastAPI(
        title="casetrail",
        version="0.1.0",
        summary="Audited case files for early-warning issues of minor students (苗头性问题).",
        lifespan=lifespan,
    )
    _install_middleware(app)
    _install_error_handlers(app)
    _install_routes(app)
    return app


def _install_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        actor: Actor | None = getattr(request.state, "actor", None)
        # The route template, never the raw path or query: those may carry identifiers.
        log.info(
            "request",
            actor=actor.user if actor else None,
            unit=actor.unit if actor else None,
            method=request.method,
            route=getattr(route, "path", "unmatched"),
            status=response.status_code,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        response.headers["X-Request-ID"] = request_id
        return response


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        found = validation_errors(exc)
        log.info("request_invalid", fields=[e["field"] for e in found])
        return problem(
            request,
            status=422,
            code="validation-error",
            title="The request is not valid",
            detail="; ".join(f"{e['field']}: {e['message']}" for e in found),
            errors=found,
        )

    @app.exception_handler(errors.DomainError)
    async def rule_broken(request: Request, exc: errors.DomainError) -> Response:
        log.info("command_refused", code=exc.code)
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
        if exc.rule.startswith("purpose_not_allowed"):
            return problem(
                request,
                status=403,
                code="purpose-not-allowed",
                title="This purpose of use is not allowed for your role",
                detail="declare a purpose your role may use; the refusal was recorded",
                errors=[{"field": "X-Purpose-Of-Use", "message": "not allowed for your role"}],
            )
        # The same answer whether the case does not exist or is not yours to see.
        return problem(
            request,
            status=404,
            code="case-not-found",
            title="No such case is visible to you",
            detail="no case with this id is visible to you; the attempt was recorded",
        )

    @app.exception_handler(MapperDeserialisationError)
    async def integrity(request: Request, exc: MapperDeserialisationError) -> Response:
        log.error("event_integrity_failure", error=str(exc))
        return problem(
            request,
            status=500,
            code="integrity-error",
            title="A stored event failed its integrity check",
            detail=f"{exc}. Nothing was disclosed. Report this to the operators.",
        )

    @app.exception_handler(PersistenceError)
    async def store_unavailable(request: Request, exc: PersistenceError) -> Response:
        log.error("store_write_failed", error_type=type(exc).__name__)
        return problem(
            request,
            status=503,
            code="store-unavailable",
            title="The event store could not record this request",
            detail="the store did not durably record the request, so nothing was disclosed or "
            "changed; retry later",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            request,
            status=exc.status_code,
            code="http-error",
            title=str(exc.detail),
            detail=str(exc.detail),
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


def _created(response: Response, case_id: UUID, case_version: int | None = None) -> dict[str, Any]:
    response.headers["Location"] = f"/v1/cases/{case_id}"
    body: dict[str, Any] = {"id": str(case_id)}
    if case_version is not None:
        body["version"] = case_version
    return body


def _install_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["service"])
    def health(svc: ServicesDep) -> dict[str, Any]:
        """Liveness and the store's position; no case content."""
        return {
            "status": "ok",
            "store": svc.settings.store_kind,
            "position": svc.application.recorder.max_notification_id() or 0,
        }

    @app.get("/v1/taxonomy", tags=["reference"])
    def taxonomy() -> dict[str, Any]:
        """Category and subtype codes with their Chinese labels; protection functions."""
        return {
            "categories": [
                {
                    "code": str(category),
                    "label": CATEGORY_LABELS[category],
                    "subtypes": [{"code": c, "label": lbl} for c, lbl in subtypes.items()],
                }
                for category, subtypes in SUBTYPES.items()
            ],
            "protection_functions": [
                {"code": str(f), "label": lbl} for f, lbl in PROTECTION_FUNCTION_LABELS.items()
            ],
        }

    @app.post("/v1/cases", status_code=201, tags=["cases"])
    def report_clue(
        command: Annotated[cmd.ReportClue, Body(openapi_examples=REPORT_CLUE_EXAMPLE)],
        actor: ActorDep,
        svc: ServicesDep,
        response: Response,
    ) -> dict[str, Any]:
        """Report a clue: one clue, one file (一线索一档案). Answers the new case's id."""
        case_id = svc.application.report_clue(command, actor)
        log.info("clue_reported", case_id=str(case_id))
        return _created(response, case_id, 1)

    @app.get("/v1/cases/{case_id}", tags=["cases"])
    def read_case(case_id: UUID, reader: ReaderDep) -> dict[str, Any]:
        """The fields of the case you may see. The access is recorded before the answer."""
        return reader.case(case_id)

    _install_command_routes(app)


def _install_command_routes(app: FastAPI) -> None:
    """One POST per command on a case; each answers the case's new version."""

    def run(
        svc: Services, actor: Actor, case_id: UUID, action: str, change: Callable[[Case], Any]
    ) -> dict[str, Any]:
        result = svc.application.change_case(case_id, actor, action, change)
        log.info("case_changed", case_id=str(case_id), action=action)
        body: dict[str, Any] = {"id": str(case_id)}
        if isinstance(result, UUID):
            body["assignment_id"] = str(result)
        return body

    @app.post("/v1/cases/{case_id}/reclassification", tags=["case commands"])
    def reclassify(
        case_id: UUID, command: cmd.Reclassify, actor: ActorDep, svc: ServicesDep
    ) -> Any:
        return run(
            svc, actor, case_id, "reclassify", lambda c: c.reclassify(command, by=actor.as_record())
        )

    @app.post("/v1/cases/{case_id}/risk-assessments", tags=["case commands"])
    def assess_risk(
        case_id: UUID, command: cmd.AssessRisk, actor: ActorDep, svc: ServicesDep
    ) -> Any:
        return run(
            svc,
            actor,
            case_id,
            "assess_risk",
            lambda c: c.assess_risk(command, by=actor.as_record()),
        )

    @app.post("/v1/cases/{case_id}/consultations", tags=["case commands"])
    def hold_consultation(
        case_id: UUID, command: cmd.HoldConsultation, actor: ActorDep, svc: ServicesDep
    ) -> Any:
        return run(
            svc,
            actor,
            case_id,
            "hold_consultation",
            lambda c: c.hold_consultation(command, by=actor.as_record()),
        )

    @app.post("/v1/cases/{case_id}/assignments", status_code=201, tags=["case commands"])
    def assign_unit(
        case_id: UUID, command: cmd.AssignUnit, actor: ActorDep, svc: ServicesDep
    ) -> Any:
        return run(
            svc,
            actor,
            case_id,
            "assign_unit",
            lambda c: c.assign_unit(command, by=actor.as_record()),
        )

    @app.post(
        "/v1/cases/{case_id}/assignments/{assignment_id}/acknowledgement", tags=["case commands"]
    )
    def acknowledge(case_id: UUID, assignment_id: UUID, actor: ActorDep, svc: ServicesDep) -> Any:
        return run(
            svc,
            actor,
            case_id,
            "acknowledge_assignment",
            lambda c: c.acknowledge_assignment(
                assignment_id, unit=actor.unit, by=actor.as_record()
            ),
        )

    @app.post("/v1/cases/{case_id}/interventions", status_code=201, tags=["case commands"])
    def record_intervention(
        case_id: UUID, command: cmd.RecordIntervention, actor: ActorDep, svc: ServicesDep
    ) -> Any:
        return run(
            svc,
            actor,
            case_id,
            "record_intervention",
            lambda c: c.record_intervention(command, by=actor.as_record()),
        )

    @app.post("/v1/cases/{case_id}/guardianship-letters", status_code=201, tags=["case commands"])
    def sign_letter(
        case_id: UUID, command: cmd.SignGuardianshipLetter, actor: ActorDep, svc: ServicesDep
    ) -> Any:
        return run(
            svc,
            actor,
            case_id,
            "sign_guardianship_letter",
            lambda c: c.sign_guardianship_letter(command, by=actor.as_record()),
        )

    @app.post("/v1/cases/{case_id}/follow-ups", status_code=201, tags=["case commands"])
    def record_follow_up(
        case_id: UUID, command: cmd.RecordFollowUp, actor: ActorDep, svc: ServicesDep
    ) -> Any:
        return run(
            svc,
            actor,
            case_id,
            "record_follow_up",
            lambda c: c.record_follow_up(command, by=actor.as_record()),
        )

    @app.post("/v1/cases/{case_id}/escalations", status_code=201, tags=["case commands"])
    def escalate(case_id: UUID, command: cmd.Escalate, actor: ActorDep, svc: ServicesDep) -> Any:
        return run(
            svc, actor, case_id, "escalate", lambda c: c.escalate(command, by=actor.as_record())
        )

    @app.post("/v1/cases/{case_id}/closure", tags=["case commands"])
    def close(case_id: UUID, command: cmd.CloseCase, actor: ActorDep, svc: ServicesDep) -> Any:
        return run(svc, actor, case_id, "close", lambda c: c.close(command, by=actor.as_record()))

    @app.post("/v1/cases/{case_id}/reopening", tags=["case commands"])
    def reopen(case_id: UUID, command: cmd.ReopenCase, actor: ActorDep, svc: ServicesDep) -> Any:
        return run(svc, actor, case_id, "reopen", lambda c: c.reopen(command, by=actor.as_record()))
