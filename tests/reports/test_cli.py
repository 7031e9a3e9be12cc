"""`casetrail investigate` and `casetrail verify-report`: the investigator's report is written
in each form and its read recorded; `verify-report` accepts the file and refuses a one-byte
change with one line and exit 1; a refused report and a file that is no report are one line
and exit 2. The html report is made by the real command (a subprocess); the other forms and
the checks run the same entry point in this process (`gateway.cli.main.main`), to keep the
suite fast. On SQLite: the store plays no part in what is tested here beyond the document's
own tests (tests/reports/test_document.py, both stores)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from domain.access import AccessDenied, CaseAccessed
from domain.taxonomy import Role
from gateway import keyring, logs
from gateway.auth import issue_token
from gateway.bootstrap import open_application
from gateway.cli.main import main
from gateway.settings import Settings
from tests.evidence.helpers import cli, first_line
from tests.people import register
from tests.reports.conftest import chromium_path
from tests.reports.scenario import Scenario, investigated_case, order_for

INVESTIGATOR = "user-inv-cli"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}"


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """The `casetrail` entry point in this process, with the store's environment."""
    monkeypatch.setenv("CASETRAIL_HOME", str(settings.home))
    monkeypatch.setenv("CASETRAIL_DATABASE_URL", settings.database_url)
    # The commands configure the process's logging to write to stderr as they find it (here
    # the capture of this test, closed after it): to the process's own stderr instead.
    configure = logs.configure
    monkeypatch.setattr(
        "gateway.logs.configure",
        lambda level="info", stream=None: configure(level, stream or sys.__stderr__),
    )

    def invoke(*args: str) -> Ran:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return invoke


def _scenario(settings: Settings, *, order: bool = True) -> Scenario:
    application = open_application(settings)
    try:
        scenario = investigated_case(application, INVESTIGATOR)
        if order:
            order_for(application, scenario.case_id, INVESTIGATOR)
        return scenario
    finally:
        application.close()


def _token(settings: Settings, tmp_path: Path, user: str = INVESTIGATOR) -> Path:
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")
    path = tmp_path / f"{user}.token"
    register(settings, user, Role.INVESTIGATOR, "county-inspection", "county")
    path.write_text(
        issue_token(
            key, user=user, role=Role.INVESTIGATOR, unit="county-inspection", street="county"
        ),
        encoding="utf-8",
    )
    return path


def _report_reads(settings: Settings) -> list[CaseAccessed | AccessDenied]:
    application = open_application(settings)
    try:
        found = []
        for notification in application.notifications():
            event = application.mapper.to_domain_event(notification)
            if isinstance(event, CaseAccessed | AccessDenied) and str(event.channel) == "report":
                found.append(event)
        return found
    finally:
        application.close()


def run_cli(run: Any) -> Any:
    """`run` with the subprocess helper's signature (settings first)."""
    return lambda _settings, *args: run(*args)


def _pub(settings: Settings) -> str:
    return str(settings.keys_dir / keyring.SERVICE_PUB)


@pytest.mark.parametrize(
    "form", ["html", "json", pytest.param("pdf", marks=pytest.mark.browser)]
)
def test_investigate_writes_a_report_that_verifies_and_a_changed_byte_does_not(
    settings: Settings, tmp_path: Path, form: str, run: Any
) -> None:
    if form == "pdf":
        chromium_path()
    scenario = _scenario(settings)
    out = tmp_path / f"report.{form}"
    made = (cli if form == "html" else run_cli(run))(
        settings,
        "investigate",
        "--investigation",
        str(scenario.investigation_id),
        "--format",
        form,
        "--out",
        str(out),
        "--token-file",
        str(_token(settings, tmp_path)),
    )
    assert made.returncode == 0, made.stderr
    assert first_line(made).startswith(f"wrote {out}: the {form} report")
    assert out.stat().st_mode & 0o777 == 0o600
    reads = _report_reads(settings)
    assert {type(e) for e in reads} == {CaseAccessed}
    assert {e.case_id for e in reads} == {scenario.case_id}
    assert {e.client["address"] for e in reads} == {"cli"}

    checked = run("verify-report", str(out), "--public-key", _pub(settings))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"intact: the {form} report is signed")

    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x20
    changed = tmp_path / f"changed.{form}"
    changed.write_bytes(bytes(data))
    refused = run("verify-report", str(changed), "--public-key", _pub(settings))
    assert refused.returncode == 1
    assert refused.stdout.startswith("TAMPERED: ")
    assert len(refused.stdout.strip().splitlines()) == 1
    assert "Traceback" not in refused.stderr


def test_a_refused_report_is_recorded_and_one_line(
    settings: Settings, tmp_path: Path, run: Any
) -> None:
    scenario = _scenario(settings, order=False)
    out = tmp_path / "report.html"
    made = run(
        "investigate",
        "--investigation",
        str(scenario.investigation_id),
        "--out",
        str(out),
        "--token-file",
        str(_token(settings, tmp_path)),
    )
    assert made.returncode == 2
    assert made.stderr.startswith("casetrail: error: the report is refused")
    assert len(made.stderr.strip().splitlines()) == 1
    assert not out.exists()
    (refusal,) = _report_reads(settings)
    assert isinstance(refusal, AccessDenied)
    assert refusal.case_id == scenario.case_id


def test_verify_report_of_something_else_is_one_line(
    settings: Settings, tmp_path: Path, run: Any
) -> None:
    other = tmp_path / "notes.txt"
    other.write_text(f"not a report {uuid4()}", encoding="utf-8")
    result = run("verify-report", str(other), "--public-key", _pub(settings))
    assert result.returncode == 2
    assert result.stderr.startswith("casetrail: error: ")
    assert "not a casetrail report" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
