"""Fixtures of the read-model tests: a real store (SQLite file or PostgreSQL schema, through the
shared `store_url` fixture), the application on it, and the read models beside it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.application import CaseTrail
from gateway.store.eventstore import new_key_text, store_environment
from projections.readmodels import ReadModelConfig, ReadModels


def readmodel_env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """Where the tests keep read models: a file of their own on SQLite, the events' schema on
    PostgreSQL (as the service does by default)."""
    if store_url.startswith("sqlite:///"):
        return store_environment(f"sqlite:///{tmp_path / 'readmodels.sqlite'}", None)
    return store_environment(store_url, None)


@pytest.fixture
def application(store_url: str) -> Iterator[CaseTrail]:
    if store_url.startswith("sqlite:///"):
        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app = CaseTrail(env=store_environment(store_url, [new_key_text()]))
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def index_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def open_readmodels(
    application: CaseTrail, store_url: str, tmp_path: Path, index_key: bytes
) -> Iterator[Any]:
    """open_readmodels(batch_size=..., env=...) -> ReadModels, closed after the test."""
    opened: list[ReadModels] = []

    def opener(batch_size: int = 500, env: dict[str, str] | None = None) -> ReadModels:
        config = ReadModelConfig(
            env=env or readmodel_env(store_url, tmp_path),
            index_key=index_key,
            batch_size=batch_size,
            poll_seconds=0.05,
        )
        found = ReadModels(application, config)
        opened.append(found)
        return found

    yield opener
    for readmodels in opened:
        readmodels.close()
