"""`casetrail projections ...`: the read models from the command line (registered in
`gateway.cli.main`).

    casetrail projections status [--json]        where each read model stands, and its lag
    casetrail projections rebuild NAME|all       empty a read model and apply every event again
    casetrail projections run [--once] [--only read-models|evidence]
                                                 follow the event store (a process of its own)

`run` keeps the read models and the evidence log (docs/evidence.md: the Merkle tree, signed
checkpoints) up to date. `casetrail serve` starts it beside the API when
CASETRAIL_PROJECTIONS=process (the default with several API workers); with
CASETRAIL_PROJECTIONS=off it is yours to start; `--only` splits it in two processes (the
read models, the evidence log: two systemd units in ops/). It stops on SIGTERM or SIGINT after
the batch in progress (a SIGKILL loses nothing either: each batch and its position are one
transaction). Failures are one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Final

import click
from eventsourcing.persistence import PersistenceError

from gateway import bootstrap, lifeline, logs
from gateway.settings import Settings
from projections.readmodels import VIEW_NAMES

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

log = logs.get_logger("casetrail.projections")

BATCH: Final = click.IntRange(1, 10_000)


class ProjectionProblem(click.ClickException):
    exit_code = 2


@contextmanager
def _opened(batch_size: int | None = None) -> Iterator[bootstrap.Followers]:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    opened = bootstrap.followers(settings, batch_size=batch_size)
    try:
        yield opened
    except PersistenceError as exc:
        raise ProjectionProblem(
            f"the store failed: {type(exc).__name__}: {exc}; check that the database is "
            "reachable, then run the command again (nothing is applied twice)"
        ) from None
    finally:
        opened.close()


@click.group(help="Read models (ledgers, worklists, reports) that follow the event store.")
def projections() -> None:
    pass


@projections.command(help="Where each read model stands: position, the store's head, the lag.")
@click.option("--json", "as_json", is_flag=True, help="one JSON document instead of a table")
def status(as_json: bool) -> None:
    with _opened() as opened:
        found = opened.readmodels.status()
        where = bootstrap.readmodel_url(opened.settings)
    if as_json:
        click.echo(
            json.dumps(
                {"where": _without_password(where), "projections": [s.as_dict() for s in found]}
            )
        )
        return
    click.echo(f"read models in {_without_password(where)}")
    click.echo(f"{'name':<10} {'position':>10} {'head':>10} {'lag':>10}")
    for s in found:
        click.echo(f"{s.name:<10} {s.position:>10} {s.head:>10} {s.lag:>10}")


@projections.command(help="Empty a read model (or all) and apply every stored event again.")
@click.argument("name", type=click.Choice([*VIEW_NAMES, "all"]))
@click.option("--batch-size", default=500, show_default=True, type=BATCH)
def rebuild(name: str, batch_size: int) -> None:
    with _opened(batch_size) as opened:
        for view in VIEW_NAMES if name == "all" else (name,):
            follower = opened.readmodels.follower(view)
            head = follower.head()
            started = time.perf_counter()
            with click.progressbar(
                length=max(head, 1), label=f"rebuilding {view}", file=sys.stderr
            ) as bar:
                follower.rebuild(_ProgressBar(bar))
            seconds = time.perf_counter() - started
            log.info("projection_rebuilt", projection=view, events=head, seconds=round(seconds, 2))
            click.echo(f"rebuilt {view} up to position {follower.position()} in {seconds:.1f} s")


@projections.command(help="Follow the event store and keep every read model up to date.")
@click.option("--once", is_flag=True, help="catch up with what is stored now, then exit")
@click.option("--batch-size", default=500, show_default=True, type=BATCH)
@click.option(
    "--poll",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.01, 60),
    help="seconds between looks at the store when idle (PostgreSQL also wakes on NOTIFY)",
)
@click.option(
    "--only",
    type=click.Choice(["read-models", "evidence"]),
    help="follow only the read models, or only the evidence log (the Merkle log and its "
    "checkpoints): two processes, e.g. two systemd units (ops/README.md); default both",
)
# Given by `casetrail serve` to its child (gateway.supervisor), not by people: stop should it die.
@click.option("--supervised-by", type=click.IntRange(1), hidden=True)
def run(
    once: bool, batch_size: int, poll: float, only: str | None, supervised_by: int | None
) -> None:
    with _opened(batch_size) as opened:
        readmodels, evidence = opened.readmodels, opened.evidence
        if once:
            moved = readmodels.catch_up() if only != "evidence" else {}
            if only == "evidence":
                moved["evidence"] = evidence.catch_up()
            click.echo(" ".join(f"{name}+{n}" for name, n in moved.items()))
            return
        stop = threading.Event()

        def stopping(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, stopping)
        signal.signal(signal.SIGINT, stopping)
        lifeline.exit_with(supervised_by)
        followed: list[str] = []
        if only != "evidence":
            readmodels.start(poll_seconds=poll)
            followed += VIEW_NAMES
        if only != "read-models":
            evidence.start()
            followed.append("evidence")
        log.info("projections_running", projections=followed, poll=poll)
        try:
            while not stop.wait(1.0):
                pass
        finally:
            log.info("projections_stopping")


class _ProgressBar:
    """The follower's progress(position, end) as steps of a click progress bar."""

    def __init__(self, bar: ProgressBar[int]) -> None:
        self.bar = bar
        self.done = 0

    def __call__(self, position: int, _end: int) -> None:
        self.bar.update(position - self.done)
        self.done = position


def _without_password(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}@{tail}"
