"""`casetrail projections ...` through the command's own entry point (`gateway.cli.main`), in
this process for speed: its output, its exit codes, its one-line errors. The follower command
in a real process of its own is exercised by test_crash_recovery.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from gateway.bootstrap import open_application
from gateway.cli.main import main
from gateway.settings import Settings
from tests.projections.workload import Workload


def run(
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `casetrail projections ARGS...`."""
    monkeypatch.setenv("CASETRAIL_HOME", str(settings.home))
    monkeypatch.setenv("CASETRAIL_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CASETRAIL_LOG_LEVEL", "warning")
    monkeypatch.delenv("CASETRAIL_EVENT_KEY", raising=False)
    capsys.readouterr()
    code = 0
    # The command configures logging onto this test's captured stderr: put back what was there.
    saved = structlog.get_config()
    try:
        main(["projections", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        structlog.configure(**saved)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_run_and_rebuild(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    application = open_application(settings)
    try:
        Workload(application, seed=51).cases(10)
        head = application.recorder.max_notification_id()
    finally:
        application.close()

    code, out, err = run(settings, capsys, monkeypatch, "status", "--json")
    assert code == 0, err
    lags = {p["name"]: p["lag"] for p in json.loads(out)["projections"]}
    assert lags == {"ledger": head, "reports": head, "accesses": head}

    code, out, err = run(settings, capsys, monkeypatch, "run", "--once")
    assert code == 0, err
    assert out.split() == [f"ledger+{head}", f"reports+{head}", f"accesses+{head}"]

    code, out, _ = run(settings, capsys, monkeypatch, "status")
    assert code == 0
    table = [line.split() for line in out.splitlines()]
    assert ["ledger", str(head), str(head), "0"] in table
    assert ["reports", str(head), str(head), "0"] in table

    code, out, err = run(settings, capsys, monkeypatch, "rebuild", "ledger", "--batch-size", "7")
    assert code == 0, err
    assert f"rebuilt ledger up to position {head}" in out
    assert "rebuilding ledger" in err  # the progress bar's label


def test_mistakes_are_one_line_errors(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    code, _, err = run(settings, capsys, monkeypatch, "rebuild", "ledgers")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("casetrail: error: ") and "'ledger'" in line
    (settings.keys_dir / "index.key").unlink()
    code, _, err = run(settings, capsys, monkeypatch, "status")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert "index key not found" in line and "casetrail keys init" in line
