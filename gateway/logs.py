"""Structured JSON logs with bound context (request id, actor, unit, role).

Log lines carry ids and codes only. As a second line of defence, any event key that names
personal data is replaced before rendering, so a careless `log.info(..., name=...)` cannot leak,
and every value is bounded (`MAX_STRING` characters, `MAX_ITEMS` items, `MAX_DEPTH` levels), and
all of an event's keys and values together (`MAX_CHARS`; a formatted traceback apart), so that
nothing a request sends can make a log line larger than 4 KB. Proven by
`tests/integration/test_no_echo.py` (captured logs of hostile requests) and
`test_case_lifecycle_and_logs.py`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog

# Keys that may hold personal data: their values never reach a log line.
PERSONAL_KEYS: Final = frozenset(
    {
        "name",
        "minor",
        "guardians",
        "id_number",
        "phone",
        "description",
        "notes",
        "note",
        "task",
        "decision",
        "reason",
        "body",
        "date_of_birth",
    }
)


MAX_STRING: Final = 200  # characters of one string
MAX_ITEMS: Final = 20  # items of one list or dict
MAX_DEPTH: Final = 3
MAX_KEYS: Final = 40  # keys of one event; more are dropped and counted
MAX_CHARS: Final = 1000  # characters of all keys and values of one event: a line < 4 KB
MAX_TRACEBACK: Final = 8000  # a formatted exception: long enough to find the bug
# Spent first, so that the budget never runs out before them.
_FIRST: Final = ("event", "level", "timestamp", "request_id", "actor", "role", "unit")


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_CHARS

    def take(self, text: str) -> str:
        limit = max(0, min(MAX_STRING, self.left))
        shown = text if len(text) <= limit else f"{text[:limit]}…[{len(text)} chars]"
        self.left -= len(shown)
        return shown


def _bounded(value: Any, budget: _Budget, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float) and abs(value) < 1e15:
        budget.left -= 8
        return value
    if isinstance(value, bytes | bytearray):
        return budget.take(f"[{len(value)} bytes]")
    if isinstance(value, str):
        return budget.take(value)
    if depth >= MAX_DEPTH or budget.left <= 0:
        return budget.take(f"[{type(value).__name__}]")
    if isinstance(value, dict):
        items = list(value.items())
        found = {
            budget.take(str(k)): _bounded(v, budget, depth + 1)
            for k, v in items[:MAX_ITEMS]
            if budget.left > 0
        }
        if len(found) < len(items):
            found["…"] = f"{len(items) - len(found)} more"
        return found
    if isinstance(value, list | tuple | set | frozenset):
        listed = list(value)
        shown = [_bounded(v, budget, depth + 1) for v in listed[:MAX_ITEMS] if budget.left > 0]
        if len(shown) < len(listed):
            shown.append(f"…{len(listed) - len(shown)} more")
        return shown
    return budget.take(str(value))


def _bound_sizes(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Every value bounded, and all of them together, so that nothing a client sends (nor a
    careless call) makes a log line large."""
    keys = [k for k in _FIRST if k in event_dict]
    keys += [k for k in event_dict if k not in _FIRST]
    budget = _Budget()
    dropped = 0
    for index, key in enumerate(keys):
        value = event_dict.pop(key)
        if key == "exception" and isinstance(value, str):
            event_dict[key] = value[-MAX_TRACEBACK:]  # kept whatever else: its end names the error
            continue
        if index >= MAX_KEYS or budget.left <= 0:
            dropped += 1
            continue
        name = key if len(key) <= 64 else key[:64] + "…"
        budget.left -= len(name) + 6  # the quotes, colon and comma around it
        event_dict[name] = _bounded(value, budget)
    if dropped:
        event_dict["dropped_keys"] = dropped
    return event_dict


def _redact_personal(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in PERSONAL_KEYS & event_dict.keys():
        event_dict[key] = "[redacted]"
    return event_dict


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines to stderr (or `stream`), one per event."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_personal,
            structlog.processors.format_exc_info,
            _bound_sizes,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
