"""The home page: the signed-in person's own worklists (to be filled: consultations due,
tasks to sign for, overdue items, quarterly updates)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.web.dependencies import PageActorDep
from gateway.web.templating import render

router = APIRouter()


@router.get("/")
async def home(request: Request, actor: PageActorDep) -> Response:
    return render(request, "home.html", {}, title="我的工作")
