"""Every topic the store has written stays readable (`domain/topics.py`).

- The topics are pinned here, literally: a stored class renamed or moved without its old topic
  registered, or a new stored class not pinned, fails `test_every_stored_topic_is_pinned_...`.
- `tests/fixtures/store_v1/home/` is a store written by the main before issue 12 (commit 1a4d800,
  `write_store.py` beside it): it holds exactly the pinned topics, and today's code opens it,
  reads every case file, the units and the access log, and `casetrail verify` finds it intact.
- A copy of the tree with `domain/case.py` moved to `domain/case_file.py` reads that store when the
  old module is registered in `domain/topics.py`, and fails to without that line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate, DomainEvent, Snapshot
from eventsourcing.utils import get_topic, resolve_topic

import domain
import domain.application
from domain import topics
from domain.access import Actor, CaseAccessed
from domain.application import CaseTrail
from domain.case import Case
from domain.taxonomy import Purpose, Role
from gateway.store.eventstore import store_environment

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_HOME = ROOT / "tests" / "fixtures" / "store_v1" / "home"
CASETRAIL = str(Path(sys.executable).with_name("casetrail"))

# Topics of stored events, in rows, associated data and Merkle leaves. Never remove one: rows are
# never rewritten. A class that moves keeps its old topic here and registers it in domain/topics.py.
EVENT_TOPICS = frozenset(
    {
        "domain.access:AccessDenied",
        "domain.access:BreakGlassAccessed",
        "domain.access:BreakGlassReviewed",
        "domain.access:CaseAccessed",
        "domain.access:CommandRefused",
        "domain.credentials:Credentials.AccountLocked",
        "domain.credentials:Credentials.AccountUnlocked",
        "domain.credentials:Credentials.CredentialsCreated",
        "domain.credentials:Credentials.PasswordSet",
        "domain.credentials:Credentials.SignInFailed",
        "domain.credentials:Credentials.SignInSucceeded",
        "domain.credentials:Credentials.TotpEnrolled",
        "domain.credentials:Credentials.TotpRemoved",
        "domain.credentials:Session.SessionEnded",
        "domain.credentials:Session.SessionStarted",
        "domain.credentials:Session.SessionTouched",
        "domain.case:Case.AssignmentAcknowledged",
        "domain.case:Case.AssignmentDeclined",
        "domain.case:Case.AssignmentEnded",
        "domain.case:Case.AssignmentResultReported",
        "domain.case:Case.Closed",
        "domain.case:Case.ClueReported",
        "domain.case:Case.DetailsCorrected",
        "domain.case:Case.Transferred",
        "domain.case:Case.ConsultationHeld",
        "domain.case:Case.Escalated",
        "domain.case:Case.FollowUpRecorded",
        "domain.case:Case.GuardianshipLetterSigned",
        "domain.case:Case.InterventionRecorded",
        "domain.case:Case.Reclassified",
        "domain.case:Case.Reopened",
        "domain.case:Case.RiskAssessed",
        "domain.case:Case.UnitAssigned",
        "domain.investigations:Investigation.CasesLinked",
        "domain.investigations:Investigation.FindingRecorded",
        "domain.investigations:Investigation.InvestigationOpened",
        "domain.investigations:Investigation.InvestigatorsAssigned",
        "domain.investigations:Investigation.OrderIssued",
        "domain.investigations:Investigation.OrderRevoked",
        "domain.investigations:Investigation.RectificationAdded",
        "domain.investigations:Investigation.RectificationCompleted",
        "domain.investigations:Investigation.ReportIssued",
        "domain.compliance.findings:Finding.FindingRaised",
        "domain.compliance.findings:Finding.FindingReviewed",
        "domain.compliance.findings:Finding.FindingSuperseded",
        "domain.compliance.findings:Finding.FollowUpCompleted",
        "domain.compliance.findings:Finding.FollowUpOpened",
        "domain.deadlines:AssignmentNotSignedFor",
        "domain.deadlines:AssignmentOverdue",
        "domain.deadlines:ConsultationOverdue",
        "domain.deadlines:DeadlineEscalated",
        "domain.deadlines:QuarterlyUpdateMissed",
        "domain.notices:DueDateReminder",
        "domain.notices:NoticePublished",
        "domain.notices:NoticeReceived",
        "domain.notices:NoticeUndeliverable",
        "domain.orders:CountyOrder.CountyOrderIssued",
        "domain.orders:CountyOrder.CountyOrderRenewed",
        "domain.orders:CountyOrder.CountyOrderRevoked",
        "domain.orders:InvestigationOrder.InvestigationOrderIssued",
        "domain.orders:InvestigationOrder.InvestigationOrderRenewed",
        "domain.orders:InvestigationOrder.InvestigationOrderRevoked",
        "domain.guardian_requests:GuardianRequest.GuardianRequestAnswered",
        "domain.guardian_requests:GuardianRequest.GuardianRequestReceived",
        "domain.guardian_requests:GuardianRequest.GuardianRequestRefused",
        "domain.refusals:AuthenticationRefused",
        "domain.retention:DataKeyDestroyed",
        "domain.retention_holds:LegalHold.HoldPlaced",
        "domain.retention_holds:LegalHold.HoldReleased",
        "domain.roster:RosterEntry.DetailsUpdated",
        "domain.roster:RosterEntry.GuardianshipLetterSigned",
        "domain.roster:RosterEntry.Listed",
        "domain.roster:RosterEntry.Visited",
        "domain.screening:Campaign.Opened",
        "domain.units:Unit.UnitKeyRotated",
        "domain.units:Unit.UnitRegistered",
        "domain.submissions:LedgerSubmission.LedgerSubmissionOpened",
        "domain.submissions:LedgerSubmission.LedgerSubmitted",
        "domain.submissions:LedgerSubmission.LedgerReceived",
        "domain.submissions:LedgerSubmissionMissed",
        "domain.users:User.PostChanged",
        "domain.users:User.RoleGranted",
        "domain.users:User.RoleRevoked",
        "domain.users:User.UserRegistered",
        "domain.users:User.UserReinstated",
        "domain.users:User.UserSuspended",
    }
)
# Topics of aggregates, inside the encrypted state of their first event and of their snapshots.
AGGREGATE_TOPICS = frozenset(
    {
        "domain.credentials:Credentials",
        "domain.credentials:Session",
        "domain.case:Case",
        "domain.compliance.findings:Finding",
        "domain.guardian_requests:GuardianRequest",
        "domain.investigations:Investigation",
        "domain.orders:CountyOrder",
        "domain.orders:InvestigationOrder",
        "domain.retention_holds:LegalHold",
        "domain.roster:RosterEntry",
        "domain.screening:Campaign",
        "domain.units:Unit",
        "domain.submissions:LedgerSubmission",
        "domain.users:User",
    }
)
# Topics pinned above but first stored after the fixture store was written: the duty cycle and
# the deadline facts (issue 14), notice facts, investigations and county orders (issue 13).
SINCE_STORE_V1 = frozenset(
    {
        "domain.access:CommandRefused",
        # issue 19: erasure facts; a guardian's requests
        "domain.retention:DataKeyDestroyed",
        "domain.guardian_requests:GuardianRequest",
        "domain.guardian_requests:GuardianRequest.GuardianRequestReceived",
        "domain.guardian_requests:GuardianRequest.GuardianRequestAnswered",
        "domain.guardian_requests:GuardianRequest.GuardianRequestRefused",
        # issue 19: explicit legal holds
        "domain.retention_holds:LegalHold",
        "domain.retention_holds:LegalHold.HoldPlaced",
        "domain.retention_holds:LegalHold.HoldReleased",
        # issue 17: corrections, transfers, ledger submissions
        "domain.case:Case.DetailsCorrected",
        "domain.case:Case.Transferred",
        "domain.submissions:LedgerSubmission",
        "domain.submissions:LedgerSubmission.LedgerSubmissionOpened",
        "domain.submissions:LedgerSubmission.LedgerSubmitted",
        "domain.submissions:LedgerSubmission.LedgerReceived",
        "domain.submissions:LedgerSubmissionMissed",
        "domain.compliance.findings:Finding",
        "domain.compliance.findings:Finding.FindingRaised",
        "domain.compliance.findings:Finding.FindingReviewed",
        "domain.compliance.findings:Finding.FindingSuperseded",
        "domain.compliance.findings:Finding.FollowUpCompleted",
        "domain.compliance.findings:Finding.FollowUpOpened",
        "domain.case:Case.AssignmentDeclined",
        "domain.case:Case.AssignmentResultReported",
        "domain.deadlines:AssignmentNotSignedFor",
        "domain.deadlines:AssignmentOverdue",
        "domain.deadlines:ConsultationOverdue",
        "domain.deadlines:DeadlineEscalated",
        "domain.deadlines:QuarterlyUpdateMissed",
        "domain.investigations:Investigation",
        "domain.investigations:Investigation.CasesLinked",
        "domain.investigations:Investigation.FindingRecorded",
        "domain.investigations:Investigation.InvestigationOpened",
        "domain.investigations:Investigation.InvestigatorsAssigned",
        "domain.investigations:Investigation.OrderIssued",
        "domain.investigations:Investigation.OrderRevoked",
        "domain.investigations:Investigation.RectificationAdded",
        "domain.investigations:Investigation.RectificationCompleted",
        "domain.investigations:Investigation.ReportIssued",
        "domain.notices:NoticePublished",
        "domain.notices:NoticeReceived",
        "domain.notices:NoticeUndeliverable",
        "domain.orders:CountyOrder",
        "domain.orders:CountyOrder.CountyOrderIssued",
        "domain.orders:CountyOrder.CountyOrderRenewed",
        "domain.orders:CountyOrder.CountyOrderRevoked",
        # The roster of minors, screening campaigns and visits (issue 17).
        "domain.roster:RosterEntry",
        "domain.roster:RosterEntry.DetailsUpdated",
        "domain.roster:RosterEntry.GuardianshipLetterSigned",
        "domain.roster:RosterEntry.Listed",
        "domain.roster:RosterEntry.Visited",
        "domain.screening:Campaign.Opened",
        "domain.screening:Campaign",
        # Sign-in: credentials and browser sessions (issue 16, domain.credentials).
        "domain.credentials:Credentials",
        "domain.credentials:Credentials.AccountLocked",
        "domain.credentials:Credentials.AccountUnlocked",
        "domain.credentials:Credentials.CredentialsCreated",
        "domain.credentials:Credentials.PasswordSet",
        "domain.credentials:Credentials.SignInFailed",
        "domain.credentials:Credentials.SignInSucceeded",
        "domain.credentials:Credentials.TotpEnrolled",
        "domain.credentials:Credentials.TotpRemoved",
        "domain.credentials:Session",
        "domain.credentials:Session.SessionEnded",
        "domain.credentials:Session.SessionStarted",
        "domain.credentials:Session.SessionTouched",
        # The user registry (issue 16).
        "domain.users:User",
        "domain.users:User.PostChanged",
        "domain.users:User.RoleGranted",
        "domain.users:User.RoleRevoked",
        "domain.users:User.UserRegistered",
        "domain.users:User.UserReinstated",
        "domain.users:User.UserSuspended",
    }
)
# The snapshot table's rows (the library's class).
SNAPSHOT_TOPICS = frozenset({"eventsourcing.domain:Snapshot"})

COORDINATOR = Actor(
    "coordinator-1", Role.COORDINATOR, "chengguan-governance-office", "chengguan-street"
)


def domain_classes() -> Iterator[type]:
    seen: set[type] = set()

    def walk(namespace: ModuleType | type) -> Iterator[type]:
        for value in list(vars(namespace).values()):
            if (
                inspect.isclass(value)
                and value.__module__.startswith("domain.")
                and value not in seen
            ):
                seen.add(value)
                yield value
                yield from walk(value)

    for module in pkgutil.iter_modules(domain.__path__):
        yield from walk(importlib.import_module(f"domain.{module.name}"))


def aggregates() -> set[type]:
    return {c for c in domain_classes() if issubclass(c, Aggregate)}


def stored_event_classes() -> set[type]:
    """Every event class the application can store: the library's per-aggregate bases (`Event`,
    and `Created`, which a named `__init__` event replaces) are never triggered themselves."""
    bases = {getattr(a, name) for a in aggregates() for name in ("Event", "Created")}
    return {c for c in domain_classes() if issubclass(c, DomainEvent) and c not in bases}


def test_every_stored_topic_is_pinned_and_still_resolves() -> None:
    current = {get_topic(c) for c in stored_event_classes()}
    unpinned = sorted(current - EVENT_TOPICS)
    assert not unpinned, (
        f"new stored event classes {unpinned}: pin their topics in EVENT_TOPICS, or, if they "
        "were moved or renamed, register the old topics in domain/topics.py (moved(...))"
    )
    for topic in sorted(EVENT_TOPICS | AGGREGATE_TOPICS):
        try:
            cls = resolve_topic(topic)
        except Exception as exc:
            pytest.fail(
                f"the stored topic {topic!r} no longer resolves ({exc}): old stores hold it; "
                "register it in domain/topics.py with moved(old, new)"
            )
        assert topic in topics.topics_of(cls), (
            f"{topic!r} resolves to {cls}, which is stored under {get_topic(cls)!r} now: "
            "register the old topic in domain/topics.py so that topic filters select both"
        )
    assert {get_topic(a) for a in aggregates()} <= AGGREGATE_TOPICS | {
        t for a in aggregates() for t in topics.topics_of(a)
    }


def test_topics_of_names_the_old_topics_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        topics,
        "MOVED",
        {
            "domain.old_case": importlib.import_module("domain.case"),
            "domain.case:Dossier": Case,
            "domain.access:Accessed": CaseAccessed,
        },
    )
    assert topics.topics_of(Case.ClueReported) == (  # type: ignore[attr-defined]
        "domain.case:Case.ClueReported",
        "domain.old_case:Case.ClueReported",
        "domain.case:Dossier.ClueReported",
    )
    assert topics.topics_of(Case) == (
        "domain.case:Case",
        "domain.old_case:Case",
        "domain.case:Dossier",
    )
    assert topics.topics_of(CaseAccessed) == (
        "domain.access:CaseAccessed",
        "domain.access:Accessed",
    )


# --- the store written by the main before issue 12 ---------------------------------------------


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(FIXTURE_HOME, home)
    return home


def open_store(home: Path) -> CaseTrail:
    key = (home / "keys" / "event.key").read_text(encoding="utf-8").strip()
    return CaseTrail(env=store_environment(f"sqlite:///{home / 'casetrail.sqlite'}", [key]))


def test_the_old_store_holds_exactly_the_pinned_topics(old_home: Path) -> None:
    with sqlite3.connect(old_home / "casetrail.sqlite") as db:
        rows = {t for (t,) in db.execute("SELECT DISTINCT topic FROM stored_events")}
        snapshots = {t for (t,) in db.execute("SELECT DISTINCT topic FROM stored_snapshots")}
    assert rows == EVENT_TOPICS - SINCE_STORE_V1
    assert snapshots == SNAPSHOT_TOPICS

    application = open_store(old_home)
    try:
        inside = {
            getattr(application.mapper.to_domain_event(n), "originator_topic", None)
            for n in application.notifications()
        }
        case_ids = case_ids_in(application)
        assert application.snapshots is not None
        snapshot_topics = {
            s.topic
            for case_id in case_ids
            for s in application.snapshots.get(case_id)
            if isinstance(s, Snapshot)
        }
    finally:
        application.close()
    assert inside - {None} == AGGREGATE_TOPICS - SINCE_STORE_V1
    assert snapshot_topics == {"domain.case:Case"}


def case_ids_in(application: CaseTrail) -> list[UUID]:
    reported = (get_topic(Case.ClueReported),)  # type: ignore[attr-defined]
    return [UUID(str(n.originator_id)) for n in application.notifications(topics=reported)]


def test_the_old_store_opens_reads_and_verifies(old_home: Path) -> None:
    application = open_store(old_home)
    try:
        case_ids = case_ids_in(application)
        assert len(case_ids) == 14
        for case_id in case_ids:
            answer = application.read_case(case_id, COORDINATOR, Purpose.CONSULTATION, "req-v1")
            assert answer["id"] == str(case_id)
        versions: list[int] = [application.repository.get(c).version for c in case_ids]
        assert max(versions) > 20  # the longest file loads through its snapshot
        assert [u.unit_id for u in application.units()] == ["chengguan-police-station"]
        assert len(application.pending_break_glass_reviews()) == 0
    finally:
        application.close()

    result = casetrail(old_home, ROOT, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("intact:"), result.stdout


def casetrail(home: Path, tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASETRAIL_")}
    environ |= {"CASETRAIL_HOME": str(home), "PYTHONPATH": str(tree)}
    return subprocess.run(
        [CASETRAIL, *args],
        env=environ,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- a domain module moved: the old store still reads, through domain/topics.py -----------------

READ_EVERY_CASE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from uuid import UUID

    # The development install's finder would load a module missing from this copy from the
    # main tree instead: as in a real install, a module that is not here must not be found.
    sys.meta_path = [f for f in sys.meta_path if "__editable__" not in f.__module__]

    from domain.access import Actor, CaseAccessed
    from domain.application import CaseTrail
    from domain.case_file import Case
    from domain.taxonomy import Purpose, Role
    from domain.topics import topics_of
    from eventsourcing.utils import get_topic
    from gateway.store.eventstore import store_environment

    home = Path(sys.argv[1])
    key = (home / "keys" / "event.key").read_text().strip()
    app = CaseTrail(env=store_environment(f"sqlite:///{home / 'casetrail.sqlite'}", [key]))
    actor = Actor("coordinator-1", Role.COORDINATOR, "chengguan-governance-office",
                  "chengguan-street")
    ids = [
        UUID(str(n.originator_id))
        for n in app.notifications()
        if n.topic.endswith(":Case.ClueReported")
    ]
    for case_id in ids:
        answer = app.read_case(case_id, actor, Purpose.CONSULTATION, "req-moved")
        assert answer["id"] == str(case_id)
    # Selecting by today's topic alone misses the old events; topics_of names both.
    today = len(list(app.notifications(topics=(get_topic(Case.ClueReported),))))
    both = len(list(app.notifications(topics=topics_of(Case.ClueReported))))
    app.close()
    print(f"read {len(ids)} cases; today's topic selects {today}, topics_of {both}")
    """
)


def moved_tree(tmp_path: Path, *, registered: bool) -> Path:
    """A copy of the tree with domain/case.py moved to domain/case_file.py, every import of it
    rewritten, and (when `registered`) the old module registered in domain/topics.py."""
    tree = tmp_path / "tree"
    for package in ("domain", "projections", "gateway"):
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (tree / "domain" / "case.py").rename(tree / "domain" / "case_file.py")
    for path in tree.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\bdomain\.case\b", "domain.case_file", text), encoding="utf-8")
    if registered:
        with (tree / "domain" / "topics.py").open("a", encoding="utf-8") as source:
            source.write("\nimport domain.case_file\n\nmoved('domain.case', domain.case_file)\n")
    (tree / "read_every_case.py").write_text(READ_EVERY_CASE, encoding="utf-8")
    return tree


def read_every_case(tree: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(tree / "read_every_case.py"), str(home)],
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_moved_domain_module_still_reads_the_old_store(tmp_path: Path, old_home: Path) -> None:
    tree = moved_tree(tmp_path, registered=True)
    result = read_every_case(tree, old_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "read 14 cases; today's topic selects 0, topics_of 14"
    verified = casetrail(old_home, tree, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_without_the_registration_the_moved_module_cannot_read_it(
    tmp_path: Path, old_home: Path
) -> None:
    tree = moved_tree(tmp_path, registered=False)
    result = read_every_case(tree, old_home)
    assert result.returncode != 0
    # The row's topic, or the aggregate's inside a snapshot: either names the old module.
    assert "Failed to resolve topic 'domain.case:" in result.stderr, result.stderr
