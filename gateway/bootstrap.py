"""The one wiring point: every process of casetrail gets its parts here, built from one
`Settings`. Nothing else in `gateway/` constructs the application, the read models, the evidence
log, the relay or the token verifier (`tests/architecture/test_wiring.py` scans for it).

What each process builds:

- an API worker (`gateway.serving.service_app`, and `create_app(settings)` in tests): `api` gives
  a `Service`: the application (keys checked), the token verifier, the read models and the
  evidence log; `Service.start` follows the store in this process when
  `Settings.followers_in_api`, opens in the background the read models that could not be
  opened yet (the store away at the start), and the app's lifespan closes it;
- `casetrail serve` itself: `open_application` and `open_read_models`, to check the keys and the
  store and make the read models' tables once, before the workers start;
- `casetrail projections run | status | rebuild` (the followers' child): `followers` gives
  `Followers`: the application, the read models and the evidence log; the command starts them;
- `casetrail relay run | status`: `open_application`, then `open_relay`;
- `casetrail unit ...`, `nats ...`, `demo`, `relay remind`: `open_application`;
- `casetrail token issue`: `registered_user`, one user's record through the user directory
  (`domain.user_directory`), so that it starts without the domain's case code;
- `casetrail verify`, `checkpoint ...`, `proof ...`, `store init`, `keys init`: `open_unkeyed`,
  the store without its event key (the tree is over the stored bytes), and `open_evidence` for
  `checkpoint create`.

Everything that can stop a process at start raises `StartupProblem` with a one-line message that
says what is wrong and what to do; the CLI prints it and exits 2, a worker logs it and exits 2,
never a traceback (`tests/integration/test_first_start.py`, `tests/integration/test_cli.py`).

The read models (`CASETRAIL_READMODEL_URL`) live by default in a SQLite file of their own,
`$CASETRAIL_HOME/readmodels.sqlite`, when the events are in SQLite (the followers never take the
events file's write lock), and in the events' own PostgreSQL database and schema otherwise.
Their keys derive from `$CASETRAIL_HOME/keys/index.key` (`projections.sealed.ReadModelKeys`);
they never enter the database. They can be deleted and rebuilt from the events.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.persistence import PersistenceError

from domain.retention import DataErased
from domain.users import UnknownUser
from gateway import keyring
from gateway.settings import Settings
from gateway.store.eventstore import (
    EventIntegrityError,
    KeyMismatchError,
    redacted,
    store_environment,
)
from gateway.store.setup import StoreSetupProblem, setup_lock

if TYPE_CHECKING:
    from domain.application import CaseTrail
    from domain.users import User
    from gateway.auth import TokenVerifier
    from gateway.evidence.maintainer import Evidence
    from gateway.messaging.relay import Relay, RelayOptions
    from gateway.signin import SignIn
    from projections.readmodels import ReadModelConfig, ReadModels

# The parts (the application and its store guard, the user directory, read models, evidence
# log, relay, sign-in, token verifier, logging) are imported by the functions that build them: a
# process starts with what it uses. `casetrail token issue` reads one user record through the
# user directory and loads neither the domain's case code nor the store guard (issue 23,
# tests/integration/test_cli_start.py).


def _log() -> Any:
    from gateway.logs import get_logger  # noqa: PLC0415 (see above)

    return get_logger("casetrail.projections")


class StartupProblem(Exception):
    """A process cannot start; the message says what to fix."""


# --- the application ------------------------------------------------------------------------------


def open_application(settings: Settings) -> CaseTrail:
    """The application with its keys: store reached (tables, triggers and evidence tables
    created if missing, under the setup lock), the event key proven to open the newest event,
    and the service signing key readable."""
    try:
        env = settings.application_env()
    except keyring.KeyProblem as exc:
        raise StartupProblem(str(exc)) from None
    try:
        # Tables, functions and triggers are created by one process at a time (store/setup.py).
        with setup_lock(settings.database_url):
            application = _created(settings, env)
    except StoreSetupProblem as exc:
        raise StartupProblem(str(exc)) from None
    try:
        check_key_opens_store(application)
        keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service signing key")
    except StartupProblem:
        application.close()
        raise
    except keyring.KeyProblem as exc:
        application.close()
        raise StartupProblem(str(exc)) from None
    return application


def _created(settings: Settings, env: dict[str, str]) -> CaseTrail:
    """The application, its store's tables created if missing, and the append-only triggers
    and evidence tables installed (else only checked). On SQLite its recorders take the
    writer lock (`gateway.store.persistence`, named by `env`)."""
    from domain.application import CaseTrail  # noqa: PLC0415 (see the imports)
    from gateway.store import guard as store_guard  # noqa: PLC0415 (see the imports)

    try:
        application = CaseTrail(env=env)
    except (PersistenceError, OSError) as exc:
        raise StartupProblem(
            f"cannot open the {settings.store_kind} event store: {exc.__class__.__name__}: {exc}"
        ) from None
    try:
        store_guard.install(application.recorder)
    except store_guard.StoreGuardProblem as exc:
        application.close()
        raise StartupProblem(str(exc)) from None
    return application


_WRONG_KEY: Final = (
    "the configured event key is not the key this store was written with: use the store's own "
    "key file (or CASETRAIL_EVENT_KEY); do not create a new key for an existing store"
)


def check_key_opens_store(application: CaseTrail) -> None:
    """Decrypt the newest stored event: a wrong key is caught now, not at the first read."""
    last = application.recorder.max_notification_id()
    if not last:
        return
    newest = application.recorder.select_notifications(start=last, limit=1)
    try:
        application.mapper.to_domain_event(newest[0])
    except DataErased:
        # Its file was erased (issue 19): nothing to open, so this proves nothing either way;
        # a wrong key is then refused at the first read of a readable event.
        return
    except KeyMismatchError:
        raise StartupProblem(_WRONG_KEY) from None
    except EventIntegrityError:
        raise StartupProblem(
            f"the newest stored event (position {last}) fails its integrity check with the "
            "configured key: the store may have been tampered with; run `casetrail verify`"
        ) from None


def _missing_sqlite_file(settings: Settings) -> str | None:
    """The path of the settings' SQLite store when that file does not exist (None: it exists,
    or the store is PostgreSQL or an SQLite URI, which this does not judge)."""
    if settings.store_kind != "sqlite":
        return None
    path = settings.database_url.removeprefix("sqlite:///")
    return None if path.startswith("file:") or Path(path).exists() else path


def open_unkeyed(settings: Settings, *, create: bool | None = False) -> CaseTrail:
    """The store without its event key (events stay ciphertext): for verifying, checkpoints,
    proofs, `store init` and `keys init`. `create=False` creates nothing and needs the store
    to exist, so that a verifier with read-only rights can run; `True` creates the tables;
    `None` leaves it to the settings (`CASETRAIL_CREATE_TABLE`)."""
    if settings.store_kind == "sqlite":
        missing = _missing_sqlite_file(settings)
        if missing is not None and create is False:
            raise StartupProblem(f"no event store at {missing} (CASETRAIL_DATABASE_URL)")
        settings.home.mkdir(parents=True, exist_ok=True)
    try:
        env = settings.application_env(encrypted=False)
        if create is not None:
            # Explicit either way: the service's own environment may say no (ops/README.md).
            env["CASETRAIL_CREATE_TABLE"] = "yes" if create else "no"
        from domain.application import CaseTrail  # noqa: PLC0415 (see the imports)

        return CaseTrail(env=env)
    except (PersistenceError, OSError, ValueError) as exc:
        raise StartupProblem(
            f"cannot open the {settings.store_kind} event store: {type(exc).__name__}: {exc}"
        ) from None


def registered_user(settings: Settings, user_id: str) -> User:
    """One user's record through the user directory alone (`domain.user_directory`: no case
    code, no table made, no guard installed), for `casetrail token issue`; `UnknownUser` when
    no such user is registered, also in a store with no events yet. A key that does not open
    the record stops the command as `open_application` would."""
    from domain.user_directory import UserDirectory  # noqa: PLC0415 (see the imports)

    try:
        env = settings.application_env()
    except keyring.KeyProblem as exc:
        raise StartupProblem(str(exc)) from None
    if _missing_sqlite_file(settings) is not None:
        raise UnknownUser("no user is registered under this id", field="user_id")
    try:
        directory = UserDirectory(env=env)
    except (PersistenceError, OSError, ValueError) as exc:
        raise StartupProblem(
            f"cannot open the {settings.store_kind} event store: {type(exc).__name__}: {exc}"
        ) from None
    try:
        return directory.user(user_id)
    except KeyMismatchError:
        raise StartupProblem(_WRONG_KEY) from None
    except EventIntegrityError:
        raise StartupProblem(
            "the user's record fails its integrity check with the configured key: the store "
            "may have been tampered with; run `casetrail verify`"
        ) from None
    except PersistenceError as exc:
        raise StartupProblem(
            f"cannot read the {settings.store_kind} event store: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        directory.close()


def prepare_store(settings: Settings, missing: list[str] | None = None) -> list[str]:
    """`casetrail store init`, as the database owner: every table the service's processes use,
    so that they can run under roles that may not create any (ops/postgres-roles.sql): the
    events and snapshots, the append-only triggers, the Merkle log, the checkpoints and key
    announcements, the read models with their positions and the followers' heartbeats, and the
    relay's positions, deadline duties and compliance state. Needs the service's keys
    directory (the read models' layout depends on the index key). Returns what it created
    (table names, triggers), empty when everything was in place. Without the index key, the
    read models' tables are not made: its path is added to `missing`. One process at a time
    (`setup_lock`). Proven by tests/integration/test_least_privilege.py."""
    from gateway.store import guard as store_guard  # noqa: PLC0415 (see the imports)

    missing = missing if missing is not None else []
    try:
        with setup_lock(settings.database_url):
            application = open_unkeyed(settings, create=True)
            try:
                before = _table_names(application)
                created = store_guard.install(application.recorder)
                from gateway.messaging.relay import create_relay_tables  # noqa: PLC0415
                from projections.readmodels import ReadModels  # noqa: PLC0415 (see the imports)

                create_relay_tables(application)
                if (settings.keys_dir / keyring.INDEX_KEY).exists():
                    config = readmodel_config(settings)
                    ReadModels(application, config, log=_log()).close()
                else:
                    _log().warning("read_models_not_created", reason="no index key")
                    missing.append(str(settings.keys_dir / keyring.INDEX_KEY))
                made = sorted(_table_names(application) - before)
            finally:
                application.close()
    except StoreSetupProblem as exc:
        raise StartupProblem(str(exc)) from None
    except store_guard.StoreGuardProblem as exc:
        raise StartupProblem(str(exc)) from None
    except (PersistenceError, OSError) as exc:
        raise StartupProblem(
            f"cannot create the store's tables: {type(exc).__name__}: {exc}; run `casetrail "
            "store init` as the database owner (ops/postgres-roles.sql)"
        ) from None
    return made + [name for name in created if ":" in name]


def _table_names(application: CaseTrail) -> set[str]:
    from projections.evidence.log import StoreTables  # noqa: PLC0415 (see the imports)

    tables = StoreTables(application.recorder)
    with tables.reading() as db:
        if tables.dialect == "sqlite":
            rows = db.execute("SELECT name AS t FROM sqlite_master WHERE type='table'")
        else:
            rows = db.execute(
                "SELECT tablename AS t FROM pg_tables WHERE schemaname=?", (tables.schema,)
            )
    return {str(row["t"]) for row in rows}


def token_verifier(settings: Settings) -> TokenVerifier:
    from gateway.auth import TokenVerifier  # noqa: PLC0415 (see the imports)

    def load() -> list[Ed25519PublicKey]:
        return [
            keyring.load_public_key(path, "token public key")
            for path in settings.token_public_key_paths
        ]

    def reload() -> list[Ed25519PublicKey]:
        # A token no loaded key verifies: the keys as they are now (a rotation since the
        # start); if they cannot be read mid-rotation, the ones loaded stay.
        try:
            return load()
        except keyring.KeyProblem:
            return keys

    try:
        keys = load()
    except keyring.KeyProblem as exc:
        raise StartupProblem(str(exc)) from None
    return TokenVerifier(keys, reload=reload)


# --- the read models ------------------------------------------------------------------------------


def readmodel_url(settings: Settings) -> str:
    if settings.readmodel_url:
        return settings.readmodel_url
    if settings.store_kind == "sqlite":
        return f"sqlite:///{settings.home / 'readmodels.sqlite'}"
    return settings.database_url


def readmodel_config(settings: Settings, *, batch_size: int | None = None) -> ReadModelConfig:
    """The read models' configuration; `StartupProblem` says what to fix."""
    from projections.readmodels import ReadModelConfig  # noqa: PLC0415 (see the imports)

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


def open_read_models(
    settings: Settings, application: CaseTrail, *, batch_size: int | None = None
) -> ReadModels:
    """The read models, their tables created if missing; `StartupProblem` if they cannot be."""
    from psycopg import Error as PostgresError  # noqa: PLC0415 (the read models import it anyway)

    from gateway.store.horizon import settled_horizon  # noqa: PLC0415 (see the imports)
    from projections.readmodels import ReadModels  # noqa: PLC0415 (see the imports)

    config = readmodel_config(settings, batch_size=batch_size)
    try:
        # Created (or rebuilt on a new layout) by one process at a time (gateway/store/setup.py).
        with setup_lock(settings.database_url):
            horizon = settled_horizon(application)
            return ReadModels(application, config, log=_log(), horizon=horizon)
    except StoreSetupProblem as exc:
        raise StartupProblem(str(exc)) from None
    except (PersistenceError, OSError, ValueError, sqlite3.Error, PostgresError) as exc:
        # The drivers' own errors too: the library leaves some unwrapped (SQLite's "database
        # is locked" while it sets WAL mode on a new connection), and one escaping here was a
        # traceback and a `casetrail serve` that did not start, not a logged, retried failure.
        where = redacted(config.env)
        raise StartupProblem(
            f"cannot open the read models ({where.get('SQLITE_DBNAME') or 'PostgreSQL'}): "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _read_models_or_none(settings: Settings, application: CaseTrail) -> ReadModels | None:
    """For the API: a failure to open the read models is logged, not fatal; the case API still
    serves, the ledger endpoints answer 503 (`read-models-opening`), and `Service.start` keeps
    trying in the background until they open."""
    try:
        return open_read_models(settings, application)
    except StartupProblem as exc:
        _log().error("projections_unavailable", error=str(exc))
        return None


# --- the evidence log and the relay ---------------------------------------------------------------


def open_evidence(
    settings: Settings, application: CaseTrail, *, key: Ed25519PrivateKey | None = None
) -> Evidence:
    """The Merkle log and checkpoints over `application`'s store, signing with the service key
    (read again from its file when the store announces a successor: `keys rotate --service`).
    `key`: sign with this one and never reload (the rotation itself)."""
    from gateway.evidence.maintainer import Evidence, EvidenceSettings  # noqa: PLC0415 (see the imports)

    path = settings.keys_dir / keyring.SERVICE_KEY

    def reload() -> Ed25519PrivateKey:
        return keyring.load_private_key(path, "service signing key")

    try:
        signing = key or reload()
    except keyring.KeyProblem as exc:
        raise StartupProblem(str(exc)) from None
    return Evidence(
        application,
        signing,
        EvidenceSettings.from_settings(settings),
        reload_key=None if key is not None else reload,
    )


def open_relay(
    settings: Settings, application: CaseTrail, options: RelayOptions | None = None
) -> Relay:
    """The relay over `application`: broker settings, the service's signing key, the key its
    message ids derive from, and the daily retention run's hour (issue 19, settings)."""
    from gateway.messaging.broker_config import NatsLayout  # noqa: PLC0415 (see the imports)
    from gateway.messaging.relay import Relay, RelayOptions  # noqa: PLC0415 (see the imports)

    hour = settings.retention_run_hour if settings.retention_run == "daily" else None
    options = replace(options or RelayOptions(), retention_hour=hour)
    return Relay(
        application,
        nats_settings=settings.nats,
        layout=NatsLayout(settings.home),
        signer=keyring.load_private_key(
            settings.keys_dir / keyring.SERVICE_KEY, "service signing key"
        ),
        index_key=keyring.load_index_key(settings.keys_dir),
        options=options,
    )


# --- sign-in (issue 16, gateway.signin) -----------------------------------------------------------


def sign_in(settings: Settings) -> SignIn:
    """Sign-in's lockout policy, session limits and OIDC client (when a provider is set), for an
    API worker; the OIDC transactions are sealed under a key derived from the index key, so
    that any worker opens what another sealed."""
    from domain.credentials import Policy, SessionLimits  # noqa: PLC0415 (see the imports)
    from gateway.signin import SignIn  # noqa: PLC0415 (see the imports)
    from gateway.signin.oidc import OidcClient, OidcConfig, transaction_key  # noqa: PLC0415 (see the imports)

    oidc = None
    if settings.oidc_issuer and settings.oidc_client_id and settings.oidc_redirect_uri:
        try:
            index_key = keyring.load_index_key(settings.keys_dir)
        except keyring.KeyProblem as exc:
            raise StartupProblem(str(exc)) from None
        secret = settings.oidc_client_secret
        config = OidcConfig(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            redirect_uri=settings.oidc_redirect_uri,
            user_claim=settings.oidc_user_claim,
        )
        oidc = OidcClient(config, transaction_key(index_key))
    return SignIn(
        policy=Policy(
            max_failures=settings.signin_max_failures,
            window=timedelta(minutes=settings.signin_failure_window_minutes),
            lockout=timedelta(minutes=settings.signin_lockout_minutes),
        ),
        limits=SessionLimits(
            idle=timedelta(minutes=settings.session_idle_minutes),
            absolute=timedelta(hours=settings.session_absolute_hours),
        ),
        oidc=oidc,
    )


# --- what each process runs -----------------------------------------------------------------------


# The API's attempts to open its read models after they failed at its start (the store refused
# connections: a restart while PostgreSQL was at its connection limit, issue 21's chaos run):
# the first a second later, then each wait doubled up to the most, so that a store back after a
# long outage is found within REOPEN_MAX_SECONDS, and a store that stays away is asked seldom.
REOPEN_FIRST_SECONDS: Final = 1.0
REOPEN_MAX_SECONDS: Final = 8.0
_OPENER_JOIN_SECONDS: Final = 30.0


@dataclass
class Service:
    """What an API worker serves with. Built by `api`, started and closed by the app's lifespan.

    Read models that could not be opened at the start are opened in the background by `start`,
    again and again with backoff, until the store answers: the ledgers then serve without a
    restart (tests/reliability/test_outages_store.py, "started while away")."""

    settings: Settings
    application: CaseTrail
    verifier: TokenVerifier
    # None until they are opened (logged): the ledger endpoints answer 503 meanwhile.
    readmodels: ReadModels | None
    evidence: Evidence
    # How many background attempts to open the read models have failed so far (/readyz).
    reopen_failures: int = field(default=0, init=False)
    _closing: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _opener: threading.Thread | None = field(default=None, init=False, repr=False)

    def start(self, on_read_models: Callable[[ReadModels], None] | None = None) -> None:
        """Follow the store here when the followers run in the API process; otherwise
        `casetrail projections run` does, and requests that need the tree current (bundles,
        proofs) catch it up themselves. Read models not opened yet are opened in a background
        thread; `on_read_models` is called with them once they are (from that thread)."""
        if self.readmodels is None and self._opener is None:
            self._opener = threading.Thread(
                target=self._open_read_models,
                args=(on_read_models,),
                name="casetrail-readmodels-open",
                daemon=True,
            )
            self._opener.start()
        if not self.settings.followers_in_api:
            return
        with self._lock:
            if self.readmodels is not None:
                self.readmodels.start()
        self.evidence.start()

    def _open_read_models(self, on_opened: Callable[[ReadModels], None] | None) -> None:
        delay = REOPEN_FIRST_SECONDS
        while not self._closing.wait(delay):
            try:
                found = open_read_models(self.settings, self.application)
            except Exception as exc:  # anything: the thread outlives every failed attempt
                self.reopen_failures += 1
                delay = min(delay * 2, REOPEN_MAX_SECONDS)
                _log().warning(
                    "projections_still_unavailable",
                    attempts=self.reopen_failures,
                    retry_in_seconds=delay,
                    error=str(exc) if isinstance(exc, StartupProblem) else type(exc).__name__,
                )
                continue
            with self._lock:
                if self._closing.is_set():  # closed meanwhile: nothing is left running
                    found.close()
                    return
                _use_access_records(self.application, found)
                self.readmodels = found
                if self.settings.followers_in_api:
                    found.start()
            _log().info("projections_opened", failed_attempts=self.reopen_failures)
            if on_opened is not None:
                on_opened(found)
            return

    def close(self) -> None:
        self._closing.set()
        if self._opener is not None:
            # An attempt under way ends within the store's timeouts; one that ends later finds
            # `_closing` set and closes what it opened.
            self._opener.join(_OPENER_JOIN_SECONDS)
        self.evidence.close()
        with self._lock:
            if self.readmodels is not None:
                self.readmodels.close()
        self.application.close()


def _use_access_records(application: CaseTrail, readmodels: ReadModels) -> None:
    """Case access logs from the access-log read model, not a scan of the store (issue 15)."""
    from projections.compliance.access_log import CaseLog  # noqa: PLC0415 (see the imports)

    application.use_access_records(CaseLog(application, application.name, readmodels.accesses))


def api(settings: Settings, application: CaseTrail | None = None) -> Service:
    """An API worker's parts. `application`: one already opened by `open_application` (the
    benchmarks pass a variant of it); it is closed with the service."""
    application = application or open_application(settings)
    try:
        verifier = token_verifier(settings)
        evidence = open_evidence(settings, application)
    except StartupProblem:
        application.close()
        raise
    readmodels = _read_models_or_none(settings, application)
    if readmodels is not None:
        _use_access_records(application, readmodels)
    return Service(settings, application, verifier, readmodels, evidence)


@dataclass
class Followers:
    """What `casetrail projections ...` works with: the read models and the evidence log."""

    settings: Settings
    application: CaseTrail
    readmodels: ReadModels
    evidence: Evidence

    def close(self) -> None:
        self.evidence.close()
        self.readmodels.close()
        self.application.close()


def followers(settings: Settings, *, batch_size: int | None = None) -> Followers:
    application = open_application(settings)
    try:
        readmodels = open_read_models(settings, application, batch_size=batch_size)
    except StartupProblem:
        application.close()
        raise
    try:
        evidence = open_evidence(settings, application)
    except StartupProblem:
        readmodels.close()
        application.close()
        raise
    return Followers(settings, application, readmodels, evidence)
