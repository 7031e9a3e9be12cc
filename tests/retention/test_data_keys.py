"""The data keys' table (`gateway/store/datakeys.py`) on SQLite and PostgreSQL: a key per keyed
stream, made once even when two processes make it at once; an erasure seen by another process
within `CASETRAIL_DATA_KEY_CACHE_SECONDS`; a rotation of the event key rewraps every live key so
that the old key can be retired; a destroyed key's wrap is gone from the SQLite file's bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain import commands as cmd
from domain.access import Actor
from domain.application import CaseTrail
from domain.retention import DataErased, KeyScope
from domain.taxonomy import Purpose, Role
from gateway.store.datakeys import DataKeyProblem, DataKeyTable
from gateway.store.eventstore import (
    ENV_DATA_KEY_CACHE_SECONDS,
    decode_key,
    key_id,
    new_key_text,
    store_environment,
)
from gateway.store.writer_lock import lock_for_file
from tests.integration.planted import planted_case

REPORTER = Actor("user-1", Role.REPORTER, "dongshan-village", "chengguan-street")


@pytest.fixture
def url(store_url: str, tmp_path: Path) -> str:
    """The conftest's store (SQLite, and PostgreSQL in its own schema)."""
    if store_url.startswith("sqlite"):
        (tmp_path / "home").mkdir(exist_ok=True)
    return store_url


def _app(url: str, keys: list[str], cache_seconds: float = 5.0) -> CaseTrail:
    env = store_environment(url, keys)
    env[ENV_DATA_KEY_CACHE_SECONDS] = str(cache_seconds)
    return CaseTrail(env=env)


def test_an_erasure_reaches_another_process_within_its_cache_time(url: str) -> None:
    key = new_key_text()
    reader, eraser = _app(url, [key], cache_seconds=0.3), _app(url, [key])
    try:
        case_id = reader.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
        assert reader.read_case(case_id, REPORTER, Purpose.FOLLOW_UP, "r-1")["id"]
        eraser.erase(case_id, scope=KeyScope.CASE, rule="retention", basis="t", due_on=None, by={})
        time.sleep(0.4)
        with pytest.raises(DataErased):
            reader.repository.get(case_id)
        # Nothing more can be written to it either.
        with pytest.raises(DataErased):
            reader.change_case(
                case_id,
                REPORTER,
                "follow_up",
                lambda c: c.record_follow_up(
                    cmd.RecordFollowUp(visited_on=c.found_on, notes="擦除之后"),
                    by=REPORTER.as_record(),
                ),
            )
    finally:
        reader.close()
        eraser.close()


def test_two_processes_making_a_streams_first_key_agree_on_one(url: str) -> None:
    key = decode_key(new_key_text())
    where = (
        {"sqlite_path": url.removeprefix("sqlite:///")}
        if url.startswith("sqlite")
        else {"postgres": _pg_kwargs(url)}
    )
    one = DataKeyTable(keks={key_id(key): key}, current_kek=key, **where)
    two = DataKeyTable(keks={key_id(key): key}, current_kek=key, **where)
    try:
        stream = uuid4()
        first = one.for_writing(stream, "case")
        second = two.for_writing(stream, "case")
        assert first is not None and second is not None
        assert first[0] == second[0]
        nonce, aad = bytes(12), b"place"
        assert second[1].decrypt(nonce, first[1].encrypt(nonce, b"x", aad), aad) == b"x"
        assert one.counts() == {"keys": 1, "destroyed": 0, "live": 1}
    finally:
        one.close()
        two.close()


def test_a_key_made_by_another_process_after_the_preload_is_found_not_doubled(url: str) -> None:
    """The process has loaded every key at its first miss; a stream whose key another process
    made since gets that key (on PostgreSQL through the insert's conflict, `_create`)."""
    key = decode_key(new_key_text())
    early, late = _table(url, [key]), _table(url, [key])
    try:
        assert late.for_writing(uuid4(), "case") is not None  # `late` preloads here
        stream = uuid4()
        first = early.for_writing(stream, "case")
        second = late.for_writing(stream, "case")
        assert first is not None and second is not None
        assert first[0] == second[0]
        nonce, aad = bytes(12), b"place"
        assert second[1].decrypt(nonce, first[1].encrypt(nonce, b"x", aad), aad) == b"x"
        assert late.counts() == {"keys": 2, "destroyed": 0, "live": 2}
        assert late.key_id(stream) == first[0].hex()
    finally:
        early.close()
        late.close()


def test_a_new_key_on_sqlite_queues_behind_the_files_writer_lock(tmp_path: Path) -> None:
    """Making a stream's key writes to the events' file: it waits for the writer lock, as the
    events' inserts do, rather than in SQLite's busy handler (`gateway.store.writer_lock`)."""
    path = str(tmp_path / "queue.sqlite")
    key = decode_key(new_key_text())
    table = DataKeyTable(keks={key_id(key): key}, current_kek=key, sqlite_path=path)
    lock = lock_for_file(path)
    assert lock is not None
    made = threading.Event()

    def make() -> None:
        table.for_writing(uuid4(), "case")
        made.set()

    try:
        table.counts()  # the tables exist before the lock is held
        with lock:
            thread = threading.Thread(target=make, daemon=True)
            thread.start()
            assert not made.wait(0.5), "the key was made while another writer held the file"
        assert made.wait(30)
        thread.join(30)
        assert table.counts()["keys"] == 1
    finally:
        table.close()


def _pg_kwargs(url: str) -> dict[str, object]:
    from urllib.parse import parse_qs, urlparse  # noqa: PLC0415

    parts = urlparse(url)
    return {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "dbname": parts.path.strip("/"),
        "user": parts.username or "postgres",
        "schema": parse_qs(parts.query)["schema"][0],
    }


def test_rotating_the_event_key_rewraps_every_live_key_and_retires_the_old(url: str) -> None:
    old, new = new_key_text(), new_key_text()
    app = _app(url, [old])
    try:
        ids = [
            app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
            for _ in range(3)
        ]
    finally:
        app.close()
    old_raw, new_raw = decode_key(old), decode_key(new)
    table = _table(url, [new_raw, old_raw])
    try:
        with pytest.raises(DataKeyProblem, match="wrapped only by that key"):
            table.retire(key_id(old_raw))
        assert table.rewrap() == 3
        assert table.rewrap() == 0
        assert table.retire(key_id(old_raw)) == 3
    finally:
        table.close()
    # The old key is no longer needed: the new one alone opens every file.
    rotated = _app(url, [new])
    try:
        assert [rotated.repository.get(i).id for i in ids] == ids
    finally:
        rotated.close()


def _table(url: str, keys: list[bytes]) -> DataKeyTable:
    keks = {key_id(k): k for k in keys}
    if url.startswith("sqlite"):
        return DataKeyTable(keks=keks, current_kek=keys[0], sqlite_path=url[len("sqlite:///") :])
    return DataKeyTable(keks=keks, current_kek=keys[0], postgres=_pg_kwargs(url))


def test_a_destroyed_wrap_leaves_no_byte_in_the_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shred.sqlite'}"
    app = _app(url, [new_key_text()])
    try:
        case_id = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
        table = app.mapper.cipher.data_keys  # type: ignore[union-attr]
        ((wrapped,),) = table._rows("SELECT wrapped FROM data_key_wraps", [])
        app.erase(case_id, scope=KeyScope.CASE, rule="retention", basis="t", due_on=None, by={})
    finally:
        app.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("shred.sqlite")]
    assert files
    for path in files:
        assert bytes(wrapped) not in path.read_bytes(), path.name
        assert bytes(wrapped)[12:40] not in path.read_bytes(), path.name


def test_keys_are_per_stream(tmp_path: Path) -> None:
    app = _app(f"sqlite:///{tmp_path / 'per.sqlite'}", [new_key_text()])
    try:
        a = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
        b = app.report_clue(cmd.ReportClue.model_validate(planted_case().body), REPORTER)
        ring = app.data_keyring
        assert ring.key_id(a) != ring.key_id(b)
        app.erase(a, scope=KeyScope.CASE, rule="retention", basis="t", due_on=None, by={})
        assert not ring.has_key(a) and ring.has_key(b)
        assert app.repository.get(b).id == b
        assert isinstance(b, UUID)
    finally:
        app.close()


class _CountingTable(DataKeyTable):
    """A key table that counts the rows its queries bring back (how much of the table a
    process reads), on the real database."""

    loaded = 0

    def _rows(self, sql_text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows = super()._rows(sql_text, params)
        self.loaded += len(rows)
        return rows


def _counting(url: str, key: bytes, cache_entries: int) -> _CountingTable:
    where: dict[str, Any] = (
        {"sqlite_path": url.removeprefix("sqlite:///")}
        if url.startswith("sqlite")
        else {"postgres": _pg_kwargs(url)}
    )
    return _CountingTable(
        keks={key_id(key): key},
        current_kek=key,
        cache_seconds=0.0,
        cache_entries=cache_entries,
        **where,
    )


def test_a_store_with_more_keys_than_the_cache_loads_only_the_keys_it_reads(url: str) -> None:
    """Past the cache's size, a miss loads the missing key, not every row of the table (a 1M
    store holds about 100k keys: each process read them all at its first miss, then dropped
    them). The keys still open, and a destruction by another process is still seen."""
    key = decode_key(new_key_text())
    maker = _counting(url, key, cache_entries=64)
    small = _counting(url, key, cache_entries=4)
    large = _counting(url, key, cache_entries=64)
    try:
        nonce, aad = bytes(12), b"place"
        sealed: dict[bytes, bytes] = {}
        streams: dict[bytes, UUID] = {}
        for _ in range(20):
            stream = uuid4()
            made = maker.for_writing(stream, "case")
            assert made is not None
            sealed[made[0]] = made[1].encrypt(nonce, b"x", aad)
            streams[made[0]] = stream
        wanted = list(sealed)[:3]

        for key_bytes in wanted:
            found = small.for_reading(key_bytes)
            assert found is not None and found[1] is not None
            assert found[0] == streams[key_bytes]
            assert found[1].decrypt(nonce, sealed[key_bytes], aad) == b"x"
        # Three keys read: the count, then per key its stream and its wrap, and the
        # destructions' count (no row of the 20 keys but those three).
        assert small.loaded <= 1 + 3 * 2 + 3, small.loaded
        assert small.loaded < len(sealed)

        # A cache the store fits in still loads every key at once, at its first miss.
        assert large.for_reading(wanted[0]) is not None
        assert large.loaded >= len(sealed)

        # Destruction sync: another process destroys a key the small cache holds.
        maker.destroy(streams[wanted[1]])
        found = small.for_reading(wanted[1])
        assert found is not None and found[1] is None
        assert small.is_destroyed(streams[wanted[1]])
        # A key past the cache's size (evicted or never loaded) is read again, on its own.
        for key_bytes in list(sealed)[3:12]:
            found = small.for_reading(key_bytes)
            assert found is not None and found[1] is not None
        before = small.loaded
        found = small.for_reading(wanted[0])  # evicted by the nine since
        assert found is not None and found[1] is not None
        assert found[1].decrypt(nonce, sealed[wanted[0]], aad) == b"x"
        assert small.loaded - before <= 4, small.loaded - before
    finally:
        maker.close()
        small.close()
        large.close()
