"""Pages: (to be written: see gateway/web/routes/__init__.py for who owns this module)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
