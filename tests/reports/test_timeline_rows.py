"""The report's timeline rows built straight from a gathered history
(`gateway.reports.document.timeline_rows`) equal the rows made from the workbench's full
timeline entries (`timeline_row` of each entry of `projections.investigation.timeline`), row
for row: on the scripted scenario (every kind of step: changes, reads granted and refused,
notices and receipts, signatures, deadline facts, orders) and on a long seeded file whose
status and risk move back and forth."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain import commands as cmd
from domain.application import CaseTrail
from domain.taxonomy import Purpose
from gateway.reports.document import timeline_row, timeline_rows
from gateway.store.eventstore import new_key_text, store_environment
from projections.investigation import gather, timeline
from tests.domain import builders as b
from tests.projections.investigation_scenario import play


@pytest.fixture
def app(tmp_path: Path) -> Iterator[CaseTrail]:
    application = CaseTrail(
        env=store_environment(f"sqlite:///{tmp_path / 'c.sqlite'}", [new_key_text()])
    )
    try:
        yield application
    finally:
        application.close()


def _both(app: CaseTrail, case_id: UUID) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    history = gather(app, case_id)
    expected = [timeline_row(entry) for entry in timeline(history)["entries"]]
    return timeline_rows(history), expected


def test_the_scenario_row_for_row(app: CaseTrail) -> None:
    scenario = play(app)
    rows, expected = _both(app, scenario.case_id)
    assert rows == expected
    lanes = {row["lane"] for row in rows}
    # The scenario reaches the changes, reads, refusals and notices, and both kinds of actor.
    assert {"change", "access", "refusal", "notice"} <= lanes
    assert any(row["user"] == "None" and row["unit"] for row in rows)  # a unit acting
    assert any(row["detail_zh"].startswith("状态：—") for row in rows)  # the report itself
    assert any("状态：" in row["detail_zh"] for row in rows[1:])  # a change of status


def _assessing(command: cmd.AssessRisk) -> Callable[[Any], None]:
    return lambda case: case.assess_risk(command, by=b.COORDINATOR.as_record())


def test_a_long_file_whose_state_moves_back_and_forth(app: CaseTrail) -> None:
    case_id = app.report_clue(b.report_clue(), b.REPORTER)
    coordinator = b.COORDINATOR.as_record()
    rng = random.Random(20261202)
    for n in range(80):
        draw = rng.random()
        if draw < 0.3:
            command = cmd.AssessRisk(
                level=rng.choice(["low", "medium", "high", "urgent"]), reason="复评"
            )
            app.change_case(case_id, b.COORDINATOR, "assess_risk", _assessing(command))
        elif draw < 0.45:
            app.change_case(
                case_id,
                b.COORDINATOR,
                "close",
                lambda c: c.close(cmd.CloseCase(reason="resolved", note="结案"), by=coordinator),
            )
            app.change_case(
                case_id,
                b.COORDINATOR,
                "reopen",
                lambda c: c.reopen(cmd.ReopenCase(reason="情况反复"), by=coordinator),
            )
        else:
            app.read_case(case_id, b.COORDINATOR, Purpose.CONSULTATION, f"r-{n}")
    rows, expected = _both(app, case_id)
    assert rows == expected
    assert len(rows) > 80
    assert sum("状态：" in row["detail_zh"] for row in rows) >= 4
    assert sum("风险：" in row["detail_zh"] for row in rows[1:]) >= 4
