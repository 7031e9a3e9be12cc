"""The user registry alone: an application over the service's own store (the same name, so the
same environment and tables as `domain.application.CaseTrail`) that loads user records and
nothing else.

For a process that needs one user's standing and no case file: `casetrail token issue` checks
that the user would be let in before it signs a token, and must start in under 0.5 s of CPU
(issue 23, `bench/cli_start.py`). So this module imports no case, command handler, projection
or access-log code; `CaseTrail` loads the whole domain (~0.3 s). The records it reads are the
registry's, as `CaseTrail.user` reads them (a user record is not a case file: no access event).
It creates no table and writes nothing. Proven by tests/integration/test_cli_start.py (what
`token issue` imports, and that it refuses whom the API would refuse).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.utils import Environment, EnvType

from domain.retention import DataErased, DataKeyring
from domain.users import UnknownUser, User, user_stream_id


class UserDirectory(Application[UUID]):
    """Read-only: registered users, by id."""

    name = "casetrail"  # CaseTrail's: its environment's keys and its store

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """Only the given environment, as `CaseTrail.construct_env` (the process's own
        `CASETRAIL_*` variables do not outrank the store the caller chose); never a table
        created here."""
        return Environment(name, {**dict(env or {}), "CREATE_TABLE": "n"})

    def user(self, user_id: str) -> User:
        """The registered user, or `UnknownUser` (also for an erased record)."""
        try:
            found: Any = self.repository.get(user_stream_id(user_id))
        except (AggregateNotFoundError, DataErased):
            found = None
        if not isinstance(found, User):
            raise UnknownUser("no user is registered under this id", field="user_id")
        return found

    def close(self) -> None:
        # The store's data-key cipher keeps a connection of its own, closed as CaseTrail does.
        if isinstance(self.mapper.cipher, DataKeyring):
            self.mapper.cipher.close()
        super().close()
