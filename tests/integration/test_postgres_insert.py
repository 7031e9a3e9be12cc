"""The PostgreSQL recorder sends events to the library's insert function in psycopg's binary
format (`gateway.store.persistence_postgres`, issue 23): what is stored is byte for byte what
was given, whatever its bytes, and the library's own recorder reads it back the same.

These tests fail if the binary path changed a byte, dropped or reordered an event of a batch,
or returned notification ids out of order; and the last one fails if the statement fell back
to the text format (a change of the library's statement would bring the slow path back
silently)."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder

from domain.application import CaseTrail
from gateway.store.eventstore import new_key_text, store_environment
from gateway.store.persistence_postgres import BinaryInsertRecorder, PostgresStore
from tests.conftest import PG_DSN, pg_url

pytestmark = pytest.mark.postgres

EVERY_BYTE = bytes(range(256)) * 4  # NUL, backslash, quotes, braces, commas, high bytes


def _app(schema: str) -> CaseTrail:
    return CaseTrail(env=store_environment(pg_url(schema), [new_key_text()]))


def _parts(app: CaseTrail) -> tuple[PostgresStore, BinaryInsertRecorder]:
    factory, recorder = app.factory, app.recorder
    assert isinstance(factory, PostgresStore)
    assert isinstance(recorder, BinaryInsertRecorder)
    return factory, recorder


def test_every_byte_value_and_large_states_are_stored_as_given(pg_schema: str) -> None:
    app = _app(pg_schema)
    try:
        _, recorder = _parts(app)
        states = [EVERY_BYTE, b"", b"\\x00{},\"'", os.urandom(200_000), EVERY_BYTE[::-1]]
        events = [
            StoredEvent(uuid.uuid4(), 1, f"tests.topic:T{i}", state)
            for i, state in enumerate(states)
        ]
        ids = recorder.insert_events(events)
        assert ids is not None and len(ids) == len(events)
        assert list(ids) == sorted(ids) and len(set(ids)) == len(ids)
        for event in events:
            (found,) = recorder.select_events(event.originator_id)
            assert (found.originator_id, found.originator_version) == (event.originator_id, 1)
            assert (found.topic, found.state) == (event.topic, event.state)
        # In id order, as given: the notification log a follower reads.
        notes = recorder.select_notifications(start=ids[0], limit=10)
        assert [n.state for n in notes] == states
        assert [n.id for n in notes] == list(ids)
    finally:
        app.close()


def test_the_library_recorder_reads_what_the_binary_path_stored(pg_schema: str) -> None:
    app = _app(pg_schema)
    try:
        factory, recorder = _parts(app)
        event = StoredEvent(uuid.uuid4(), 1, "tests.topic:Plain", EVERY_BYTE)
        recorder.insert_events([event])
        plain = PostgresApplicationRecorder(
            datastore=factory.datastore, events_table_name=recorder.events_table_name
        )
        (found,) = plain.select_events(event.originator_id)
        assert found.state == EVERY_BYTE
        with psycopg.connect(PG_DSN) as conn:
            (state,) = conn.execute(
                f"SELECT state FROM {pg_schema}.{recorder.events_table_name} "
                "WHERE originator_id = %s",
                (event.originator_id,),
            ).fetchone() or (None,)
        assert bytes(state) == EVERY_BYTE
    finally:
        app.close()


def test_a_conflicting_version_in_a_batch_stores_none_of_it(pg_schema: str) -> None:
    app = _app(pg_schema)
    try:
        first = StoredEvent(uuid.uuid4(), 1, "tests.topic:A", b"a")
        app.recorder.insert_events([first])
        other = StoredEvent(uuid.uuid4(), 1, "tests.topic:B", b"b")
        with pytest.raises(Exception, match=r"(?i)duplicate|unique|integrity"):
            app.recorder.insert_events([other, first])
        assert app.recorder.select_events(other.originator_id) == []
    finally:
        app.close()


def test_the_insert_statement_sends_the_array_in_binary(pg_schema: str) -> None:
    app = _app(pg_schema)
    try:
        factory, recorder = _parts(app)
        with factory.datastore.get_connection() as conn:
            text = recorder.sql_invoke_pg_function_insert_events.as_string(conn)
        assert text.endswith("((%b))"), text
    finally:
        app.close()
