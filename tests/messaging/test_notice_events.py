"""The notice facts (`domain.notices`): deterministic ids, so each is stored once, on a real
encrypted SQLite store; and what they carry (codes, ids, times: no personal data)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from domain.access import NO_CASE
from domain.application import CaseTrail
from domain.notices import (
    NoticePublished,
    NoticeReceived,
    NoticeUndeliverable,
    notice_published,
    notice_received,
    notice_undeliverable,
    published_id,
    received_id,
)
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.settings import Settings

MESSAGE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def application(tmp_path: Path) -> Iterator[CaseTrail]:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    opened = open_application(Settings.from_env({"CASETRAIL_HOME": str(home)}))
    try:
        yield opened
    finally:
        opened.close()


def _published(case_id: object = None) -> NoticePublished:
    return notice_published(
        message_id=MESSAGE,
        unit="chengguan-police-station",
        street="chengguan-street",
        kind="assignment",
        case_id=case_id,  # type: ignore[arg-type]
        assignment_id="a-1",
        source_event=f"{uuid4()}/3",
    )


def test_a_published_notice_is_stored_once_and_reads_back(application: CaseTrail) -> None:
    case_id = uuid4()
    first = _published(case_id)
    assert first.originator_id == published_id(MESSAGE)
    application.store_events([first])
    with pytest.raises(IntegrityError):
        application.store_events([_published(case_id)])  # a second copy: refused
    [stored] = application.events.get(published_id(MESSAGE))
    assert isinstance(stored, NoticePublished)
    assert (stored.unit, stored.kind, stored.case_id, stored.assignment_id) == (
        "chengguan-police-station",
        "assignment",
        case_id,
        "a-1",
    )
    assert stored.source_event == first.source_event


def test_a_notice_about_no_case_carries_the_nil_case_id() -> None:
    assert _published().case_id == NO_CASE


def test_a_receipt_copies_the_published_fact_and_is_stored_once(application: CaseTrail) -> None:
    published = _published(uuid4())
    client = {"user": "client-1", "role": "unit_member", "unit": published.unit}
    receipt = notice_received(published, client)
    assert receipt.originator_id == received_id(MESSAGE) != published_id(MESSAGE)
    application.store_events([receipt])
    with pytest.raises(IntegrityError):
        application.store_events([notice_received(published, {"user": "other"})])
    [stored] = application.events.get(received_id(MESSAGE))
    assert isinstance(stored, NoticeReceived)
    assert stored.client == client
    assert (stored.unit, stored.case_id, stored.kind) == (
        published.unit,
        published.case_id,
        "assignment",
    )


def test_an_undeliverable_notice_is_one_fact_per_source_kind_target_and_reason(
    application: CaseTrail,
) -> None:
    def fact(reason: str, unit: str | None = None) -> NoticeUndeliverable:
        return notice_undeliverable(
            source_event="s/1",
            kind="new_clue",
            unit=unit,
            street="chengguan-street",
            case_id=None,
            reason=reason,
        )

    def ident(reason: str, unit: str | None = None) -> object:
        return fact(reason, unit).originator_id

    assert ident("no_governance_office") == ident("no_governance_office")
    assert ident("no_governance_office") != ident("no_street_supervision")
    assert ident("unit_not_registered", "a") != ident("unit_not_registered", "b")
    application.store_events([fact("no_governance_office")])
    with pytest.raises(IntegrityError):
        application.store_events([fact("no_governance_office")])
    [stored] = application.events.get(fact("no_governance_office").originator_id)
    assert isinstance(stored, NoticeUndeliverable)
    assert stored.case_id == NO_CASE and stored.unit is None
