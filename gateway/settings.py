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
| CASETRAIL_PROJECTIONS        | embedded (the API follows the events) or off (`projections run`) |
| CASETRAIL_CONSULTATION_DEADLINE_HOURS | 24 (a clue awaits its consultation this long at most) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway import keyring
from gateway.eventstore import store_environment

TOKEN_ISSUER = "casetrail"  # noqa: S105 (a claim value)
TOKEN_AUDIENCE = "casetrail-api"  # noqa: S105


class SettingsProblem(ValueError):
    """A setting has a value the service cannot use; the message names it."""


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
    projections: str = "embedded"
    consultation_deadline_hours: float = 24.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
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
            projections=(env.get("CASETRAIL_PROJECTIONS") or "embedded").lower(),
            consultation_deadline_hours=_number(env, "CASETRAIL_CONSULTATION_DEADLINE_HOURS", 24),
        )

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
