"""Structured JSON logs with bound context (request id, actor, unit, role).

Log lines carry ids and codes only. As a second line of defence, any event key that names
personal data is replaced before rendering, so a careless `log.info(..., name=...)` cannot leak.
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
