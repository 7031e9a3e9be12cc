"""The people tests mint tokens for, registered first (issue 16: only registered, active users
holding the token's role get in): the `auth` fixture (tests/conftest.py), the messaging stack
and the live service use these."""

from __future__ import annotations

from typing import Final

from faker import Faker

from domain.access import Actor
from domain.application import CaseTrail
from domain.taxonomy import Role
from gateway import bootstrap
from gateway.cli.main import DEFAULT_STREET
from gateway.settings import Settings

# Who registers them, as the events record it.
FIXTURE_BY: Final = {"user": "test-fixture", "role": "operator", "unit": "", "street": ""}


def fixture_user(role: Role, unit: str, street: str = DEFAULT_STREET) -> str:
    """The user id the fixtures mint tokens for: one per (role, unit, street); the same as
    before users were registered for the default street."""
    name = f"user-{role}-{unit}"
    return name if street == DEFAULT_STREET else f"{name}.{street}"


def display_name(user: str) -> str:
    """A synthetic Chinese name, the same for the same user id."""
    fake = Faker("zh_CN")
    fake.seed_instance(user)
    return str(fake.name())


def ensure_registered(
    application: CaseTrail, user: str, role: Role, unit: str, street: str
) -> None:
    application.ensure_user(
        Actor(user, role, unit, street),
        display_name=display_name(user),
        by=FIXTURE_BY,
        reason="test fixture",
    )


class Registrar:
    """Registers the people tests mint tokens for (issue 16: only registered, active users
    holding the token's role get in), through one application opened on the test's store the
    first time it is needed, as an administrator would (`CaseTrail.ensure_user`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._application: CaseTrail | None = None
        self._done: set[tuple[str, Role, str, str]] = set()

    def ensure(self, user: str, role: Role, unit: str, street: str) -> None:
        if (user, role, unit, street) in self._done:
            return
        if self._application is None:
            self._application = bootstrap.open_application(self._settings)
        ensure_registered(self._application, user, role, unit, street)
        self._done.add((user, role, unit, street))

    def close(self) -> None:
        if self._application is not None:
            self._application.close()
            self._application = None


# (store, user, role, unit, street) already registered by `register`: each test has a store of
# its own (a temporary home, a PostgreSQL schema), so the key never carries over between tests.
_registered: set[tuple[str, str, Role, str, str]] = set()


def register(settings: Settings, user: str, role: Role, unit: str, street: str) -> None:
    """Register the user in the store `settings` names (once per store), through an application
    of its own: for tests that mint tokens without the `auth` fixture."""
    key = (f"{settings.home}|{settings.database_url}", user, role, unit, street)
    if key in _registered:
        return
    application = bootstrap.open_application(settings)
    try:
        ensure_registered(application, user, role, unit, street)
    finally:
        application.close()
    _registered.add(key)
