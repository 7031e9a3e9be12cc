"""The benchmarks' bulk seeding (`bench.seeding`, issue 23) builds what the service would have:
the read models caught up from one decoding of the log hold row for row what their followers
write (the access log's, of plain states, too); every saved event opens, in a process that
never saw its key made (a fresh application); every case file's data key is in the key table
with its wrap; and a file stored before keeps the key it had.

Real parts: the test's SQLite or PostgreSQL event store, read models in SQLite files, the
domain's own aggregates (`bench.workload`); nothing timed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from bench.seeding import catch_up_together, prepare_data_keys, save_in_bulk
from bench.workload import (
    COORDINATOR,
    CommandPool,
    event_counts,
    new_case,
    populate,
    register_people,
)
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import Purpose
from gateway.settings import Settings
from gateway.store.eventstore import BoundAESGCMCipher, store_environment
from projections.readmodels import ReadModelConfig, ReadModels

SEED = 2323


def _read_models(app: CaseTrail, path: Path, index_key: bytes) -> ReadModels:
    return ReadModels(
        app, ReadModelConfig(env=store_environment(f"sqlite:///{path}", None), index_key=index_key)
    )


def _tables(readmodels: ReadModels) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: recorder.dump(table)
        for recorder in readmodels.recorders.values()
        for table in recorder.view.tables
    }


def _key_rows(app: CaseTrail) -> tuple[int, int]:
    cipher = app.mapper.cipher
    assert isinstance(cipher, BoundAESGCMCipher)
    table = cipher.data_keys
    keys = table._rows("SELECT count(*) FROM data_keys", [])[0][0]
    wraps = table._rows("SELECT count(DISTINCT key_id) FROM data_key_wraps", [])[0][0]
    return int(keys), int(wraps)


def test_a_bulk_built_store_holds_what_following_it_would(
    settings: Settings, tmp_path: Path
) -> None:
    app = CaseTrail(env=settings.application_env())
    try:
        register_people(app)  # their user records have keys of their own
        keys_before, _ = _key_rows(app)
        counts = event_counts(40, 400, SEED)
        stored = populate(app, counts, SEED, events_per_transaction=90, save=save_in_bulk)
        keys, wraps = _key_rows(app)
        assert keys - keys_before == len(stored), "one data key per case file"
        assert wraps == keys, "every key wrapped"
        # Reads leave access events, which the access log's view takes as plain states.
        for n, case in enumerate(stored[:15]):
            app.read_case(case.id, COORDINATOR, Purpose.CONSULTATION, f"req-seeding-{n}")

        index_key = os.urandom(32)
        followed = _read_models(app, tmp_path / "followed.sqlite", index_key)
        together = _read_models(app, tmp_path / "together.sqlite", index_key)
        try:
            followed.catch_up()
            # A chunk that cuts case files and the views' topics at odd places.
            moved = catch_up_together(app, together, chunk=37)
            head = app.recorder.max_notification_id()
            assert set(moved) == set(together.followers)
            assert all(f.position() == head for f in together.followers.values())
            expected = _tables(followed)
            assert len(expected["ledger_cases"]) == len(stored)
            assert len(expected["accesses_records"]) == 15
            assert _tables(together) == expected
        finally:
            followed.close()
            together.close()
    finally:
        app.close()

    fresh = CaseTrail(env=settings.application_env())  # its key cache starts empty
    try:
        for case in stored:
            assert fresh.repository.get(case.id).version == case.events
    finally:
        fresh.close()


def test_a_file_stored_before_keeps_its_key(settings: Settings) -> None:
    app = CaseTrail(env=settings.application_env())
    try:
        pool = CommandPool(SEED, reports=4, notes=4)
        rng = random.Random(SEED)
        case, _ = new_case(pool, rng, 3)
        app.save(case)
        cipher = app.mapper.cipher
        assert isinstance(cipher, BoundAESGCMCipher)
        key_id = cipher.key_id(case.id)
        assert key_id is not None
        later: Case = app.repository.get(case.id)
        later.record_follow_up(pool.follow_ups[0], by=COORDINATOR.as_record())
        other, _ = new_case(pool, rng, 2)
        assert prepare_data_keys(app, [later, other]) == 1
        app.save(later, other)
        assert cipher.key_id(case.id) == key_id
        assert app.repository.get(case.id).version == later.version
    finally:
        app.close()
