"""Structured JSON logs with bound context (request id, actor, unit, role).

Log lines carry ids and codes only. As a second line of defence, any event key that names
personal data is replaced before rendering, so a careless `log.info(..., name=...)` cannot leak,
and every value is bounded (`MAX_STRING` characters, `MAX_ITEMS` items, `MAX_DEPTH` levels), so
that no request can make a log line larger than a few kilobytes. Proven by
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


MAX_STRING: Final = 200
MAX_ITEMS: Final = 20
MAX_DEPTH: Final = 3
MAX_KEYS: Final = 40  # keys of one event; more are dropped and counted
MAX_TRACEBACK: Final = 8000  # a formatted exception: long enough to find the bug


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else f"{value[:MAX_STRING]}…[{len(value)} chars]"
    if isinstance(value, bytes | bytearray):
        return f"[{len(value)} bytes]"
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_DEPTH:
        return f"[{type(value).__name__}]"
    if isinstance(value, dict):
        items = list(value.items())
        found = {_bounded(str(k)): _bounded(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            found["…"] = f"{len(items) - MAX_ITEMS} more"
        return found
    if isinstance(value, list | tuple | set | frozenset):
        listed = list(value)
        shown = [_bounded(v, depth + 1) for v in listed[:MAX_ITEMS]]
        if len(listed) > MAX_ITEMS:
            shown.append(f"…{len(listed) - MAX_ITEMS} more")
        return shown
    return _bounded(str(value), depth)


def _bound_sizes(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Every value bounded, so that nothing a client sends makes a log line large."""
    keys = list(event_dict.keys())
    for key in keys[MAX_KEYS:]:
        del event_dict[key]
    for key in keys[:MAX_KEYS]:
        value = event_dict[key]
        if key == "exception" and isinstance(value, str):
            event_dict[key] = value[-MAX_TRACEBACK:]  # the end names the error
        else:
            event_dict[key] = _bounded(value)
    if len(keys) > MAX_KEYS:
        event_dict["dropped_keys"] = len(keys) - MAX_KEYS
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
