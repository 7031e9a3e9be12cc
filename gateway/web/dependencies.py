"""The pages' dependencies: who is signed in, and the audited reader of a page.

`PageActorDep` is the API's own `current_actor` (a session cookie, or a bearer token; the
registry's check; a refusal recorded), with the commands a page issues recorded with origin
channel `web`. Without a live session a page is a 303 to `/signin` (`gateway.web.errors`).
`page_reader(request, svc, actor, purpose)` is the API's one `AuditedReader` with `web=True`:
what a page shows is recorded with channel `web` before the page is rendered.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from domain.access import Actor, Channel
from domain.compliance.origin import CommandOrigin, set_origin
from domain.taxonomy import Purpose
from gateway.http.dependencies import (
    RequestContextDep,
    Services,
    ServicesDep,
    current_actor,
    request_context_of,
)
from gateway.http.reader import AuditedReader


async def page_actor(
    request: Request, svc: ServicesDep, actor: Annotated[Actor, Depends(current_actor)]
) -> Actor:
    context = request_context_of(request, svc)
    set_origin(CommandOrigin(context.request_id, Channel.WEB, context.client))
    return actor


PageActorDep = Annotated[Actor, Depends(page_actor)]


def page_reader(request: Request, svc: Services, actor: Actor, purpose: Purpose) -> AuditedReader:
    """The page's reader, for the purpose the reader declared on the page."""
    context = request_context_of(request, svc)
    return AuditedReader(
        svc.application, actor, purpose, context.request_id, context.client, web=True
    )


__all__ = ["PageActorDep", "RequestContextDep", "ServicesDep", "page_reader"]
