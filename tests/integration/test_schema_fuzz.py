"""Schemathesis over every operation of the real service, as an outside probe runs it.

Guarantee: for every operation of `/openapi.json`, with the tokens of three roles (coordinator,
unit member, reporter) and each role's purpose of use, no generated request (the document's
examples, boundary values and their violations, random positive and negative data, and stateful
sequences that follow the answers' ids) gets a server error, and every answer keeps to the
document: a documented status code, a documented content type, a body and headers that match the
documented schema.

How: `casetrail serve` on a free port (`tests.integration.live_service`), filled with
`casetrail demo`, an investigation order and a break-glass access; then `schemathesis run`
(the command line, pinned in constraints.txt) once per role, with a configuration whose
dictionaries make path ids (`case_id`, `assignment_id`, `order_id`, `access_id`) and the order's
`case_id` existing ones most of the time, so the run gets past "no such case". Its JUnit report
names every failure: each one found is listed in the assertion message (operation, checks,
status, the request as curl with the token filtered).

The operations the document marks as needing no token (sign-in, OIDC, the taxonomy, health) do
not depend on the caller's role: they are run once, with the first role's run (`PUBLIC_ONCE`),
and left out of the other two; each run checks that it tested every operation it selected, and
the first that it selected them all. Sign-in spends the same argon2 work on every attempt, so
running it three times over was a fifth of the service's time in this file.

Bounded: `CASETRAIL_FUZZ_EXAMPLES` examples per operation and phase (default 12) and a fixed
seed (`CASETRAIL_FUZZ_SEED`), about a minute and a half on two cores. Raise both to probe harder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.integration.live_service import LiveService, cli, missing

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
STREET: Final = "chengguan-street"
OFFICE: Final = "chengguan-governance-office"
EXAMPLES: Final = int(os.environ.get("CASETRAIL_FUZZ_EXAMPLES") or 12)
SEED: Final = int(os.environ.get("CASETRAIL_FUZZ_SEED") or 20261201)


@dataclass(frozen=True)
class Role:
    role: str
    unit: str
    purpose: str


ROLES: Final = {
    # The first role's run also covers the operations that need no token (`public_operations`).
    "coordinator": Role("coordinator", OFFICE, "consultation"),
    "unit_member": Role("unit_member", "chengguan-police-station", "intervention"),
    "reporter": Role("reporter", "dongshan-village", "follow_up"),
}

# The checks that make "no 5xx and no answer that breaks the OpenAPI document".
CHECKS: Final = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
SERVER_ERROR_CODES: Final = frozenset({"ST101", "ST102"})


@dataclass(frozen=True)
class Finding:
    """One failure schemathesis reported: where, which checks, what status, which request."""

    role: str
    operation: str
    codes: tuple[str, ...]
    titles: tuple[str, ...]
    status: str
    request: str

    def line(self) -> str:
        what = "; ".join(f"{c} {t}" for c, t in zip(self.codes, self.titles, strict=False))
        return f"[{self.role}] {self.operation}: {what} (status {self.status})\n    {self.request}"


@dataclass
class Run:
    role: str
    findings: list[Finding]
    errors: list[str]
    report: dict[str, Any]
    output: str


@dataclass
class Target:
    service: LiveService
    tokens: dict[str, str]
    ids: dict[str, list[str]]
    runs: dict[str, Run]
    workdir: Path
    public: list[str]  # operation ids the document marks as needing no token


PUBLIC_ONCE: Final = next(iter(ROLES))


def public_operations(document: dict[str, Any]) -> list[str]:
    """The operation ids that carry no security requirement (nor does the document as a
    whole): what they answer does not depend on the caller's role."""
    if document.get("security"):
        return []
    return sorted(
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        and "operationId" in operation
        and not operation.get("security")
    )


# --- the service under test ---------------------------------------------------------------------


def _known_ids(service: LiveService, tokens: dict[str, str]) -> dict[str, list[str]]:
    """Ids that exist: every demo case, its assignments, an order, a break-glass access."""
    coordinator = service.headers(tokens["coordinator"], "consultation")
    service.caught_up()
    ledger = httpx.get(
        f"{service.base}/v1/ledger", params={"per_page": 200}, headers=coordinator, timeout=30
    )
    assert ledger.status_code == 200, ledger.text
    cases = [row["id"] for row in ledger.json()["rows"]]
    assert cases, "the demo stored no case the coordinator can see"
    assignments = []
    for case in cases:
        answer = httpx.get(f"{service.base}/v1/cases/{case}", headers=coordinator, timeout=30)
        assert answer.status_code == 200, answer.text
        assignments += [a["id"] for a in answer.json().get("assignments", []) if "id" in a]
    order = httpx.post(
        f"{service.base}/v1/investigation-orders",
        json={
            "case_id": cases[0],
            "investigator": "probe-investigator",
            "reason": "一案一倒查:核查处置经过。",
            "expires_at": "2099-01-01T00:00:00+00:00",
        },
        headers=coordinator,
        timeout=30,
    )
    orders = [order.json()["id"]] if order.status_code == 201 else []
    outsider = service.token("coordinator", "far-office", user="probe-far", street="far-street")
    glass = httpx.post(
        f"{service.base}/v1/cases/{cases[-1]}/break-glass",
        json={"reason": "紧急情况:学生失联,需立即联系监护人。"},
        headers=service.headers(outsider),
        timeout=30,
    )
    auditor = service.token("compliance_auditor", "county-compliance-office")
    pending = httpx.get(
        f"{service.base}/v1/compliance/break-glass",
        headers=service.headers(auditor, "compliance_review"),
        timeout=30,
    )
    accesses = (
        [item["access_id"] for item in pending.json().get("items", [])]
        if glass.status_code == 200 and pending.status_code == 200
        else []
    )
    return {"case": cases, "assignment": assignments, "order": orders, "access": accesses}


def _config(ids: dict[str, list[str]]) -> str:
    """schemathesis.toml: the token and purpose from the environment (never on a command line),
    and existing ids drawn for path ids most of the time (generated ones the rest)."""
    lines = [
        'headers = { Authorization = "Bearer ${CASETRAIL_FUZZ_TOKEN}", '
        '"X-Purpose-Of-Use" = "${CASETRAIL_FUZZ_PURPOSE}" }',
        "",
        "[parameters]",
    ]
    bindings = {
        "path.case_id": "case",
        "body.case_id": "case",
        "path.assignment_id": "assignment",
        "body.assignment_id": "assignment",
        "path.order_id": "order",
        "path.access_id": "access",
    }
    for key, kind in bindings.items():
        if ids[kind]:
            lines.append(f'"{key}" = {{ dictionary = "{kind}", probability = 0.8 }}')
    for kind, values in ids.items():
        if values:
            lines += ["", f"[dictionaries.{kind}]", f"values = {json.dumps(values)}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if not Path(SCHEMATHESIS).exists():
        missing(f"schemathesis is not installed in {Path(sys.executable).parent}")
    workdir = tmp_path_factory.mktemp("fuzz")
    home = workdir / "home"
    cli(home, "demo", "--cases", "12", "--seed", "11")
    # The refusal floor pads every "no such case" answer; it is not what this run probes.
    service = LiveService(home, workdir / "service.log", env={"CASETRAIL_REFUSAL_FLOOR_MS": "0"})
    service.start()
    try:
        tokens = {name: service.token(r.role, r.unit) for name, r in ROLES.items()}
        ids = _known_ids(service, tokens)
        (workdir / "schemathesis.toml").write_text(_config(ids), encoding="utf-8")
        document = httpx.get(f"{service.base}/openapi.json", timeout=30).json()
        yield Target(service, tokens, ids, {}, workdir, public_operations(document))
    finally:
        service.stop()


def run_as(target: Target, name: str) -> Run:
    """One schemathesis run with `name`'s token (once per module and role)."""
    if name in target.runs:
        return target.runs[name]
    role = ROLES[name]
    reports = target.workdir / f"report-{name}"
    shutil.rmtree(reports, ignore_errors=True)
    env = {
        **os.environ,
        "CASETRAIL_FUZZ_TOKEN": target.tokens[name],
        "CASETRAIL_FUZZ_PURPOSE": role.purpose,
    }
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(target.workdir / "schemathesis.toml"),
        "run",
        f"{target.service.base}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--continue-on-failure",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit,json",
        "--report-dir",
        str(reports),
    ]
    if name != PUBLIC_ONCE:
        for operation_id in target.public:
            command += ["--exclude-operation-id", operation_id]
    done = subprocess.run(
        command,
        cwd=target.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    junit = list(reports.glob("junit*.xml"))
    summary = list(reports.glob("json*.json"))
    assert junit and summary, f"schemathesis wrote no report ({done.returncode}):\n{output[-4000:]}"
    findings, errors = parse_junit(name, junit[0].read_text(encoding="utf-8"))
    run = Run(name, findings, errors, json.loads(summary[0].read_text(encoding="utf-8")), output)
    target.runs[name] = run
    return run


# --- reading the report -------------------------------------------------------------------------

_CODE = re.compile(r"^- (ST\d{3}) (.+)$", re.MULTILINE)
_STATUS = re.compile(r"^\[(\d{3})\]", re.MULTILINE)
_CURL = re.compile(r"^\s+(curl .+)$", re.MULTILINE)


def parse_junit(role: str, xml: str) -> tuple[list[Finding], list[str]]:
    """Every failure of every operation (a failure element may hold several test cases)."""
    findings: list[Finding] = []
    errors: list[str] = []
    for testcase in ET.fromstring(xml).iter("testcase"):  # noqa: S314 - our own tool's report
        operation = testcase.get("name", "?")
        for error in testcase.findall("error"):
            text = error.text or error.get("message") or ""
            errors.append(f"[{role}] {operation}: {text[:800]}")
        for failure in testcase.findall("failure"):
            for block in re.split(r"^\d+\. Test Case ID: ", failure.text or "", flags=re.M)[1:]:
                codes = _CODE.findall(block)
                status = _STATUS.search(block)
                curls = _CURL.findall(block)
                findings.append(
                    Finding(
                        role=role,
                        operation=operation,
                        codes=tuple(c for c, _ in codes),
                        titles=tuple(t for _, t in codes),
                        status=status.group(1) if status else "none",
                        request=curls[-1][:600] if curls else block[:600],
                    )
                )
    return findings, errors


def listing(findings: list[Finding]) -> str:
    return f"{len(findings)} failure(s):\n" + "\n".join(f.line() for f in findings)


# --- the tests ----------------------------------------------------------------------------------


def test_parse_junit_reads_every_failure_and_its_request() -> None:
    """The report reader itself: two test cases in one failure element, an error element."""
    xml = """<testsuites><testsuite><testcase name="GET /v1/x">
<failure message="ST101, ST103">1. Test Case ID: a1

- ST101 Server error

- ST103 Undocumented status code

[500] Internal Server Error:

Reproduce with:

    curl -X GET 'http://h/v1/x?page=99999999999999999999'

2. Test Case ID: b2

- ST105 Undocumented Content-Type

[404] Not Found:

Reproduce with:

    curl -X GET http://h/v1/x</failure></testcase>
<testcase name="POST /v1/y"><error message="boom">Connection reset</error></testcase>
</testsuite></testsuites>"""
    findings, errors = parse_junit("coordinator", xml)
    assert [(f.operation, f.codes, f.status) for f in findings] == [
        ("GET /v1/x", ("ST101", "ST103"), "500"),
        ("GET /v1/x", ("ST105",), "404"),
    ]
    assert findings[0].request.endswith("page=99999999999999999999'")
    assert errors == ["[coordinator] POST /v1/y: Connection reset"]


@pytest.mark.parametrize("role", list(ROLES))
def test_every_operation_was_tested_and_known_ids_were_reached(target: Target, role: str) -> None:
    run = run_as(target, role)
    operations = run.report["operations"]
    left_out = 0 if role == PUBLIC_ONCE else len(target.public)
    assert operations["tested"] == operations["selected"] > 30, operations
    assert operations["selected"] == operations["total"] - left_out, operations
    assert not run.errors, "schemathesis could not test:\n" + "\n".join(run.errors)
    if role == "coordinator":
        # The dictionaries worked: existing cases were read, and a command got through.
        statuses = _statuses(target.service.logs())
        assert "200" in statuses.get("GET /v1/cases/{case_id}", set()), statuses
        assert "200" in statuses.get("GET /v1/evidence/cases/{case_id}/bundle", set()), statuses
        # A command reached an existing case: done (2xx) or refused by a rule of the case (409).
        commands = set().union(
            *(found for route, found in statuses.items() if route.startswith("POST /v1/cases/{"))
        )
        assert commands & {"200", "201", "409"}, statuses


def _statuses(log: str) -> dict[str, set[str]]:
    """From the service's request log lines: route template -> statuses answered."""
    found: dict[str, set[str]] = {}
    for line in log.splitlines():
        if '"event": "request"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        found.setdefault(f"{entry['method']} {entry['route']}", set()).add(str(entry["status"]))
    return found


@pytest.mark.parametrize("role", list(ROLES))
def test_no_request_gets_a_server_error(target: Target, role: str) -> None:
    run = run_as(target, role)
    errors = [f for f in run.findings if SERVER_ERROR_CODES & set(f.codes) or f.status[0] == "5"]
    if errors:
        pytest.fail(listing(errors))


@pytest.mark.parametrize("role", list(ROLES))
def test_every_answer_keeps_to_the_openapi_document(target: Target, role: str) -> None:
    run = run_as(target, role)
    broken = [f for f in run.findings if set(f.codes) - SERVER_ERROR_CODES]
    if broken:
        pytest.fail(listing(broken))
