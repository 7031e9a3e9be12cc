"""The canary leak scan: personal data planted through the API is found nowhere in clear outside
the encrypted store.

Guarantee: a case whose minor's name, ID number, school, guardian's name and phone, description,
and every free text of its later commands (consultation decision, assignment task, intervention
and follow-up notes, risk, escalation, break-glass, order, review, closure and reopening texts)
are distinctive canaries (`tests.integration.canaries`), once read by several roles, listed in
ledger pages, looked up by name and ID number (query string and body), exported (xlsx, csv,
json, masked and full), counted in worklists and reports, bundled as evidence, and carried by
bad requests (unknown keys holding and named by a canary, a canary where an enum, a date, a UUID,
a purpose, a token or JSON is expected) leaves:
- no canary in any file under `CASETRAIL_HOME` after a SIGTERM stop (SQLite files with their
  -wal and -shm as they are; keys included), nor in any row of the PostgreSQL schema
  (`SELECT t::text`), in any of the forms `canaries.encodings` lists;
- no canary in the service's own output (stdout and stderr, all of its log lines), in clear or
  percent-encoded;
- no canary in any error answer, nor in any answer to a request that carried canaries where
  they do not belong (body and headers);
- no name, ID number, phone, guardian name or sensitive text in the masked answers (ledger
  pages, lookups, masked exports, worklists, reports).
And, so that the scan can fail the other way, the authorised reads did show every canary (the
case read, the full-identity export, the evidence bundle, the compliance list).

How: `casetrail serve` in a process of its own (`tests.integration.live_service`), on SQLite (the
embedded default) and on PostgreSQL (a schema of its own; fails, not skips, when CI=true).
"""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
import pytest
from openpyxl import load_workbook

from domain.clock import local_today
from tests.conftest import PG_DSN, pg_url, require_postgres
from tests.integration.canaries import Canaries, found_in, plant
from tests.integration.live_service import LiveService, cli, register_units_before_start

STREET: Final = "chengguan-street"
OFFICE: Final = "chengguan-governance-office"
VILLAGE: Final = "dongshan-village"
POLICE: Final = "chengguan-police-station"
INVESTIGATOR: Final = "probe-investigator"

# What a masked answer (ledger rows, lookups, masked exports, worklists, reports) may show of
# the file: its school is an identity field those rows show in clear to whoever may see them.
MASKED_MAY_SHOW: Final = frozenset({"minor.school"})


@dataclass
class Probe:
    store: str
    service: LiveService
    canaries: Canaries
    case_id: str = ""
    authorised: dict[str, bytes] = field(default_factory=dict)
    masked: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, bytes] = field(default_factory=dict)
    exit_status: int | None = None
    schema: str | None = None

    def call(
        self,
        label: str,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        keep: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request; an answer of 400 or above (or any, with `keep`: a request that carries
        canaries where they do not belong) is kept, body and headers, for the scan."""
        answer = httpx.request(
            method, f"{self.service.base}{path}", headers=headers, timeout=60, **kwargs
        )
        if answer.status_code >= 400 or keep:
            kept = "\n".join(f"{k}: {v}" for k, v in answer.headers.items()).encode()
            self.errors[f"{label} -> {answer.status_code}"] = kept + b"\n\n" + answer.content
        return answer

    def ok(self, label: str, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        answer = self.call(label, method, path, headers, **kw)
        assert answer.status_code in (200, 201), f"{label}: {answer.status_code} {answer.text}"
        return answer


# --- planting and exercising --------------------------------------------------------------------


def _plant_case(probe: Probe, body: dict[str, Any], tokens: dict[str, str]) -> None:
    c, s = probe.canaries, probe.service
    reporter = s.headers(tokens["reporter"])
    coordinator = s.headers(tokens["coordinator"])
    police = s.headers(tokens["police"])
    today = local_today()
    case = probe.ok("report", "POST", "/v1/cases", reporter, json=body).json()["id"]
    probe.case_id = case
    on = f"/v1/cases/{case}"
    probe.ok(
        "consultation",
        "POST",
        f"{on}/consultations",
        coordinator,
        json={
            "held_on": today.isoformat(),
            "participants": [OFFICE, POLICE],
            "decision": c["consultation.decision"],
        },
    )
    probe.ok(
        "risk",
        "POST",
        f"{on}/risk-assessments",
        coordinator,
        json={"level": "urgent", "reason": c["risk.reason"]},
    )
    assignment = probe.ok(
        "assignment",
        "POST",
        f"{on}/assignments",
        coordinator,
        json={
            "unit": POLICE,
            "function": "judicial",
            "task": c["assignment.task"],
            "due_on": (today + timedelta(days=14)).isoformat(),
        },
    ).json()["assignment_id"]
    probe.ok("acknowledge", "POST", f"{on}/assignments/{assignment}/acknowledgement", police)
    probe.ok(
        "intervention",
        "POST",
        f"{on}/interventions",
        police,
        json={
            "assignment_id": assignment,
            "function": "judicial",
            "measure": "home_visit",
            "notes": c["intervention.notes"],
            "done_on": today.isoformat(),
        },
    )
    probe.ok(
        "letter",
        "POST",
        f"{on}/guardianship-letters",
        reporter,
        json={"guardian_index": 0, "reason": "parents_working_away", "signed_on": str(today)},
    )
    probe.ok(
        "follow-up",
        "POST",
        f"{on}/follow-ups",
        reporter,
        json={"visited_on": today.isoformat(), "notes": c["follow_up.notes"]},
    )
    probe.ok(
        "escalation",
        "POST",
        f"{on}/escalations",
        coordinator,
        json={"to_level": "street", "reason": c["escalation.reason"]},
    )
    outsider = s.headers(tokens["far_coordinator"])
    probe.ok(
        "break-glass",
        "POST",
        f"{on}/break-glass",
        outsider,
        json={"reason": c["break_glass.reason"]},
    )
    auditor = s.headers(tokens["auditor"], "compliance_review")
    pending = probe.ok("compliance list", "GET", "/v1/compliance/break-glass", auditor)
    probe.authorised["compliance list"] = pending.content
    access = next(i["access_id"] for i in pending.json()["items"] if i["case_id"] == case)
    probe.ok(
        "review",
        "POST",
        f"/v1/compliance/break-glass/{access}/review",
        s.headers(tokens["auditor"]),
        json={"outcome": "justified", "note": c["review.note"]},
    )
    probe.ok(
        "order",
        "POST",
        "/v1/investigation-orders",
        coordinator,
        json={
            "case_id": case,
            "investigator": INVESTIGATOR,
            "reason": c["order.reason"],
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
    )
    probe.ok(
        "end",
        "POST",
        f"{on}/assignments/{assignment}/end",
        coordinator,
        json={"outcome": "completed"},
    )
    probe.ok(
        "closure",
        "POST",
        f"{on}/closure",
        coordinator,
        json={"reason": "resolved", "note": c["closure.note"]},
    )
    probe.ok(
        "reopening", "POST", f"{on}/reopening", coordinator, json={"reason": c["reopening.reason"]}
    )


def _read_everything(probe: Probe, tokens: dict[str, str]) -> None:
    """Authorised reads by several roles, and the masked lists, exports, worklists, reports."""
    c, s, case = probe.canaries, probe.service, probe.case_id
    coordinator = s.headers(tokens["coordinator"], "consultation")
    supervisor = s.headers(tokens["supervisor"], "consultation")
    reporter = s.headers(tokens["reporter"], "follow_up")
    police = s.headers(tokens["police"], "intervention")
    investigator = s.headers(tokens["investigator"], "investigation")
    auditor = s.headers(tokens["auditor"], "compliance_review")
    reads = {
        "case read (coordinator)": (f"/v1/cases/{case}", coordinator, {}),
        "case read (supervisor)": (f"/v1/cases/{case}", supervisor, {}),
        "case read (reporter)": (f"/v1/cases/{case}", reporter, {}),
        "case read (unit member)": (f"/v1/cases/{case}", police, {}),
        "case read (investigator)": (f"/v1/cases/{case}", investigator, {}),
        "access log (auditor)": (f"/v1/cases/{case}/accesses", auditor, {}),
        "access log (investigator)": (f"/v1/cases/{case}/accesses", investigator, {}),
        "bundle (coordinator)": (f"/v1/evidence/cases/{case}/bundle", coordinator, {}),
        "bundle (investigator)": (f"/v1/evidence/cases/{case}/bundle", investigator, {}),
        "bundle without content": (
            f"/v1/evidence/cases/{case}/bundle",
            coordinator,
            {"content": "false"},
        ),
    }
    for fmt in ("xlsx", "csv", "json"):
        reads[f"export {fmt} with identity"] = (
            "/v1/ledger/export",
            coordinator,
            {"format": fmt, "identity": "true"},
        )
    for label, (path, headers, params) in reads.items():
        probe.authorised[label] = _content(probe.ok(label, "GET", path, headers, params=params))

    masked: dict[str, tuple[str, str, dict[str, str], dict[str, Any]]] = {}
    for who, headers in (("coordinator", coordinator), ("reporter", reporter), ("unit", police)):
        masked[f"ledger ({who})"] = ("GET", "/v1/ledger", headers, {})
        masked[f"ledger of the village ({who})"] = (
            "GET",
            "/v1/ledger",
            headers,
            {"params": {"village": VILLAGE, "category": "mental_health"}},
        )
        masked[f"ledger by school ({who})"] = (
            "GET",
            "/v1/ledger",
            headers,
            {"params": {"school": c["minor.school"][:64]}},
        )
        for fmt in ("xlsx", "csv", "json"):
            masked[f"masked export {fmt} ({who})"] = (
                "GET",
                "/v1/ledger/export",
                headers,
                {"params": {"format": fmt}},
            )
        for worklist in ("consultations", "assignments", "quarterly-updates"):
            masked[f"worklist {worklist} ({who})"] = (
                "GET",
                f"/v1/worklists/{worklist}",
                headers,
                {},
            )
    for who, headers in (("coordinator", coordinator), ("reporter", reporter)):
        masked[f"search by ID number ({who})"] = (
            "POST",
            "/v1/cases/search",
            headers,
            {"json": {"id_number": c["minor.id_number"]}},
        )
        masked[f"search by name ({who})"] = (
            "POST",
            "/v1/cases/search",
            headers,
            {"json": {"name": c["minor.name"]}},
        )
    masked["quarterly report"] = ("GET", "/v1/reports/quarterly", coordinator, {})
    masked["quarterly report of the village"] = (
        "GET",
        "/v1/reports/quarterly",
        supervisor,
        {"params": {"village": VILLAGE}},
    )
    for label, (method, path, headers, kw) in masked.items():
        probe.masked[label] = _content(probe.ok(label, method, path, headers, **kw))
    found = [
        label
        for label in ("search by ID number (coordinator)", "search by name (coordinator)")
        if case.encode() in probe.masked[label]
    ]
    assert len(found) == 2, f"the lookups did not find the planted case: {found}"


def _content(answer: httpx.Response) -> bytes:
    """An answer's bytes; an xlsx file's cells as text (its XML is compressed)."""
    if answer.content[:2] != b"PK":
        return answer.content
    book = load_workbook(io.BytesIO(answer.content), read_only=True)
    cells = [
        str(value)
        for sheet in book.worksheets
        for row in sheet.iter_rows(values_only=True)
        for value in row
        if value is not None
    ]
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        names = " ".join(archive.namelist())
    return ("\n".join(cells) + "\n" + names).encode()


def _bad_requests(probe: Probe, tokens: dict[str, str], body: dict[str, Any]) -> None:
    """Requests that carry the canaries where they do not belong: each answer is an error."""
    c, s, case = probe.canaries, probe.service, probe.case_id
    name, id_number, phone = c["minor.name"], c["minor.id_number"], c["guardian.phone"]
    wrong_check = id_number[:17] + ("0" if id_number[17] != "0" else "1")
    reporter = s.headers(tokens["reporter"])
    coordinator = s.headers(tokens["coordinator"], "consultation")

    def report_with(change: dict[str, Any], minor: dict[str, Any] | None = None) -> dict[str, Any]:
        changed = {**body, **change}
        if minor is not None:
            changed["minor"] = {**body["minor"], **minor}
        return changed

    bodies: dict[str, dict[str, Any]] = {
        "unknown key holding the name": report_with({"nickname": name}),
        "unknown key holding the ID number": report_with({}, {"id_card": id_number}),
        "unknown key that is the name": report_with({name: "x"}),
        "unknown key that is the ID number": report_with({}, {id_number: 1}),
        "phone as the risk": report_with({"risk": phone}),
        "name as the gender": report_with({}, {"gender": name}),
        "ID number as the discovery method": report_with({"method": id_number}),
        "ID number as the date of birth": report_with({}, {"date_of_birth": id_number}),
        "phone as the date found": report_with({"found_on": phone}),
        "ID number with a wrong check character": report_with({}, {"id_number": wrong_check}),
        "phone too long": report_with(
            {"guardians": [{**body["guardians"][0], "phone": phone + "9"}]}
        ),
        "name too long": report_with({}, {"name": name * 12}),
        "name as a subtype": report_with(
            {"issues": [{"category": "mental_health", "subtype": name}]}
        ),
        "ID number as the village": report_with({}, {"village": id_number}),
        "phone as the finder's unit": report_with(
            {"found_by": {"role": "child_director", "unit": phone}}
        ),
    }
    for label, sent in bodies.items():
        probe.call(label, "POST", "/v1/cases", reporter, keep=True, json=sent)
    probe.call(
        "a body that is not JSON",
        "POST",
        "/v1/cases",
        {**reporter, "Content-Type": "application/json"},
        keep=True,
        content=f'{{"minor": {{"name": "{name}", "id_number": "{id_number}"'.encode(),
    )
    probe.call(
        "a body that is text",
        "POST",
        "/v1/cases",
        {**reporter, "Content-Type": "text/plain"},
        keep=True,
        content=f"{name} {id_number} {phone}".encode(),
    )
    commands: dict[str, tuple[str, dict[str, Any]]] = {
        "follow-up with the phone under an unknown key": (
            "follow-ups",
            {"visited_on": str(local_today()), "notes": "回访。", "guardian_phone": phone},
        ),
        "intervention with the name as the measure": (
            "interventions",
            {"function": "judicial", "measure": name, "notes": "走访。", "done_on": "2026-01-01"},
        ),
        "consultation with the ID number as the date": (
            "consultations",
            {"held_on": id_number, "participants": [OFFICE], "decision": "会商。"},
        ),
        "consultation with the name as a participant": (
            "consultations",
            {"held_on": str(local_today()), "participants": [name], "decision": "会商。"},
        ),
        "risk with the phone as the level": (
            "risk-assessments",
            {"level": phone, "reason": "评估。"},
        ),
        "letter with the ID number as the reason": (
            "guardianship-letters",
            {"guardian_index": 0, "reason": id_number, "signed_on": str(local_today())},
        ),
        "assignment with the name as the unit": (
            "assignments",
            {"unit": name, "function": "family", "task": "走访。", "due_on": str(local_today())},
        ),
        "escalation with the phone as the level": (
            "escalations",
            {"to_level": phone, "reason": "上报。"},
        ),
        "closure with the name as the reason": ("closure", {"reason": name, "note": "结案。"}),
    }
    for label, (command, sent) in commands.items():
        probe.call(label, "POST", f"/v1/cases/{case}/{command}", coordinator, keep=True, json=sent)
    queries: dict[str, tuple[str, dict[str, str]]] = {
        "lookup by an ID number with a wrong check character": (
            "/v1/cases",
            {"id_number": wrong_check},
        ),
        "lookup by a name too long": ("/v1/cases", {"name": name * 12}),
        "lookup by the phone as ID number": ("/v1/cases", {"id_number": phone}),
        "ledger with the phone as the category": ("/v1/ledger", {"category": phone}),
        "ledger with the name as the subtype": ("/v1/ledger", {"subtype": name}),
        "ledger with the ID number as a date": ("/v1/ledger", {"found_from": id_number}),
        "ledger with the phone as the risk": ("/v1/ledger", {"risk": phone}),
        "ledger with the name as the status": ("/v1/ledger", {"status": name}),
        "ledger with the ID number as the page": ("/v1/ledger", {"page": id_number}),
        "export with the name as the format": ("/v1/ledger/export", {"format": name}),
        "worklist with the ID number as the day": ("/v1/worklists/assignments", {"on": id_number}),
        "worklist with the phone as the state": ("/v1/worklists/assignments", {"state": phone}),
        "report with the phone as the date": ("/v1/reports/quarterly", {"as_of": phone}),
        "proof with the ID number as the position": (
            "/v1/evidence/proofs/inclusion",
            {"position": id_number},
        ),
    }
    for label, (path, params) in queries.items():
        probe.call(label, "GET", path, coordinator, keep=True, params=params)
    probe.call(
        "lookup with unknown fields",
        "POST",
        "/v1/cases/search",
        coordinator,
        keep=True,
        json={"id_number": id_number, "phone": phone, name: 1},
    )
    paths = {
        "the name as a case id": f"/v1/cases/{name}",
        "the ID number as a case id": f"/v1/cases/{id_number}",
        "the phone as a bundle's case id": f"/v1/evidence/cases/{phone}/bundle",
        "the name as an assignment id": f"/v1/cases/{case}/assignments/{name}/acknowledgement",
    }
    for label, path in paths.items():
        method = "POST" if path.endswith("acknowledgement") else "GET"
        probe.call(label, method, path, coordinator, keep=True)
    probe.call(
        "the phone as the purpose of use",
        "GET",
        f"/v1/cases/{case}",
        {**coordinator, "X-Purpose-Of-Use": phone},
        keep=True,
    )
    probe.call(
        "the ID number as the token",
        "GET",
        "/v1/ledger",
        {"Authorization": f"Bearer {id_number}"},
        keep=True,
    )
    for label, given in (
        ("the phone as the request id", phone),
        ("the ID number as the request id", id_number),
        ("the ID number's digits as the request id", f"{id_number[:17]}00000000000000"),
    ):
        probe.call(label, "GET", "/v1/taxonomy", {**coordinator, "X-Request-ID": given}, keep=True)
    # Refusals of the planted case itself: a role out of scope, an unknown case.
    outsider = s.headers(tokens["far_coordinator"], "consultation")
    probe.call("case read out of scope", "GET", f"/v1/cases/{case}", outsider)
    probe.call("bundle out of scope", "GET", f"/v1/evidence/cases/{case}/bundle", outsider)
    probe.call("case that does not exist", "GET", f"/v1/cases/{uuid.uuid4()}", coordinator)
    assert len(probe.errors) >= 53, f"only {len(probe.errors)} answers kept"


def _exercise(store: str, home: Path, env: dict[str, str], schema: str | None) -> Probe:
    canaries, body = plant()
    cli(home, "keys", "init", env=env)
    cli(home, "demo", "--cases", "6", "--seed", "5", env=env)
    register_units_before_start(home, POLICE, env=env)
    service = LiveService(home, home.parent / "service.log", env=env).start()
    probe = Probe(store, service, canaries, schema=schema)
    try:
        tokens = {
            "reporter": service.token("reporter", VILLAGE),
            "coordinator": service.token("coordinator", OFFICE),
            "supervisor": service.token("supervisor", OFFICE, user="probe-supervisor"),
            "police": service.token("unit_member", POLICE),
            "investigator": service.token(
                "investigator", "county-investigation-team", user=INVESTIGATOR, street="county"
            ),
            "auditor": service.token("compliance_auditor", "county-compliance-office"),
            "far_coordinator": service.token(
                "coordinator", "far-office", user="probe-far", street="far-street"
            ),
        }
        _plant_case(probe, body, tokens)
        service.caught_up()
        _read_everything(probe, tokens)
        _bad_requests(probe, tokens, body)
        service.caught_up()
    finally:
        probe.exit_status = service.stop()
    return probe


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def probe(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Probe]:
    root = tmp_path_factory.mktemp(f"canary-{request.param}")
    if request.param == "sqlite":
        yield _exercise("sqlite", root / "home", {}, None)
        return
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _exercise(
            "postgres", root / "home", {"CASETRAIL_DATABASE_URL": pg_url(schema)}, schema
        )
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# --- the scans ----------------------------------------------------------------------------------


def _stored(probe: Probe) -> dict[str, bytes]:
    """Every file under the data directory; on PostgreSQL also every row of the schema."""
    found = {
        str(path.relative_to(probe.service.home)): path.read_bytes()
        for path in sorted(probe.service.home.rglob("*"))
        if path.is_file()
    }
    if probe.schema is not None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            tables = [
                str(row[0])
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (probe.schema,)
                ).fetchall()
            ]
            for table in tables:
                rows = conn.execute(f'SELECT t::text FROM {probe.schema}."{table}" t').fetchall()
                found[f"table {table}"] = "\n".join(str(r[0]) for r in rows).encode()
    return found


def _leaks(places: dict[str, bytes], probe: Probe, only: frozenset[str] | None = None) -> str:
    forms = probe.canaries.forms(only)
    lines = [
        f"{where}: {', '.join(hits)}"
        for where, data in places.items()
        if (hits := found_in(data, forms))
    ]
    return "\n".join(lines)


def test_the_authorised_reads_showed_every_canary(probe: Probe) -> None:
    """The control: planting worked, and the search finds what is there."""
    shown = b"\n".join(probe.authorised.values())
    missing = [what for what, text in probe.canaries.texts.items() if text.encode() not in shown]
    assert missing == [], f"planted but never shown to an authorised reader: {missing}"
    # The identity export holds the full name and ID number in each of its formats.
    for fmt in ("xlsx", "csv", "json"):
        export = probe.authorised[f"export {fmt} with identity"]
        assert probe.canaries["minor.name"].encode() in export, fmt
        assert probe.canaries["minor.id_number"].encode() in export, fmt
    assert probe.exit_status in (0, -15), f"the service did not stop cleanly: {probe.exit_status}"


def test_no_canary_in_clear_at_rest(probe: Probe) -> None:
    stored = _stored(probe)
    everything = b"".join(stored.values())
    # The control: what the store does hold of the file in clear, the same search finds.
    assert probe.case_id.encode() in everything, "the scan did not reach the stored case"
    if probe.store == "sqlite":
        assert any(name.endswith("casetrail.sqlite") for name in stored), sorted(stored)
        assert any(name.endswith("readmodels.sqlite") for name in stored), sorted(stored)
    leaks = _leaks(stored, probe)
    assert not leaks, f"canaries readable at rest ({probe.store}):\n{leaks}"


def test_no_canary_in_the_service_logs(probe: Probe) -> None:
    output = probe.service.log_path.read_bytes()
    assert b'"event": "request"' in output, "the service logged no requests: nothing was scanned"
    assert probe.case_id.encode() in output, "the log holds no case id: the scan proves little"
    leaks = _leaks({"service output": output}, probe)
    assert not leaks, f"canaries in the service's logs ({probe.store}):\n{leaks}"


def test_no_canary_in_any_error_answer(probe: Probe) -> None:
    leaks = _leaks(probe.errors, probe)
    assert not leaks, f"error answers that repeat a canary ({probe.store}):\n{leaks}"


def test_masked_answers_show_no_identity_or_sensitive_text(probe: Probe) -> None:
    hidden = frozenset(probe.canaries.texts) - MASKED_MAY_SHOW
    leaks = _leaks(probe.masked, probe, hidden)
    assert not leaks, f"masked answers that show a canary in clear ({probe.store}):\n{leaks}"


def test_the_search_finds_every_form_it_lists() -> None:
    """The scan itself: each listed form of each canary is found inside other bytes, under its
    canary's name, and nothing is found in bytes that hold none."""
    canaries, _ = plant(seed=99)
    forms = canaries.forms()
    noise = uuid.uuid4().bytes * 64
    assert found_in(noise, forms) == []
    for what, listed in forms.items():
        assert {"utf-8", "utf-16-le", "hex"} <= {form for form, _ in listed}, what
        for form, needle in listed:
            assert f"{what} ({form})" in found_in(noise + needle + noise, {what: listed})
    assert any(f.startswith("utf-8, its 17 digits") for f, _ in forms["minor.id_number"])
    assert any(f == "percent-encoded" for f, _ in forms["minor.name"])
    assert any(f == "json-escaped" for f, _ in forms["guardian.name"])
    assert any(f.endswith("its marker") for f, _ in forms["intervention.notes"])
