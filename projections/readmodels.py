"""casetrail's read models together: the views, their followers, and the threads that run them.

`ReadModels` opens the views (`ledger`, `reports`) in one datastore, gives each a `Follower`
of the application's log, and runs them in background threads (`start`/`stop`) or on demand
(`catch_up`, `rebuild`). The API holds one (embedded followers), as does
`casetrail projections run` (a follower process of its own).

Where the tables live: a datastore built from a store environment (see
`gateway.readmodels`): by default a SQLite file of their own next to the events'
(`$CASETRAIL_HOME/readmodels.sqlite`), or the events' own PostgreSQL database and schema.
Either can be deleted and rebuilt from the events at any time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from eventsourcing.application import Application

from projections.blind_index import BlindIndex
from projections.follower import (
    DEFAULT_BATCH_SIZE,
    AnyViewRecorder,
    Follower,
    Horizon,
    Progress,
    Status,
    View,
    open_datastore,
    view_recorder,
    waker_for,
)
from projections.ledger import LedgerView
from projections.reports import ReportsView
from projections.worklists import DEFAULT_CONSULTATION_DEADLINE

VIEW_NAMES: Final = ("ledger", "reports")
_JOIN_SECONDS: Final = 10.0


@dataclass(frozen=True)
class ReadModelConfig:
    """`env` names the read models' database the way a store environment does
    (`PERSISTENCE_MODULE`, `SQLITE_DBNAME` or `POSTGRES_*`)."""

    env: Mapping[str, str]
    index_key: bytes
    batch_size: int = DEFAULT_BATCH_SIZE
    poll_seconds: float = 0.5
    consultation_deadline: timedelta = DEFAULT_CONSULTATION_DEADLINE


class UnknownView(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.message = f"no projection named {name!r}; the projections are: {', '.join(VIEW_NAMES)}"

    def __str__(self) -> str:
        return self.message


class ReadModels:
    def __init__(
        self,
        application: Application[Any],
        config: ReadModelConfig,
        log: Any = None,
        horizon: Horizon | None = None,
    ) -> None:
        """`horizon`: how far the log is settled (see `projections.follower.Horizon`); by
        default each follower's own, which on PostgreSQL may briefly lock the events table."""
        self.application = application
        self.config = config
        self.log = log
        self.blind_index = BlindIndex(config.index_key)
        self.datastore = open_datastore(config.env)
        views: list[View] = [LedgerView(self.blind_index), ReportsView()]
        try:
            self.recorders: dict[str, AnyViewRecorder] = {
                view.name: view_recorder(self.datastore, view) for view in views
            }
            self.followers = {
                name: Follower(
                    application, recorder, batch_size=config.batch_size, horizon=horizon, log=log
                )
                for name, recorder in self.recorders.items()
            }
        except BaseException:
            self.datastore.close()
            raise
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def ledger(self) -> AnyViewRecorder:
        return self.recorders["ledger"]

    @property
    def reports(self) -> AnyViewRecorder:
        return self.recorders["reports"]

    @property
    def consultation_deadline(self) -> timedelta:
        return self.config.consultation_deadline

    def follower(self, name: str) -> Follower:
        try:
            return self.followers[name]
        except KeyError:
            raise UnknownView(name) from None

    # --- running ------------------------------------------------------------------------------

    def start(self, poll_seconds: float | None = None) -> None:
        """Follow the log in one background thread per view, until `stop()`."""
        if self._threads:
            return
        self._stop.clear()
        for follower in self.followers.values():
            thread = threading.Thread(
                target=follower.run,
                args=(
                    self._stop,
                    poll_seconds or self.config.poll_seconds,
                    waker_for(self.application, self.log),
                ),
                name=f"projection-{follower.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        if self.log is not None:
            self.log.info("projections_started", projections=list(self.followers))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(_JOIN_SECONDS)
        self._threads = []

    def catch_up(self) -> dict[str, int]:
        """Bring every view up to the store's current end; returns how far each moved."""
        return {name: follower.catch_up() for name, follower in self.followers.items()}

    def rebuild(self, name: str, progress: Progress | None = None) -> int:
        return self.follower(name).rebuild(progress)

    def status(self) -> list[Status]:
        return [follower.status() for follower in self.followers.values()]

    def close(self) -> None:
        self.stop()
        self.datastore.close()
