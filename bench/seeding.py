"""Bulk seeding for the benchmarks: large stores built faster, in the real store format.

Bench only (issue 23, "growth to 1M events"): nothing here is used by the service. What a store
built here holds is what the service would have written: every event goes through
`Application.save` (the aggregate's methods, the mapper, AES-256-GCM under the file's data key,
the append-only triggers, snapshots), and the read models are the real views' rows, written by
their own `View.apply` through their recorders with their positions tracked. Only the work
around that is done in bulk, where the profile of a 20,000-event build (bench/README.md,
"scale") showed the time going:

- `prepare_data_keys`: a case file's data key (issue 19) is made at its first event, one
  key-table transaction (and one fsync) per file: a third of the build's time. Here the keys
  of all the files of one save are made in one transaction, by the key table's own wrap, and
  put in its cache, so that the save finds them made. Same rows, same wraps.
- `populate_apart`: the files saved by several processes at once, each its share (its own
  seed); their appends queue for the store's writer lock while the others build and encrypt.
- `catch_up_together`: each view's follower reads and decrypts the whole log on its own (three
  views read the case events, so every event was decrypted three times). Here the log is read
  and decoded once per chunk for the views of one process, and each view gets its topics'
  events of it as one `Batch`, applied by its recorder (`recorder.process`: the view's rows
  and its position in one transaction, as the follower does). `View.apply` is a pure fold
  whatever the batch boundaries (`projections.follower.View`), so the rows are those of
  following.
- `Apart`: the views following the store while it is built, and then the evidence log (the
  Merkle tree over every event), each in a process of its own.

Proven by tests/integration/test_bench_seeding.py: the views caught up here hold row for row
what their followers write, every event opens in a fresh process, every file's key is wrapped,
and a file stored before keeps its key.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Notification

from bench.workload import StoredCase
from domain.application import CaseTrail
from domain.case import Case
from domain.retention import key_scope
from gateway.store import datakeys
from gateway.store.eventstore import BoundAESGCMCipher
from projections.follower import Batch, erased, plain_state, store_errors
from projections.readmodels import ReadModels

if TYPE_CHECKING:
    from gateway.settings import Settings

CHUNK: Final = 5000


def prepare_data_keys(app: CaseTrail, cases: Sequence[Case]) -> int:
    """Make the data keys of the new case files among `cases` (not yet saved) in one
    transaction of the key table, and cache them; returns how many were made.

    The rows are those `DataKeyTable._create` writes (a random key and key id, wrapped by the
    current KEK with `datakeys.wrap`); it uses the table's own transaction and cache, which
    are private to it: this is a bench tool, kept beside the table's code by its tests."""
    cipher = app.mapper.cipher
    if not isinstance(cipher, BoundAESGCMCipher):
        raise TypeError("the bench's stores are encrypted: CIPHER_TOPIC is BoundAESGCMCipher")
    table = cipher.data_keys
    made: list[tuple[UUID, bytes, bytes, str]] = []
    for case in cases:
        if case.version != len(case.pending_events):
            continue  # a file stored before has its key
        scope = key_scope(case.pending_events[0])
        if scope is None:
            continue
        made.append(
            (case.id, os.urandom(datakeys.DATA_KEY_ID_SIZE), AESGCM.generate_key(256), str(scope))
        )
    if not made:
        return 0
    kek = table._current
    kek_id = table._current_kek_id()
    now = datakeys._now()
    with table._transaction() as conn:
        conn.cursor().executemany(
            table._placeholder(
                "INSERT INTO data_keys (stream_id, key_id, scope, created_at) VALUES (?, ?, ?, ?)"
            ),
            [(str(stream), key_id.hex(), scope, now) for stream, key_id, _, scope in made],
        )
        conn.cursor().executemany(
            table._placeholder(
                "INSERT INTO data_key_wraps (key_id, kek_id, wrapped, created_at) "
                "VALUES (?, ?, ?, ?)"
            ),
            [
                (
                    key_id.hex(),
                    kek_id,
                    datakeys.wrap(kek, key_id, stream, key, os.urandom(datakeys.NONCE_SIZE)),
                    now,
                )
                for stream, key_id, key, _ in made
            ],
        )
    for stream, key_id, key, _ in made:
        table._remember(stream, datakeys._Cached(key_id, AESGCM(key), time.monotonic()))
    return len(made)


def save_in_bulk(app: CaseTrail, cases: Sequence[Case]) -> None:
    """`app.save(*cases)`, their data keys made first in one transaction."""
    prepare_data_keys(app, cases)
    app.save(*cases)


def catch_up_together(
    app: CaseTrail,
    readmodels: ReadModels,
    *,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
    views: Sequence[str] = (),
) -> dict[str, int]:
    """Every view (or those named in `views`) caught up to the log's settled end, the log
    read and decoded once per `chunk` notifications; returns how far each view moved."""
    followers = {name: f for name, f in readmodels.followers.items() if not views or name in views}
    first = next(iter(followers.values()))
    positions = {name: f.position() for name, f in followers.items()}
    start = min(positions.values())
    end_of_log = first.horizon(start)
    moved = dict.fromkeys(followers, 0)
    while start < end_of_log:
        notifications = app.recorder.select_notifications(
            start=start, limit=chunk, stop=end_of_log, inclusive_of_start=False
        )
        end = notifications[-1].id if len(notifications) == chunk else end_of_log
        decoded = _decoded(app, notifications)
        for name, follower in followers.items():
            at = positions[name]
            if at >= end:
                continue
            topics = frozenset(follower.view.topics)
            mine = [(n, e) for n, e in decoded if n.id > at and (not topics or n.topic in topics)]
            view = follower.view
            batch = Batch(
                app.name,
                at,
                end,
                [n for n, _ in mine],
                [e for _, e in mine] if view.decodes and not view.plain else [],
                # A view of plain states (the access log's) gets them as its follower would.
                [plain_state(app.mapper, n) for n, _ in mine] if view.plain else (),
            )
            follower.recorder.process(batch)
            moved[name] += end - at
            positions[name] = end
        start = end
        if progress is not None:
            progress(start, end_of_log)
    return moved


def _decoded(
    app: CaseTrail, notifications: Sequence[Notification]
) -> list[tuple[Notification, Any]]:
    """Each notification with its event; an erased one is left out, as a follower does."""
    decode = app.mapper.to_domain_event
    found = []
    for notification in notifications:
        try:
            found.append((notification, decode(notification)))
        except Exception as exc:
            if not erased(exc):
                raise
    return found


def _child(what: str, env: Mapping[str, str], done: Any) -> None:
    """In a process of its own: the read models following the store as it is built, until
    `done` is set and they have caught up with everything after it; or the evidence log."""
    from bench.scale import catch_up_evidence  # noqa: PLC0415 (in the child process only)
    from gateway.bootstrap import open_read_models  # noqa: PLC0415
    from gateway.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env(dict(env))
    if what == "evidence":
        catch_up_evidence(settings)
        return
    views = what.partition(":")[2].split(",")
    t0 = time.perf_counter()
    app = _opened(settings)
    try:
        readmodels = open_read_models(settings, app)
        try:
            total = 0
            while True:
                finished = done.is_set()
                try:
                    total += max(catch_up_together(app, readmodels, views=views).values())
                except store_errors():
                    # Another process's views hold the file's write lock longer than the
                    # busy timeout ("database is locked"): the batch was rolled back; again.
                    time.sleep(0.5)
                    continue
                if finished:
                    break
                time.sleep(1.0)
        finally:
            readmodels.close()
    finally:
        app.close()
    print(
        f"    read models {', '.join(views)} followed {total:,} events in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )


def _opened(settings: Settings) -> CaseTrail:
    """The application of a child process, opened as the service opens it: under the store's
    setup lock (`gateway.store.setup`), so that the children starting at once do not create the
    library's tables and function at the same instant (on PostgreSQL: "tuple concurrently
    updated", which ended the full suite's `scale` of 2026-12-04 at its 1M store)."""
    from gateway.store.setup import setup_lock  # noqa: PLC0415 (in the child process only)

    with setup_lock(settings.database_url):
        return CaseTrail(env=settings.application_env())


def _populate_child(
    env: Mapping[str, str], counts: Sequence[int], seed: int, label: str, out: str
) -> None:
    from bench.scale import _progress, _save_cases  # noqa: PLC0415 (in the child process only)
    from bench.workload import populate  # noqa: PLC0415
    from gateway.settings import Settings  # noqa: PLC0415

    app = _opened(Settings.from_env(dict(env)))
    try:
        cases = populate(
            app,
            counts,
            seed,
            events_per_transaction=2000,
            progress=_progress(label),
            save=save_in_bulk,
        )
    finally:
        app.close()
    _save_cases(Path(out), cases)


def populate_apart(
    env: Mapping[str, str], counts: Sequence[int], seed: int, workers: int, scratch: Path
) -> list[StoredCase]:
    """`bench.workload.populate` of `counts` in `workers` processes at once, each saving its
    share of the files (every `workers`-th, its own seed) through `Application.save`; their
    appends queue for the store's writer lock (`gateway.store.writer_lock`) while the others
    build and encrypt their next events. The case files stored, the workers' in turn."""
    from bench.scale import _load_cases  # noqa: PLC0415

    context = multiprocessing.get_context("spawn")
    processes = []
    for n in range(workers):
        share = list(counts[n::workers])
        out = scratch / f"cases-worker-{n}.json"
        process = context.Process(
            target=_populate_child,
            args=(dict(env), share, seed + n, f"worker {n + 1}/{workers}", str(out)),
            name=f"bench-populate-{n}",
        )
        process.start()
        processes.append((process, out))
    failed = []
    for process, _ in processes:
        process.join()
        if process.exitcode != 0:
            failed.append(f"{process.name} (exit {process.exitcode})")
    if failed:
        raise RuntimeError(f"building the store failed: {', '.join(failed)}")
    cases: list[StoredCase] = []
    for _, out in processes:
        cases += _load_cases(out)
        out.unlink()
    return cases


class Apart:
    """A follower in a process of its own: `Apart("readmodels:ledger,reports", env)` makes
    those views follow the store while it is built, `Apart("evidence", env)` catches the
    evidence log up; `finish()` says the store is complete and waits for it to catch up."""

    def __init__(self, what: str, env: Mapping[str, str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.done = context.Event()
        self.process = context.Process(
            target=_child, args=(what, dict(env), self.done), name=f"bench-{what}"
        )
        self.what = what
        self.process.start()

    def finish(self) -> None:
        self.done.set()
        self.process.join()
        if self.process.exitcode != 0:
            raise RuntimeError(f"bench-{self.what} failed (exit {self.process.exitcode})")
