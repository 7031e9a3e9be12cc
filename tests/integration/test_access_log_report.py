"""The investigation report with the access-log read model (issue 15, for issue 13's benchmark),
from a real store on SQLite and PostgreSQL:

- the report document is the same with the read model wired as without it (the case's access
  events from the view instead of the store), and its integrity statement, which now checks
  the case stream as `gather` read it instead of reading it again, is the same, tampering
  included (a case event altered: the gathered history fails, the stream is read again);
- the timeline table built in Python (`gateway.reports.html.timeline_table`) is, byte for
  byte, what the template's loop rendered, escaping and folded repeats included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest

from domain.application import CaseTrail
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.evidence.maintainer import Evidence, EvidenceSettings
from gateway.reports.document import build_document
from gateway.reports.html import local_time, timeline_rows, timeline_table
from gateway.settings import Settings
from gateway.store.eventstore import store_environment
from projections.compliance.access_log import CaseLog
from projections.readmodels import ReadModelConfig, ReadModels
from tests.evidence.helpers import Tamper
from tests.projections.test_access_log import History
from tests.reports.scenario import INVESTIGATOR, investigated_case

BY = {"user": INVESTIGATOR, "role": "investigator", "unit": "county-inspection"}
# What changes from one build of the same document to the next.
_MOMENTS = ("generated_at", "checked_at", "time", "seq", "as_of")


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[tuple[CaseTrail, Evidence, ReadModels]]:
    application = open_application(settings)
    key = keyring.load_private_key(settings.keys_dir / keyring.SERVICE_KEY, "service key")
    evidence = Evidence(application, key, EvidenceSettings())
    url = settings.database_url
    env = store_environment(
        f"sqlite:///{tmp_path / 'rm.sqlite'}" if url.startswith("sqlite") else url, None
    )
    readmodels = ReadModels(application, ReadModelConfig(env=env, index_key=os.urandom(32)))
    try:
        yield application, evidence, readmodels
    finally:
        readmodels.close()
        evidence.close()
        application.close()


def _steady(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("…" if k in _MOMENTS else _steady(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return value


def _document(application: CaseTrail, evidence: Evidence, investigation_id: Any) -> Any:
    investigation = application.investigation(investigation_id)
    return _steady(
        build_document(
            application,
            evidence,
            investigation,
            generated_by=BY,
            consultation_due=timedelta(hours=24),
        )
    )


def test_the_document_is_the_same_with_the_read_model(
    stack: tuple[CaseTrail, Evidence, ReadModels], settings: Settings
) -> None:
    application, evidence, readmodels = stack
    application.store_events(History(seed=1507).events(40))
    scenario = investigated_case(application)
    application.store_events(History(seed=1508).events(40))
    scanned = _document(application, evidence, scenario.investigation_id)
    assert scanned["integrity"]["status"] == "intact"
    readmodels.follower("accesses").catch_up()
    application.use_access_records(CaseLog(application, application.name, readmodels.accesses))
    assert _document(application, evidence, scenario.investigation_id) == scanned

    # One event of the case altered: the same statement, naming it, either way.
    evidence.checkpoint_now()
    position = next(
        n.id
        for n in application.notifications()
        if n.originator_id in (scenario.case_id, str(scenario.case_id))
    )
    store = Tamper(settings)
    store.drop_triggers()
    store.modify(position)
    tampered = _document(application, evidence, scenario.investigation_id)
    assert tampered["integrity"]["status"] == "tampered"
    assert tampered["cases"][0]["unreadable"]
    application.use_access_records(None)
    assert _document(application, evidence, scenario.investigation_id) == tampered


def _template_rows(rows: list[dict[str, Any]]) -> str:
    """The template's loop as it was before `timeline_table` replaced it."""
    environment = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters["local_time"] = local_time
    template = environment.from_string(
        "    {% for entry in rows %}\n"
        "      <tr><td>{{ entry.at | local_time }}</td><td>{{ entry.position if entry.position "
        'is not none else "—" }}</td><td>{{ entry.label_zh }}</td><td><span class="id">{{ '
        'entry.user or "—" }}</span></td><td><span class="id">{{ entry.unit or "—" }}</span>'
        '</td><td>{{ entry.detail_zh or "" }}{% if entry.repeats %}{% if entry.detail_zh %}；'
        "{% endif %}其后又{{ entry.label_zh }} {{ entry.repeats }} 次，末次 {{ entry.last_at | "
        "local_time }}{% endif %}</td></tr>\n"
        "    {% else %}\n"
        '      <tr><td colspan="6" class="none">无记录。</td></tr>\n'
        "    {% endfor %}\n"
    )
    return template.render(rows=rows)


def test_the_timeline_table_is_what_the_template_rendered() -> None:
    entries: list[dict[str, Any]] = [
        {
            "at": "2026-03-01T01:02:03.000004+00:00",
            "position": 7,
            "kind": "clue_reported",
            "label_zh": "报告线索",
            "lane": "change",
            "user": "<script>alert('x')</script>",
            "unit": 'a&b"c',
            "detail_zh": "状态：— → 待会商",
        },
        *(
            {
                "at": f"2026-03-0{day}T10:00:00+00:00",
                "position": 10 + day,
                "kind": "case_accessed",
                "label_zh": "查阅",
                "lane": "access",
                "user": "u-1",
                "unit": "unit-1",
                "detail_zh": "",
            }
            for day in (2, 3, 4)
        ),
        {
            "at": "not an instant",
            "position": None,
            "kind": "notice_published",
            "label_zh": "通知<已发出>",
            "lane": "notice",
            "user": "",
            "unit": None,
            "detail_zh": None,
        },
        {"at": "2026-03-05", "position": 0, "label_zh": "日期", "lane": "deadline"},
    ]
    rows = timeline_rows(entries)
    assert any(r["repeats"] for r in rows)
    assert str(timeline_table(rows)) == _template_rows(rows)
    assert str(timeline_table([])) == _template_rows([])
