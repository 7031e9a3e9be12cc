"""Exact knowledge records (issue 13): every access event stores the case version it disclosed or
decided on, the channel it came by, and the client as the service saw it.

- Old stores: the access events of the store written before (tests/fixtures/store_v1) read as
  version 2 with the values that say nothing was recorded (`unrecorded`, no version, an empty
  client); a read today adds one that records all three, in the same access log.
- The stored form: a version-2 event is stored with its class version and reads back equal.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from uuid import UUID

import pytest

from domain.access import AccessDenied, CaseAccessed, Channel, Client
from domain.application import CaseTrail
from domain.taxonomy import Purpose
from tests.architecture.test_stored_topics import (
    COORDINATOR,
    FIXTURE_HOME,
    case_ids_in,
    open_store,
)

# --- the store written before access events had version 2 --------------------------------------


@pytest.fixture
def old_store(tmp_path: Path) -> CaseTrail:
    home = tmp_path / "home"
    shutil.copytree(FIXTURE_HOME, home)
    return open_store(home)


def _accessed_cases(application: CaseTrail) -> list[UUID]:
    return [c for c in case_ids_in(application) if application.access_events(c)]


def test_the_old_stores_access_events_read_as_unrecorded(old_store: CaseTrail) -> None:
    try:
        accessed = _accessed_cases(old_store)
        events = [e for c in accessed for e in old_store.access_events(c)]
        # The fixture holds granted, refused and break-glass reads (write_store.py).
        assert {type(e).__name__ for e in events} >= {
            "CaseAccessed",
            "AccessDenied",
            "BreakGlassAccessed",
        }
        for event in events:
            assert event.case_version is None
            assert event.channel == "unrecorded"
            assert event.client == {"address": "", "user_agent": ""}
        log = old_store.access_log(accessed[0])
        assert log
        assert all(
            (e["channel"], e["case_version"], e["client"])
            == ("unrecorded", None, {"address": "", "user_agent": ""})
            for e in log
        )
    finally:
        old_store.close()


def test_a_read_of_the_old_store_today_records_version_channel_and_client(
    old_store: CaseTrail,
) -> None:
    client = Client("198.51.100.20", "casetrail-test/1")
    try:
        case_id = _accessed_cases(old_store)[0]
        version: int = old_store.repository.get(case_id).version
        before = len(old_store.access_log(case_id))
        answer = old_store.read_case(
            case_id,
            COORDINATOR,
            Purpose.CONSULTATION,
            "req-knowledge",
            channel=Channel.API,
            client=client,
        )
        assert answer["version"] == version
        log = old_store.access_log(case_id)
        assert len(log) == before + 1
        newest = log[-1]
        assert (newest["channel"], newest["case_version"], newest["client"]) == (
            "api",
            version,
            {"address": "198.51.100.20", "user_agent": "casetrail-test/1"},
        )
        assert {e["channel"] for e in log[:-1]} == {"unrecorded"}
        # Stored as version 2: read back through the mapper, with the class version it has.
        stored = old_store.access_events(case_id)[-1]
        assert isinstance(stored, CaseAccessed)
        assert not isinstance(stored, AccessDenied)
        assert "class_version" not in vars(stored)
        assert stored.case_version == version
    finally:
        old_store.close()
