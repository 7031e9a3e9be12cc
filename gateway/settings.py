"""Service settings, read once from the environment. Every variable is listed in the README.

| variable                     | default                                  |
|------------------------------|------------------------------------------|
| CASETRAIL_HOME               | var/ (keys, SQLite file, NATS store)     |
| CASETRAIL_DATABASE_URL       | sqlite:///$CASETRAIL_HOME/casetrail.sqlite |
| CASETRAIL_EVENT_KEY          | read from $CASETRAIL_HOME/keys/event.key |
| CASETRAIL_TOKEN_PUBLIC_KEYS  | $CASETRAIL_HOME/keys/token-signing.pub (comma-separated paths) |
| CASETRAIL_LOG_LEVEL          | info                                     |
| CASETRAIL_REFUSAL_FLOOR_MS   | 40 (least time before a "no such case" answer) |
| CASETRAIL_ASSIGNMENT_GRACE_HOURS | 72 (a unit's sight of a case after its assignment ends) |
| CASETRAIL_READMODEL_URL      | $CASETRAIL_HOME/readmodels.sqlite, or the events' PostgreSQL URL |
| CASETRAIL_WORKERS            | 1 (API processes `casetrail serve` runs, 1-32; one per CPU) |
| CASETRAIL_PROJECTIONS        | auto (see `followers_in_api`), embedded, process or off  |
| CASETRAIL_CONSULTATION_DEADLINE_HOURS | 24 (a clue awaits its consultation this long at most) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway import keyring
from gateway.store.eventstore import store_environment

TOKEN_ISSUER = "casetrail"  # noqa: S105 (a claim value)
TOKEN_AUDIENCE = "casetrail-api"  # noqa: S105


class SettingsProblem(ValueError):
    """A setting has a value the service cannot use; the message names it."""


# Where the followers (read models, the evidence log) run; see `Settings.followers_in_api`.
PROJECTION_MODES = ("auto", "embedded", "process", "off")
MAX_WORKERS = 32


def _workers(env: Mapping[str, str]) -> int:
    text = (env.get("CASETRAIL_WORKERS") or "").strip()
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise SettingsProblem(
            f"CASETRAIL_WORKERS must be a whole number from 1 to {MAX_WORKERS}, found {text!r}"
        )
    return int(text)


def _projections(env: Mapping[str, str], workers: int) -> str:
    mode = (env.get("CASETRAIL_PROJECTIONS") or "auto").strip().lower()
    if mode not in PROJECTION_MODES:
        raise SettingsProblem(
            f"CASETRAIL_PROJECTIONS must be one of {', '.join(PROJECTION_MODES)}, found {mode!r}"
        )
    if mode == "embedded" and workers > 1:
        # Each API process would follow the store into the same tables, racing each other.
        raise SettingsProblem(
            f"CASETRAIL_PROJECTIONS=embedded needs one API process, but CASETRAIL_WORKERS is "
            f"{workers}; use CASETRAIL_PROJECTIONS=process (or auto)"
        )
    return mode


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name) or ""
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsProblem(f"{name} must be a number, found {text!r}") from None
    if value < 0:
        raise SettingsProblem(f"{name} must not be negative, found {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    event_key_env: str | None
    token_public_key_paths: tuple[Path, ...]
    log_level: str = "info"
    refusal_floor_ms: float = 40.0
    assignment_grace_hours: float = 72.0
    readmodel_url: str | None = None
    projections: str = "auto"
    consultation_deadline_hours: float = 24.0
    workers: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        workers = _workers(env)
        home = Path(env.get("CASETRAIL_HOME") or "var").resolve()
        database_url = env.get("CASETRAIL_DATABASE_URL") or f"sqlite:///{home / 'casetrail.sqlite'}"
        public_keys = env.get("CASETRAIL_TOKEN_PUBLIC_KEYS")
        paths = (
            tuple(Path(p.strip()) for p in public_keys.split(",") if p.strip())
            if public_keys
            else (home / "keys" / keyring.TOKEN_PUB,)
        )
        return cls(
            home=home,
            database_url=database_url,
            event_key_env=env.get("CASETRAIL_EVENT_KEY") or None,
            token_public_key_paths=paths,
            log_level=(env.get("CASETRAIL_LOG_LEVEL") or "info").lower(),
            refusal_floor_ms=_number(env, "CASETRAIL_REFUSAL_FLOOR_MS", 40),
            assignment_grace_hours=_number(env, "CASETRAIL_ASSIGNMENT_GRACE_HOURS", 72),
            readmodel_url=env.get("CASETRAIL_READMODEL_URL") or None,
            projections=_projections(env, workers),
            consultation_deadline_hours=_number(env, "CASETRAIL_CONSULTATION_DEADLINE_HOURS", 24),
            workers=workers,
        )

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
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def store_kind(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite:") else "postgresql"

    def application_env(self) -> dict[str, str]:
        """The Application's environment: store and cipher; raises KeyProblem if no key."""
        if self.store_kind == "sqlite":
            self.home.mkdir(parents=True, exist_ok=True)
        keys = keyring.load_event_keys(self.keys_dir, self.event_key_env)
        env = store_environment(self.database_url, keys.texts)
        env["ASSIGNMENT_GRACE_HOURS"] = str(self.assignment_grace_hours)
        return env
