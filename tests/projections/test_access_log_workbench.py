"""The workbench's `gather` with the access-log read model (issue 15, for issue 13's report):
the case's access events come from the view, merged by position with the events read from the
store, and every analysis (timeline, knowledge matrix, deadlines) is exactly what the scan of
every access event gives, on SQLite and PostgreSQL, with the view caught up or lagging (its
tail read from the store); and no access event is read from the store at all."""

from __future__ import annotations

from typing import Any

from domain.application import CaseTrail
from projections.compliance.access_log import CaseLog
from projections.investigation import deadlines, gather, knowledge, timeline
from projections.investigation.history import ACCESS_TOPICS
from tests.projections.investigation_scenario import play
from tests.projections.test_access_log import History


def analyses(app: CaseTrail, case_id: Any, **kwargs: Any) -> dict[str, Any]:
    history = gather(app, case_id, **kwargs)
    now = history.steps[-1].at
    return {
        "timeline": timeline(history),
        "knowledge": knowledge(history),
        "deadlines": deadlines(history, now=now),
        "positions": [s.position for s in history.steps],
        "stored": [n.id for n in history.stored],
    }


def test_gather_with_the_read_model_equals_the_scan_of_every_access_event(
    application: CaseTrail, open_readmodels: Any
) -> None:
    scenario = play(application)
    # Other files' accesses around it.
    application.store_events(History(seed=1506).events(80))
    readmodels = open_readmodels(batch_size=9)
    log = CaseLog(application, application.name, readmodels.accesses)
    scanned = analyses(application, scenario.case_id)
    assert any(e["kind"] == "break_glass_accessed" for e in scanned["timeline"]["entries"])
    assert any(e["kind"] == "access_denied" for e in scanned["timeline"]["entries"])
    # The view lagging (all of it in the tail), half followed, then caught up.
    assert analyses(application, scenario.case_id, accesses=log) == scanned
    readmodels.follower("accesses").step()
    assert analyses(application, scenario.case_id, accesses=log) == scanned
    readmodels.catch_up()
    assert analyses(application, scenario.case_id, accesses=log) == scanned
    # Wired into the application, `gather` takes it by itself.
    application.use_access_records(log)
    topics: list[str] = []
    decode = application.mapper.to_domain_event

    def counted(notification: Any) -> Any:
        topics.append(notification.topic)
        return decode(notification)

    application.mapper.to_domain_event = counted  # type: ignore[method-assign,assignment]
    try:
        assert analyses(application, scenario.case_id) == scanned
    finally:
        del application.mapper.to_domain_event
    assert topics, "the case's own events are decoded"
    assert not set(topics) & ACCESS_TOPICS, "no access event read from the store"
