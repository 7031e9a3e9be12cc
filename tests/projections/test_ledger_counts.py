"""A ledger page's total kept by the ledger view (issue 23): `ledger_counts` equals `COUNT(*)`
over `ledger_cases`, per street and per village, reporting unit, risk and status, after a mix
of reports, consultations, reclassifications, risk changes, closures, reopenings, corrections of
the village, transfers within and out of the street and erasures, followed in uneven batches,
then rebuilt; on SQLite and on PostgreSQL (the `store_url` fixture). A page's total, kept or
counted, equals the number of its rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from domain import commands as cmd
from domain.access import LedgerScope
from domain.application import CaseTrail
from domain.retention import KeyScope
from domain.taxonomy import CaseStatus, RiskLevel
from gateway.cli.demo import VILLAGES
from projections.follower import Db
from projections.ledger.view import COUNTED, LedgerQuery, counted_filter, ledger_page
from projections.readmodels import ReadModels
from tests.projections.workload import COORDINATOR, STREET, Workload

OTHER_STREET, OTHER_VILLAGE = "xiaoxi-street", "xiaoxi-village"
Counts = dict[tuple[str, str, str], int]


def kept(db: Db) -> Counts:
    rows = db.execute("SELECT street, dimension, value, n FROM {ledger_counts}")
    return {(r["street"], r["dimension"], r["value"]): int(r["n"]) for r in rows}


def counted(db: Db) -> Counts:
    """What `COUNT(*)` over the rows says, in the same form (no row for a count of 0)."""
    found: Counts = {}
    for r in db.execute("SELECT street, COUNT(*) AS n FROM {ledger_cases} GROUP BY street"):
        found[(r["street"], "", "")] = int(r["n"])
    for column in COUNTED:
        for r in db.execute(
            f"SELECT street, {column} AS value, COUNT(*) AS n FROM {{ledger_cases}} "
            f"GROUP BY street, {column}"
        ):
            found[(r["street"], column, str(r["value"]))] = int(r["n"])
    return found


@contextmanager
def ledger(readmodels: ReadModels) -> Iterator[Any]:
    with readmodels.ledger.reading() as db:
        yield db


def assert_counts_equal(readmodels: ReadModels) -> Counts:
    with ledger(readmodels) as db:
        found, expected = kept(db), counted(db)
    assert found == expected
    return found


def open_files(readmodels: ReadModels) -> list[UUID]:
    with ledger(readmodels) as db:
        rows = db.execute(
            "SELECT case_id FROM {ledger_cases} WHERE status <> ? ORDER BY case_id",
            [str(CaseStatus.CLOSED)],
        )
    return [UUID(r["case_id"]) for r in rows]


def _correct_village(application: CaseTrail, case_id: UUID, village: str) -> None:
    application.change_case(
        case_id,
        COORDINATOR,
        "correct_details",
        lambda c: c.correct_details(
            cmd.CorrectDetails(village=village, reason="村居录入错误。"),
            by=COORDINATOR.as_record(),
        ),
    )


def _transfer(application: CaseTrail, case_id: UUID, street: str, village: str) -> None:
    application.change_case(
        case_id,
        COORDINATOR,
        "transfer",
        lambda c: c.transfer(
            cmd.TransferCase(to_street=street, to_village=village, reason="随父母迁居。"),
            by=COORDINATOR.as_record(),
        ),
    )


def test_the_kept_counts_equal_count_star_after_a_mix_of_changes(
    application: CaseTrail, open_readmodels: Any
) -> None:
    workload = Workload(application, seed=23)
    readmodels = open_readmodels(batch_size=7)
    workload.cases(24)
    readmodels.catch_up()
    assert_counts_equal(readmodels)
    first = open_files(readmodels)
    assert len(first) >= 16, "the workload leaves most files open"

    # Changes on files already counted, each in a batch of its own or with others: risk and
    # issues (reclassified), closures, reopenings (the workload's own steps).
    for case_id in first[:3]:
        workload._assess(case_id)
        workload._reclassify(case_id)
    for case_id in first[3:6]:
        workload.close(case_id)
    workload.close(first[15])
    for i, case_id in enumerate(first[6:10]):
        _correct_village(application, case_id, f"corrected-village-{i % 2}")
    _transfer(application, first[10], STREET, "moved-village")  # another village, same street
    for case_id in first[11:15]:
        _transfer(application, case_id, OTHER_STREET, OTHER_VILLAGE)
    readmodels.catch_up()
    assert_counts_equal(readmodels)

    # Erasures (one of a file moved out), and new files reported and changed in the same batch.
    for case_id in (first[0], first[11], first[15]):
        application.erase(
            case_id, scope=KeyScope.CASE, rule="retention", basis="t", due_on=None, by={}
        )
    late = workload.cases(5)
    _correct_village(application, late[0], OTHER_VILLAGE)
    readmodels.catch_up()
    followed = assert_counts_equal(readmodels)
    assert followed[(STREET, "", "")] == 24 + 5 - 4 - 2  # reported, moved out, erased
    assert followed[(OTHER_STREET, "", "")] == 3
    assert (STREET, "status", str(CaseStatus.CLOSED)) in followed
    assert all(n > 0 for n in followed.values()), "a count back to 0 is deleted"

    # A rebuild (in other batches) gives the same counts, row for row.
    readmodels.rebuild("ledger")
    assert assert_counts_equal(readmodels) == followed
    other = open_readmodels(batch_size=500)
    other.rebuild("ledger")
    assert assert_counts_equal(other) == followed


def test_a_pages_total_kept_or_counted_is_its_number_of_rows(
    application: CaseTrail, open_readmodels: Any
) -> None:
    workload = Workload(application, seed=29)
    readmodels = open_readmodels()
    ids = workload.cases(20)
    _transfer(application, ids[0], OTHER_STREET, OTHER_VILLAGE)
    _correct_village(application, ids[1], VILLAGES[3])
    readmodels.catch_up()

    coordinator = LedgerScope("ledger_street", STREET)
    scopes = [
        coordinator,
        LedgerScope("ledger_street", OTHER_STREET),
        *(LedgerScope("ledger_own_unit", STREET, reporting_unit=v) for v in VILLAGES),
        LedgerScope("ledger_assigned", STREET, assigned_unit="police-station"),
    ]
    queries = [
        LedgerQuery(),
        LedgerQuery(street=STREET),
        LedgerQuery(street=OTHER_STREET),
        *(LedgerQuery(village=v) for v in (*VILLAGES, OTHER_VILLAGE)),
        *(LedgerQuery(risk=str(r)) for r in RiskLevel),
        *(LedgerQuery(status=str(s)) for s in CaseStatus),
        LedgerQuery(risk="high", status=str(CaseStatus.INTERVENING)),
        LedgerQuery(village=VILLAGES[0], status=str(CaseStatus.INTERVENING)),
        LedgerQuery(category="growth_environment"),
    ]
    kept_pages = 0
    with ledger(readmodels) as db:
        for scope in scopes:
            for query in queries:
                total, rows = ledger_page(db, scope, query, limit=10_000)
                assert total == len(rows), (scope, query)
                kept_pages += counted_filter(db.keys, scope, query) is not None
        # The coordinator's page and each one-filter page are kept; two filters are counted.
        assert counted_filter(db.keys, coordinator, LedgerQuery()) == (STREET, "", "")
        assert counted_filter(db.keys, coordinator, queries[-2]) is None
        assert ledger_page(db, coordinator, LedgerQuery(), limit=5)[0] == 19
    assert kept_pages > len(queries)
