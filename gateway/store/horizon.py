"""How far the store's log is settled, decided once for every follower of it: the read models,
the Merkle log and the relay.

With the store's ordered appends (`gateway.store.guard`: always on SQLite, and on PostgreSQL
when the ordering trigger is in place) the largest notification id is settled: no insert can
still commit below it, so a follower may read up to it without a lock. Otherwise (PostgreSQL
without the trigger) `None`: each follower's own `projections.follower.PostgresHorizon` decides,
which may briefly lock the events table to let a gap settle. Proven by
`tests/evidence/test_store_guard.py` (ordered appends) and `tests/projections/test_follower.py`
(a gap an open insert holds is not passed over).
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import PersistenceError

from gateway.logs import get_logger
from gateway.store.guard import appends_are_ordered
from projections.follower import Horizon, sqlite_horizon

log = get_logger("casetrail.store")


def settled_horizon(application: Application[Any]) -> Horizon | None:
    """The largest notification id when appends are ordered; None when each follower's own
    horizon must decide (or when the store could not say: the safe choice)."""
    try:
        if appends_are_ordered(application.recorder):
            return sqlite_horizon(application.recorder)
    except (PersistenceError, OSError):
        log.warning("ordered_appends_unknown")
    return None
