"""Opening the store: keys loaded, store reached, and the key proven to open what is stored.

Everything that can stop the service at start raises `StartupProblem` with a one-line message
that says what is wrong and what to do; the CLI prints it and exits 2, never a traceback.
"""

from __future__ import annotations

from eventsourcing.persistence import PersistenceError

from domain.application import CaseTrail
from gateway import keyring
from gateway.evidence.maintainer import EvidenceConfigError, EvidenceSettings
from gateway.settings import Settings
from gateway.store import guard as store_guard
from gateway.store import writer_lock
from gateway.store.eventstore import EventIntegrityError, KeyMismatchError
from gateway.store.setup import StoreSetupProblem, setup_lock


class StartupProblem(Exception):
    pass


def open_application(settings: Settings) -> CaseTrail:
    try:
        env = settings.application_env()
    except keyring.KeyProblem as exc:
        raise StartupProblem(str(exc)) from None
    try:
        # Tables, functions and triggers are created by one process at a time (store_setup).
        with setup_lock(settings.database_url):
            application = _created(settings, env)
    except StoreSetupProblem as exc:
        raise StartupProblem(str(exc)) from None
    try:
        check_key_opens_store(application)
        keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service signing key")
        EvidenceSettings.from_env()
    except StartupProblem:
        application.close()
        raise
    except (keyring.KeyProblem, EvidenceConfigError) as exc:
        application.close()
        raise StartupProblem(str(exc)) from None
    return application


def _created(settings: Settings, env: dict[str, str]) -> CaseTrail:
    """The application, its store's tables created if missing, and the append-only triggers
    and evidence tables installed (else only checked)."""
    try:
        application = CaseTrail(env=env)
    except (PersistenceError, OSError) as exc:
        raise StartupProblem(
            f"cannot open the {settings.store_kind} event store: {exc.__class__.__name__}: {exc}"
        ) from None
    # SQLite only (gateway/store/writer_lock.py)
    writer_lock.serialise_inserts(application.recorder)
    if application.snapshots is not None:
        writer_lock.serialise_inserts(application.snapshots.recorder)
    try:
        store_guard.install(application.recorder)
    except store_guard.StoreGuardProblem as exc:
        application.close()
        raise StartupProblem(str(exc)) from None
    return application


def check_key_opens_store(application: CaseTrail) -> None:
    """Decrypt the newest stored event: a wrong key is caught now, not at the first read."""
    last = application.recorder.max_notification_id()
    if not last:
        return
    newest = application.recorder.select_notifications(start=last, limit=1)
    try:
        application.mapper.to_domain_event(newest[0])
    except KeyMismatchError:
        raise StartupProblem(
            "the configured event key is not the key this store was written with: use the "
            "store's own key file (or CASETRAIL_EVENT_KEY); do not create a new key for an "
            "existing store"
        ) from None
    except EventIntegrityError:
        raise StartupProblem(
            f"the newest stored event (position {last}) fails its integrity check with the "
            "configured key: the store may have been tampered with; run `casetrail verify`"
        ) from None
