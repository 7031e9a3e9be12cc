"""FastAPI dependencies: who is asking, why, from where, and the audited reader.

Every endpoint that touches a case takes `ActorDep` (authentication) and, to read, `ReaderDep`:
the reader (`gateway.http.reader.AuditedReader`, built here per request) is the only way to get
case content or ledger rows, and each read stores its access event first. The request's
`RequestContext` holds its client as the service saw it (`gateway.http.client`: the socket peer,
or a trusted proxy's forwarded address; the user agent bounded), recorded with every access
event the reader stores and with every refused authentication
(tests/integration/test_knowledge_records.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated
from uuid import UUID

import structlog
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from domain.access import Actor, Channel, Client
from domain.application import CaseTrail
from domain.compliance.origin import CommandOrigin, set_origin
from domain.refusals import RefusalReason, RefusalThrottle, refusal_event
from domain.taxonomy import Purpose
from gateway.auth import AuthenticationFailed, TokenVerifier, UserRegistry
from gateway.http.client import ProxyTrust, resolve_client
from gateway.http.reader import AuditedReader
from gateway.http.sessions import end_refused_session, session_actor, session_secret
from gateway.settings import Settings
from gateway.signin import SignIn
from projections.readmodels import ReadModels


@dataclass
class Services:
    application: CaseTrail
    verifier: TokenVerifier
    settings: Settings
    # The ledgers, worklists and reports (None until they are opened: the process started while
    # the store was away, and `gateway.bootstrap.Service` keeps trying; see the log).
    readmodels: ReadModels | None = None
    # Which refused authentications are stored as events (domain.refusals), per worker.
    refusals: RefusalThrottle = field(default_factory=RefusalThrottle)
    # Sign-in's policy, session limits and OIDC client (gateway.signin), built on first use.
    signin: SignIn | None = None

    @cached_property
    def proxy_trust(self) -> ProxyTrust:
        """Which header names the client's address, and which peers may set it (settings)."""
        return ProxyTrust(self.settings.trusted_proxy_header, self.settings.trusted_proxy_networks)

    @cached_property
    def users(self) -> UserRegistry:
        """Which users may get in (issue 16): this process's snapshot of the user registry."""
        return UserRegistry(self.application)


@dataclass(frozen=True)
class RequestContext:
    """What the service itself saw of a request, recorded with its access events: the
    client's address and user agent (`gateway.http.client`), and the request id."""

    client: Client
    request_id: str


def request_context_of(request: Request, svc: Services) -> RequestContext:
    """The request's context, resolved once per request (kept in `request.state`)."""
    found = getattr(request.state, "request_context", None)
    if isinstance(found, RequestContext):
        return found
    trust = svc.proxy_trust
    forwarded = request.headers.getlist(trust.header) if trust.header else []
    context = RequestContext(
        client=resolve_client(
            request.client.host if request.client else None,
            forwarded,
            request.headers.get("user-agent"),
            trust,
        ),
        request_id=request.state.request_id,
    )
    request.state.request_context = context
    return context


# The dependencies below do no I/O, so they are coroutines: FastAPI runs a plain `def`
# dependency in its thread pool, and each hop there costs a thread switch per request.
async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def request_context(
    request: Request, svc: Annotated[Services, Depends(services)]
) -> RequestContext:
    return request_context_of(request, svc)


class ReadModelsOpening(Exception):
    """The read models are not open yet: this process started while the store did not answer,
    and opens them in the background (`gateway.bootstrap.Service.start`). Answered 503
    `read-models-opening` with `Retry-After` (`gateway.http.app`)."""


def readmodels_of(svc: Services) -> ReadModels:
    """The read models (ledgers, worklists, inbox, lookups), or `ReadModelsOpening`."""
    found = svc.readmodels
    if found is None:
        raise ReadModelsOpening
    return found


_bearer = HTTPBearer(auto_error=False, description="Ed25519 JWT from `casetrail token issue`")


async def current_actor(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    secret: str | None = None
    try:
        if credentials is not None:
            actor = svc.verifier.verify(credentials.credentials)
        elif (secret := session_secret(request)) is not None:
            # A browser's session (issue 16, gateway.http.sessions): the same Actor, CSRF
            # checked for a state-changing request.
            actor = await session_actor(request, svc.application, secret)
        else:
            raise AuthenticationFailed(
                "no bearer token; send `Authorization: Bearer <token>`", RefusalReason.MISSING
            )
        try:
            await admit(svc, actor)
        except AuthenticationFailed:
            if secret is not None and credentials is None:
                # A suspended user's or revoked role's session ends (recorded), not only
                # this request.
                await end_refused_session(svc.application, secret)
            raise
    except AuthenticationFailed as refused:
        await _record_refusal(request, svc, refused.reason, refused.user)
        raise
    structlog.contextvars.bind_contextvars(actor=actor.user, role=str(actor.role), unit=actor.unit)
    request.state.actor = actor
    # A command this request issues and a rule refuses is recorded with the request's id and
    # client (issue 15, `domain.compliance.origin`): set once here, in the request's context.
    context = request_context_of(request, svc)
    set_origin(CommandOrigin(context.request_id, Channel.API, context.client))
    return actor


async def admit(svc: Services, actor: Actor) -> None:
    """Raise `AuthenticationFailed` unless the actor's user is registered, active, holds the
    role, in that unit and street (`gateway.auth.UserRegistry`). A fresh hit is a dictionary
    lookup here; a miss or a due refresh reads the store, off the event loop, and so does the
    confirmation of a refusal (`UserRegistry.recheck`)."""
    try:
        if svc.users.due(actor.user):
            await run_in_threadpool(svc.users.check, actor)
        else:
            svc.users.check(actor, refresh=False)
    except AuthenticationFailed:
        # The snapshot may predate a grant or reinstatement of a moment ago: refuse (and end a
        # session) only if the user as stored now still refuses. One read of one user.
        await run_in_threadpool(svc.users.recheck, actor)


async def _record_refusal(
    request: Request, svc: Services, reason: RefusalReason, user: str = ""
) -> None:
    """Store the refusal (unless the throttle counts it into a later event) before the 401
    leaves: no token content, the route's template, and the case id the path names."""
    # The address every access event of the service records (a trusted proxy's forwarded one).
    client = request_context_of(request, svc).client.address
    # Keyed by user too: one user's refusals do not hide another's from the same address.
    suppressed = svc.refusals.admit(client, reason, time.monotonic(), user)
    if suppressed is None:
        return
    route = request.scope.get("route")
    case_id = request.path_params.get("case_id")
    event = refusal_event(
        reason=reason,
        method=request.method,
        route=getattr(route, "path", "unmatched"),
        case_id=_uuid_or_none(case_id),
        client=client,
        request_id=request.state.request_id,
        suppressed=suppressed,
        user=user,
    )
    # A store write: off the event loop, like every other one.
    await run_in_threadpool(svc.application.record_authentication_refusal, event)


def _uuid_or_none(value: str | None) -> UUID | None:
    """The path's case id (still the raw text when dependencies run), if it is one."""
    try:
        return UUID(value) if value is not None else None
    except ValueError:
        return None


async def purpose_of_use(
    x_purpose_of_use: Annotated[
        Purpose, Header(description="Why you are reading: recorded with the access event")
    ],
) -> Purpose:
    return x_purpose_of_use


async def audited_reader(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    actor: Annotated[Actor, Depends(current_actor)],
    purpose: Annotated[Purpose, Depends(purpose_of_use)],
    context: Annotated[RequestContext, Depends(request_context)],
) -> AuditedReader:
    return AuditedReader(svc.application, actor, purpose, context.request_id, context.client)


async def emergency_reader(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    actor: Annotated[Actor, Depends(current_actor)],
    context: Annotated[RequestContext, Depends(request_context)],
) -> AuditedReader:
    """Break-glass reads declare their purpose by their endpoint: always `emergency`."""
    return AuditedReader(
        svc.application, actor, Purpose.EMERGENCY, context.request_id, context.client
    )


async def guardian_request_reader(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    actor: Annotated[Actor, Depends(current_actor)],
    context: Annotated[RequestContext, Depends(request_context)],
) -> AuditedReader:
    """A guardian's copy declares its purpose by its endpoint: always `guardian_request`
    (issue 19, gateway/http/routes/guardian_requests.py)."""
    return AuditedReader(
        svc.application, actor, Purpose.GUARDIAN_REQUEST, context.request_id, context.client
    )


ActorDep = Annotated[Actor, Depends(current_actor)]
GuardianRequestReaderDep = Annotated[AuditedReader, Depends(guardian_request_reader)]
EmergencyReaderDep = Annotated[AuditedReader, Depends(emergency_reader)]
ServicesDep = Annotated[Services, Depends(services)]
RequestContextDep = Annotated[RequestContext, Depends(request_context)]
ReaderDep = Annotated[AuditedReader, Depends(audited_reader)]
