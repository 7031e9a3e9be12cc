"""Canary: the read models hold no identifying or sensitive value in clear, yet serve it.

Files are reported and worked through the real API with distinctive school, village, task,
notes and reasons, and the sensitive subtypes of both sensitive categories; after the
projections run, the read models' bytes (SQLite file and its WAL; PostgreSQL tables' text and
data files) are searched for each planted value: none is found. The ledger still shows them to
an authorised reader, its filters (school, village, sensitive subtypes, a code under two
categories) still find the files, and the quarterly report counts them. A store in the earlier
layout, with plaintext in it, opens, is rebuilt, and keeps none of that plaintext; a store built
under another key is rebuilt too.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from domain.application import CaseTrail
from domain.clock import local_today
from domain.taxonomy import SUBTYPES, Category, Role
from gateway.settings import Settings
from projections.readmodels import SCHEMA_TABLE, VIEW_NAMES, ReadModelConfig, ReadModels
from projections.sealed import ReadModelKeys, SealedValueError
from tests.conftest import PG_DSN, TokenFactory
from tests.domain.builders import register_units
from tests.integration.planted import planted_case
from tests.projections.conftest import readmodel_env
from tests.projections.test_privacy import _postgres_bytes, _sqlite_bytes, readmodels_of
from tests.projections.workload import Workload

OFFICE = "chengguan-governance-office"
REPORTER_UNIT = "dongshan-village"
POLICE = "chengguan-police-station"

# Every subtype of the sensitive categories, each planted on some file: none may be readable.
SENSITIVE = [
    (str(category), code)
    for category in (Category.MENTAL_HEALTH, Category.UNLAWFUL_HARM)
    for code in SUBTYPES[category]
]


def _plant(client: TestClient, auth: TokenFactory, tag: str) -> dict[str, Any]:
    """Files with distinctive values, reported and worked through the API; what was planted."""
    planted: dict[str, Any] = {
        "schools": [f"金丝雀学校{tag}甲", f"金丝雀中学{tag}乙"],
        "villages": [f"canary-{tag}-north", f"canary-{tag}-south"],
        "task": f"金丝雀任务{tag}",
        "notes": f"金丝雀回访{tag}",
        "decision": f"金丝雀会商{tag}",
        "close_note": f"金丝雀结案{tag}",
        "cases": {},
    }
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    application = client.app.state.services.application  # type: ignore[attr-defined]
    register_units(application, POLICE, *planted["villages"])
    # Two sensitive subtypes per file, so that every one of them is planted somewhere; and one
    # file with maltreatment (虐待) under growth_environment only, the code of two categories.
    pairs = [SENSITIVE[i : i + 2] for i in range(0, len(SENSITIVE), 2)]
    pairs.append([("growth_environment", "maltreatment")])
    for number, issues in enumerate(pairs):
        school = planted["schools"][number % 2]
        village = planted["villages"][number % 2]
        # Every other file is reported by its village's own committee, whose unit code is the
        # village's; the others by another village's.
        unit = village if number % 2 else REPORTER_UNIT
        body = planted_case(unit, seed=900 + number).body
        body["minor"]["school"] = school
        body["minor"]["village"] = village
        body["issues"] = [{"category": c, "subtype": s} for c, s in issues]
        body["risk"] = "urgent"  # above every subtype's floor
        created = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, unit))
        assert created.status_code == 201, created.text
        case_id = created.json()["id"]
        planted["cases"][case_id] = {
            "school": school,
            "village": village,
            "issues": issues,
            "unit": unit,
        }
        found_on = date.fromisoformat(body["found_on"])
        steps: list[tuple[str, dict[str, Any]]] = [
            (
                "consultations",
                {
                    "held_on": found_on.isoformat(),
                    "participants": [OFFICE],
                    "decision": planted["decision"],
                },
            ),
            (
                "assignments",
                {
                    "unit": POLICE,
                    "function": "judicial",
                    "task": planted["task"],
                    "due_on": (local_today() + timedelta(days=10)).isoformat(),
                },
            ),
            (
                # The village committee takes a task too (family protection).
                "assignments",
                {
                    "unit": village,
                    "function": "family",
                    "task": planted["task"],
                    "due_on": (local_today() + timedelta(days=20)).isoformat(),
                },
            ),
            ("follow-ups", {"visited_on": local_today().isoformat(), "notes": planted["notes"]}),
        ]
        if number == 0:
            steps.append(("closure", {"reason": "resolved", "note": planted["close_note"]}))
        for path, step in steps:
            done = client.post(f"/v1/cases/{case_id}/{path}", json=step, headers=coordinator)
            assert done.status_code in (200, 201), (path, done.text)
    return planted


def _needles(planted: dict[str, Any]) -> dict[str, bytes]:
    found = {
        f"{what} {value}": value.encode()
        for what in ("schools", "villages")
        for value in planted[what]
    }
    for what in ("task", "notes", "decision", "close_note"):
        found[what] = planted[what].encode()
    # The codes of the sensitive subtypes (none of them is also an operational code, but
    # maltreatment, planted under growth_environment in clear on purpose).
    operational = {
        code
        for c in SUBTYPES
        if str(c) not in {"mental_health", "unlawful_harm"}
        for code in SUBTYPES[c]
    }
    for category, code in SENSITIVE:
        if code not in operational:
            found[f"{category}.{code}"] = f'"{code}"'.encode()
            found[f"{category}.{code} bare"] = code.encode()
        found[f"{category}.{code} label"] = SUBTYPES[Category(category)][code].encode()
    return found


def _stored(settings: Settings, readmodels: ReadModels) -> bytes:
    if settings.store_kind == "sqlite":
        return _sqlite_bytes(settings.home)
    return _postgres_bytes(settings.database_url.rsplit("schema=", 1)[1], readmodels)


def test_canary_values_are_not_in_the_read_models_yet_are_shown_filtered_and_counted(
    client: TestClient, auth: TokenFactory, settings: Settings
) -> None:
    readmodels = readmodels_of(client)
    tag = uuid.uuid4().hex[:10]
    planted = _plant(client, auth, tag)
    Workload(client.app.state.services.application, seed=77).cases(6)  # type: ignore[attr-defined]
    readmodels.catch_up()

    closed = next(iter(planted["cases"]))  # the first file was closed: its tasks ended
    stored = _stored(settings, readmodels)
    for what, needle in _needles(planted).items():
        assert needle not in stored, f"{what} readable in the read models"
    # The control: the search does see what the read models hold in clear.
    for held in (*planted["cases"], "growth_environment", "maltreatment", "urgent"):
        assert held.encode() in stored, f"the search missed {held!r}: it proves nothing"

    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")

    def ids(**params: Any) -> set[str]:
        response = client.get("/v1/ledger", params={**params, "per_page": 200}, headers=headers)
        assert response.status_code == 200, response.text
        return {r["id"] for r in response.json()["rows"]}

    # An authorised reader sees the values in clear.
    response = client.get("/v1/ledger", params={"per_page": 200}, headers=headers)
    rows = {r["id"]: r for r in response.json()["rows"]}
    for case_id, expected in planted["cases"].items():
        row = rows[case_id]
        assert row["school"] == expected["school"]
        assert row["village"] == expected["village"]
        assert row["reporting_unit"] == expected["unit"]
        assert {a["unit"] for a in row["assignments"]} == {POLICE, expected["village"]}
        assert row["gender"] in ("male", "female") and isinstance(row["age"], int)
        assert [(i["category"], i["subtype"]) for i in row["issues"]] == expected["issues"]

    # Filters hash the value the way the column holds it.
    cases = planted["cases"]
    for school in planted["schools"]:
        assert ids(school=school) == {c for c, v in cases.items() if v["school"] == school}
    for village in planted["villages"]:
        assert ids(village=village) == {c for c, v in cases.items() if v["village"] == village}
    for category, code in SENSITIVE:
        expected_ids = {c for c, v in cases.items() if (category, code) in v["issues"]}
        assert expected_ids, (category, code)
        assert ids(category=category, subtype=code) >= expected_ids, (category, code)
        assert ids(category=category, subtype=code) & set(cases) == expected_ids
    # A code under two categories: each category alone, or either without one.
    harm = {c for c, v in cases.items() if ("unlawful_harm", "maltreatment") in v["issues"]}
    home = {c for c, v in cases.items() if ("growth_environment", "maltreatment") in v["issues"]}
    assert harm and home
    assert ids(category="unlawful_harm", subtype="maltreatment") & set(cases) == harm
    assert ids(category="growth_environment", subtype="maltreatment") & set(cases) == home
    assert ids(subtype="maltreatment") & set(cases) == harm | home
    assert ids(subtype="self_harm") & set(cases) == {
        c for c, v in cases.items() if ("mental_health", "self_harm") in v["issues"]
    }
    assert ids(category="mental_health") & set(cases) == {
        c for c, v in cases.items() if any(i[0] == "mental_health" for i in v["issues"])
    }
    # A reporter's scope (its unit, held as a token) still lists its own files; a unit
    # member's (its unit's assignments, tokens too) the files its unit holds.
    for unit in (REPORTER_UNIT, planted["villages"][1]):
        mine = client.get(
            "/v1/ledger",
            params={"per_page": 200},
            headers=auth(Role.REPORTER, unit, purpose="follow_up"),
        )
        assert {r["id"] for r in mine.json()["rows"]} & set(cases) == {
            c for c, v in cases.items() if v["unit"] == unit
        }
    for village in planted["villages"]:
        held = client.get(
            "/v1/ledger",
            params={"per_page": 200},
            headers=auth(Role.UNIT_MEMBER, village, purpose="intervention"),
        )
        # A closed file's ended assignments stay in sight for the grace period.
        expected_held = {c for c, v in cases.items() if v["village"] == village}
        assert {r["id"] for r in held.json()["rows"]} == expected_held
        tasks = client.get(
            "/v1/worklists/assignments", params={"unit": village}, headers=headers
        ).json()["items"]
        assert {i["case_id"] for i in tasks} == expected_held - {closed}
        assert {i["unit"] for i in tasks} == {village}
    elsewhere = client.get(
        "/v1/ledger",
        params={"per_page": 200},
        headers=auth(Role.REPORTER, "xihe-village", purpose="follow_up"),
    )
    assert not set(cases) & {r["id"] for r in elsewhere.json()["rows"]}

    # Worklists show the village and units; the report counts subtypes and villages.
    listed = client.get("/v1/worklists/assignments", headers=headers).json()["items"]
    assert {i["village"] for i in listed if i["case_id"] in cases} == set(planted["villages"])
    assert {i["unit"] for i in listed if i["case_id"] in cases} == {POLICE, *planted["villages"]}
    report = client.get("/v1/reports/quarterly", headers=headers).json()
    subtypes = {(c["category"], c["code"]): c["count"] for c in report["by_subtype"]}
    counted = Counter(pair for v in cases.values() for pair in v["issues"])
    for pair, count in counted.items():
        assert subtypes[pair] >= count, pair
    by_village = {c["code"]: c["count"] for c in report["by_village"]}
    assert {v: by_village.get(v) for v in planted["villages"]} == dict(
        Counter(v["village"] for v in cases.values())
    )
    north = client.get(
        "/v1/reports/quarterly", params={"village": planted["villages"][0]}, headers=headers
    ).json()
    assert north["files"] == sum(
        1 for v in cases.values() if v["village"] == planted["villages"][0]
    )


# --- a store in the earlier layout, and a store under another key ---------------------------------

# The tables as the code before sealing made them (commit 3e3facf's parent), with plaintext.
_OLD_LAYOUT = (
    "CREATE TABLE ledger_cases (case_id TEXT PRIMARY KEY, street TEXT NOT NULL, "
    "village TEXT NOT NULL, reporting_unit TEXT NOT NULL, school TEXT NOT NULL, "
    "name_masked TEXT NOT NULL, name_index TEXT NOT NULL, id_masked TEXT NOT NULL, "
    "id_index TEXT NOT NULL, gender TEXT NOT NULL, age BIGINT NOT NULL, issues TEXT NOT NULL, "
    "risk TEXT NOT NULL, status TEXT NOT NULL, found_on TEXT NOT NULL)",
    "CREATE INDEX ledger_cases_village ON ledger_cases (street, village, found_on DESC, case_id)",
    "CREATE TABLE ledger_issues (case_id TEXT NOT NULL, category TEXT NOT NULL, "
    "subtype TEXT NOT NULL, PRIMARY KEY (case_id, category, subtype))",
    "CREATE TABLE ledger_assignments (assignment_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, "
    "unit TEXT NOT NULL, function TEXT NOT NULL, due_on TEXT NOT NULL, "
    "assigned_at TEXT NOT NULL, acknowledged_at TEXT, ended_at TEXT, outcome TEXT)",
    "CREATE TABLE ledger_tracking (application_name TEXT, notification_id INTEGER, "
    "PRIMARY KEY (application_name)) WITHOUT ROWID",
    "CREATE TABLE report_cases (case_id TEXT PRIMARY KEY, street TEXT NOT NULL, "
    "village TEXT NOT NULL, status TEXT NOT NULL, risk TEXT NOT NULL, issues TEXT NOT NULL)",
    "CREATE TABLE report_history (case_id TEXT NOT NULL, version BIGINT NOT NULL, "
    "at TEXT NOT NULL, event TEXT NOT NULL, street TEXT NOT NULL, village TEXT NOT NULL, "
    "status TEXT NOT NULL, risk TEXT NOT NULL, issues TEXT NOT NULL, "
    "PRIMARY KEY (case_id, version))",
    "CREATE TABLE reports_tracking (application_name TEXT, notification_id INTEGER, "
    "PRIMARY KEY (application_name)) WITHOUT ROWID",
)


def _old_store(
    store_url: str, env: dict[str, str], application_name: str, head: int, canary: str
) -> None:
    """Read-model tables as the earlier code left them: plaintext rows, at the head."""
    issues = '[["mental_health", "self_harm"]]'
    village, school = f"canary-{canary}-village", f"旧学校{canary}"
    statements: list[tuple[str, tuple[Any, ...]]] = [(s, ()) for s in _OLD_LAYOUT]
    for _ in range(50):  # enough rows for several pages, each with the canary
        statements.append(
            (
                "INSERT INTO ledger_cases VALUES (?, 'chengguan-street', ?, 'dongshan-village', "
                "?, '张*明', 'x', '330102********1234', 'y', 'female', 12, ?, 'high', "
                "'intervening', '2026-01-01')",
                (str(uuid.uuid4()), village, school, issues),
            )
        )
        statements.append(
            (
                "INSERT INTO report_history VALUES (?, 1, 'x', 'ClueReported', "
                "'chengguan-street', ?, 'awaiting_consultation', 'high', ?)",
                (str(uuid.uuid4()), village, issues),
            )
        )
    for tracking in ("ledger_tracking", "reports_tracking"):
        statements.append((f"INSERT INTO {tracking} VALUES (?, ?)", (application_name, head)))
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(env["SQLITE_DBNAME"]) as db:
            db.execute("PRAGMA journal_mode=WAL")
            for statement, params in statements:
                db.execute(statement, params)
        return
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {env['POSTGRES_SCHEMA']}")
        for statement, params in statements:
            sql = statement.replace(" WITHOUT ROWID", "").replace("?", "%s")
            conn.execute(sql, params)


def _file_bytes(path: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def _readmodel_bytes(store_url: str, env: dict[str, str], readmodels: ReadModels) -> bytes:
    if store_url.startswith("sqlite:///"):
        return _file_bytes(Path(env["SQLITE_DBNAME"]))
    schema = env["POSTGRES_SCHEMA"]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    # No table of the earlier layout is left (its files go with it).
    assert not [c for c in columns if c[1] in ("school", "village", "gender", "age")], columns
    return _postgres_bytes(schema, readmodels)


def test_a_store_in_the_earlier_layout_opens_is_rebuilt_and_keeps_no_plaintext(
    application: CaseTrail, store_url: str, tmp_path: Path, index_key: bytes
) -> None:
    workload = Workload(application, seed=78)
    workload.cases(5)
    head = application.recorder.max_notification_id() or 0
    env = readmodel_env(store_url, tmp_path)
    canary = uuid.uuid4().hex[:10]
    _old_store(store_url, env, application.name, head, canary)
    if store_url.startswith("sqlite:///"):
        held = _file_bytes(Path(env["SQLITE_DBNAME"]))
        assert canary.encode() in held, "the old store holds no plaintext: proves nothing"

    readmodels = ReadModels(application, ReadModelConfig(env=env, index_key=index_key))
    try:
        # Rebuilt from zero: the old position is gone, the followers refill every file.
        assert readmodels.follower("ledger").position() == 0
        assert readmodels.follower("reports").position() == 0
        readmodels.catch_up()
        assert {row[0] for row in readmodels.ledger.dump("ledger_cases")} == {
            str(c) for c in workload.bodies
        }
        stored = _readmodel_bytes(store_url, env, readmodels)
        for needle in (canary, "旧学校", "self_harm", "330102********1234", "张*明"):
            assert needle.encode() not in stored, needle
        assert str(next(iter(workload.bodies))).encode() in stored, "the search proves nothing"
        # Opening it again changes nothing: the layout is now the current one.
        position = readmodels.follower("ledger").position()
    finally:
        readmodels.close()
    again = ReadModels(application, ReadModelConfig(env=env, index_key=index_key))
    try:
        assert again.follower("ledger").position() == position
    finally:
        again.close()


class _Log:
    """Records what the read models log."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def seen(self) -> set[tuple[str, str, Any, Any]]:
        return {(lv, e, f.get("projection"), f.get("key_changed")) for lv, e, f in self.events}

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.events.append((level, event, fields))


def test_a_read_model_built_under_another_key_is_rebuilt(
    application: CaseTrail, open_readmodels: Any, store_url: str, tmp_path: Path
) -> None:
    workload = Workload(application, seed=79)
    workload.cases(4)
    first = open_readmodels()
    first.catch_up()
    env = readmodel_env(store_url, tmp_path)
    other_key = bytes(range(32))
    log = _Log()
    second = ReadModels(application, ReadModelConfig(env=env, index_key=other_key), log=log)
    try:
        # The rebuild is said, the key id is not.
        assert ("warning", "projection_layout_set", "ledger", True) in log.seen
        ids = (first.keys.key_id, second.keys.key_id)
        assert log.events and all(k not in repr(e) for e in log.events for k in ids)
        assert second.follower("ledger").position() == 0
        second.catch_up()
        with second.ledger.reading() as db:
            (row,) = db.execute("SELECT * FROM {ledger_cases} ORDER BY case_id LIMIT 1")
            fingerprints = db.execute(f"SELECT * FROM {{{SCHEMA_TABLE}}}")
        # The rows open with the new key only.
        opened = ReadModelKeys(other_key).open("ledger_cases", row["case_id"], row["sealed"])
        assert opened["village"] == workload.bodies[uuid.UUID(row["case_id"])]["minor"]["village"]
        with pytest.raises(SealedValueError):
            first.keys.open("ledger_cases", row["case_id"], row["sealed"])
        assert {f["view_name"] for f in fingerprints} == set(VIEW_NAMES)
        assert all(other_key.hex() not in str(f) for f in fingerprints)
    finally:
        second.close()
