"""Opening casetrail's read models (`projections.readmodels.ReadModels`) from the settings.

Where they live (`CASETRAIL_READMODEL_URL`): by default a SQLite file of their own,
`$CASETRAIL_HOME/readmodels.sqlite`, when the events are in SQLite (the followers never take the
events file's write lock), and the events' own PostgreSQL database and schema otherwise. Both
can be deleted and rebuilt from the events (`casetrail projections rebuild NAME`).

The blind-index key is `$CASETRAIL_HOME/keys/index.key` (`casetrail keys init` creates it). The
read models' own keys, which seal the values they only display and hash the ones they filter
on, are derived from it with HKDF-SHA-256 under labels of their own
(`projections.sealed.ReadModelKeys`): no other key file, so a store made before starts as it
is, and its read models are rebuilt once in the new layout (`projections.readmodels`). A new
index key rebuilds them too. The keys never enter the database.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from eventsourcing.persistence import PersistenceError

from domain.application import CaseTrail
from gateway import keyring
from gateway.logs import get_logger
from gateway.settings import Settings
from gateway.startup import StartupProblem
from gateway.store.eventstore import redacted, store_environment
from gateway.store.guard import appends_are_ordered
from gateway.store.setup import StoreSetupProblem, setup_lock
from projections.follower import Horizon, sqlite_horizon
from projections.readmodels import ReadModelConfig, ReadModels

log = get_logger("casetrail.projections")


def readmodel_url(settings: Settings) -> str:
    if settings.readmodel_url:
        return settings.readmodel_url
    if settings.store_kind == "sqlite":
        return f"sqlite:///{settings.home / 'readmodels.sqlite'}"
    return settings.database_url


def readmodel_config(settings: Settings, *, batch_size: int | None = None) -> ReadModelConfig:
    """The read models' configuration; `StartupProblem` says what to fix."""
    if not settings.consultation_deadline_hours > 0:
        raise StartupProblem(
            "CASETRAIL_CONSULTATION_DEADLINE_HOURS must be a number of hours above 0 (default 24)"
        )
    url = readmodel_url(settings)
    try:
        env = store_environment(url, cipher_keys=None)
    except ValueError as exc:
        raise StartupProblem(f"CASETRAIL_READMODEL_URL: {exc}") from None
    if url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    try:
        index_key = keyring.load_index_key(settings.keys_dir)
    except keyring.KeyProblem as exc:
        raise StartupProblem(str(exc)) from None
    return ReadModelConfig(
        env=env,
        index_key=index_key,
        batch_size=batch_size or 500,
        consultation_deadline=timedelta(hours=settings.consultation_deadline_hours),
    )


def _settled(application: CaseTrail) -> Horizon | None:
    """With the store's ordered appends (`gateway.store.guard`), the largest notification id is
    settled and no lock is needed; else each follower's own horizon decides."""
    try:
        if appends_are_ordered(application.recorder):
            return sqlite_horizon(application.recorder)
    except (PersistenceError, OSError):
        log.warning("ordered_appends_unknown")
    return None


def open_read_models(
    settings: Settings, application: CaseTrail, *, batch_size: int | None = None
) -> ReadModels:
    """The read models, their tables created if missing; `StartupProblem` if they cannot be."""
    config = readmodel_config(settings, batch_size=batch_size)
    try:
        # Created (or rebuilt on a new layout) by one process at a time (gateway/store/setup.py).
        with setup_lock(settings.database_url):
            return ReadModels(application, config, log=log, horizon=_settled(application))
    except StoreSetupProblem as exc:
        raise StartupProblem(str(exc)) from None
    except (PersistenceError, OSError, ValueError) as exc:
        where = redacted(config.env)
        raise StartupProblem(
            f"cannot open the read models ({where.get('SQLITE_DBNAME') or 'PostgreSQL'}): "
            f"{type(exc).__name__}: {exc}"
        ) from None


def start_embedded(settings: Settings, application: CaseTrail) -> ReadModels | None:
    """For the API: the read models, followed in background threads when the API process is
    where the followers run (`Settings.followers_in_api`). A failure to open them is logged,
    not fatal: the case API still serves, and the ledger endpoints answer 503 until the read
    models can be opened."""
    try:
        readmodels = open_read_models(settings, application)
    except StartupProblem as exc:
        log.error("projections_unavailable", error=str(exc))
        return None
    if settings.followers_in_api:
        readmodels.start()
    return readmodels


def status_summary(readmodels: ReadModels | None) -> dict[str, Any]:
    """For the health output: each projection's position and lag, no case content."""
    if readmodels is None:
        return {"status": "unavailable", "projections": []}
    try:
        found = [s.as_dict() for s in readmodels.status()]
    except PersistenceError as exc:
        return {"status": "unavailable", "error": type(exc).__name__, "projections": []}
    worst = max((p["lag"] for p in found), default=0)
    return {"status": "ok", "max_lag": worst, "projections": found}
