"""Where a command came from: the request id, channel and client a refused command is recorded
with (`domain.access.CommandRefused`, issue 15).

Commands do not take these as parameters (no endpoint has to remember them): the HTTP gateway
sets the request's origin once, when it authenticates the request
(`gateway.http.dependencies.current_actor`), in a context variable that the request's own task
and the worker thread running its endpoint see, and no other request does. A command issued
inside a process (a CLI command, a test) is recorded as such: `IN_PROCESS_ORIGIN`. Proven by
tests/integration/test_refused_commands.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from domain.access import IN_PROCESS_CLIENT, Channel, Client


@dataclass(frozen=True)
class CommandOrigin:
    request_id: str
    channel: Channel
    client: Client


IN_PROCESS_ORIGIN: Final = CommandOrigin(
    request_id="in-process", channel=Channel.API, client=IN_PROCESS_CLIENT
)

_ORIGIN: Final[ContextVar[CommandOrigin]] = ContextVar(
    "casetrail_command_origin", default=IN_PROCESS_ORIGIN
)


def current_origin() -> CommandOrigin:
    return _ORIGIN.get()


def set_origin(origin: CommandOrigin) -> None:
    """Set the origin for the rest of the current context (one HTTP request's task)."""
    _ORIGIN.set(origin)


@contextmanager
def commands_from(origin: CommandOrigin) -> Iterator[None]:
    """Commands issued inside the block come from `origin`."""
    token = _ORIGIN.set(origin)
    try:
        yield
    finally:
        _ORIGIN.reset(token)
