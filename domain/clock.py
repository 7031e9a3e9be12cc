"""The domain's clock: one source of "now" for event timestamps and "today" for date rules.

Two promises (issue 22, the Clock section):

- **Timestamps never go back within a stream.** The library stamps an event with the wall
  clock (`datetime.now`); when that clock steps back (an NTP correction, a VM restored, an
  operator's mistake), an event could carry an earlier time than the one before it in its own
  stream, and every rule that reads a stream's timestamps in order would see history rewound:
  the look-back `version_as_of` (it stops at the first later timestamp), deadlines measured
  from an event's time. `MonotonicTimestamps` (a mixin before `Aggregate`) stamps each new
  event with the clock's time, or with one microsecond after the aggregate's last event when
  the clock is not past it: the stream's timestamps strictly increase, whatever the clock does,
  and they catch up with the wall clock as soon as it passes the last stamp again.
- **"Today" is the street office's day** (China Standard Time, `domain.quarters.LOCAL_TZ`), not
  the server's: `local_today()`. A server running in UTC used to refuse, between 00:00 and
  08:00 Beijing time, a consultation held "today" as being in the future, and to accept a due
  date already past in Beijing.

The clock can be replaced for a while (`using`), which is how the tests step it back and
cross day and quarter boundaries without touching the store. Proven by
`tests/properties/test_clock.py` (on a real SQLite store opened by `gateway.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from domain.quarters import local_date

Source = Callable[[], datetime]

# The smallest step a stored timestamp keeps (the transcoder writes ISO text with microseconds).
TICK: Final = timedelta(microseconds=1)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


# The clock in use: the last one pushed by `using` (the wall clock at the bottom).
_sources: list[Source] = [_wall_clock]


def now() -> datetime:
    """The current instant (aware), from the clock in use."""
    return _sources[-1]()


def local_today() -> date:
    """Today in the street office's calendar (UTC+8), whatever the server's own zone."""
    return local_date(now())


@contextmanager
def using(source: Source) -> Iterator[None]:
    """Read the time from `source` inside the block (tests: a clock that steps back)."""
    depth = len(_sources)
    _sources.append(source)
    try:
        yield
    finally:
        del _sources[depth:]


def after(previous: datetime | None) -> datetime:
    """The clock's time, or one tick after `previous` when the clock is not past it."""
    moment = now()
    if previous is not None and moment <= previous:
        return previous + TICK
    return moment


class MonotonicTimestamps:
    """Mixin for an `eventsourcing` Aggregate (list it before `Aggregate`): each event's
    timestamp comes from this module's clock and is later than the previous event's."""

    @classmethod
    def _create(cls, event_class: type[Any], **kwargs: Any) -> Any:
        if kwargs.get("timestamp") is None:
            kwargs["timestamp"] = now()
        return super()._create(event_class, **kwargs)  # type: ignore[misc]

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        if kwargs.get("timestamp") is None:
            kwargs["timestamp"] = after(getattr(self, "modified_on", None))
        super().trigger_event(event_class, **kwargs)  # type: ignore[misc]
