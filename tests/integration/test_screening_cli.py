"""`casetrail roster import` and `casetrail screening coverage` as a user runs them: a real
process (the refused import), then the same entry point in this process; a real SQLite store,
real files. A file with an error prints each rejected row and
stores nothing (exit 2, one line on stderr); `--store-valid` stores the rest; the coverage
counts what was listed. (Re-imports and refusals are proven over HTTP in
tests/integration/test_screening_import.py: the same function does the work.)"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from domain.clock import local_today
from domain.taxonomy import Role
from gateway import keyring
from gateway.auth import issue_token
from gateway.cli.main import main
from tests.integration.live_service import register_user_of
from tests.integration.screening_roster import csv_bytes, kids, with_bad_checksum
from tests.integration.test_cli import assert_one_line_error, run

VILLAGE = "dongshan-village"


def token(home: Path, role: Role, unit: str, *, registered: bool = True) -> Path:
    """A token file, issued in-process (each `casetrail` start costs ~2 s of CPU), of a user
    registered in the store of `home` (unless `registered=False`)."""
    if registered:
        register_user_of(home, f"u-{role}", role, unit, "chengguan-street")
    key = keyring.load_private_key(home / "keys" / keyring.TOKEN_KEY, "token key")
    path = home / f"{role}.token"
    path.write_text(
        issue_token(key, user=f"u-{role}", role=role, unit=unit, street="chengguan-street"),
        encoding="utf-8",
    )
    return path


def in_process(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `casetrail ARGS...` run in this process (a process's
    start costs ~2 s of CPU: one command below runs as a real process, the rest here)."""
    monkeypatch.setenv("CASETRAIL_HOME", str(home))
    monkeypatch.delenv("CASETRAIL_DATABASE_URL", raising=False)
    monkeypatch.delenv("CASETRAIL_EVENT_KEY", raising=False)
    monkeypatch.setenv("CASETRAIL_LOG_LEVEL", "warning")
    capsys.readouterr()
    code = 0
    saved = structlog.get_config()
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        structlog.configure(**saved)
    out, err = capsys.readouterr()
    return code, out, err


def test_roster_import_and_coverage_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    minors = kids(6, VILLAGE, seed=8)
    rows = [k.cells() for k in minors]
    rows[3] = with_bad_checksum(minors[3]).cells()  # sheet row 5
    roster = tmp_path / "名册.csv"
    roster.write_bytes(csv_bytes(rows))
    reporter = token(home, Role.REPORTER, VILLAGE)

    refused = run(
        home, "roster", "import", str(roster), "--village", VILLAGE, "--token-file", str(reporter)
    )
    assert_one_line_error(refused, "nothing stored")
    assert refused.returncode == 2
    assert "第5行 身份证号" in refused.stdout
    for kid in minors:
        assert kid.id_number not in refused.stdout + refused.stderr
    assert with_bad_checksum(minors[3]).id_number not in refused.stdout

    code, out, err = in_process(
        home,
        capsys,
        monkeypatch,
        "roster",
        "import",
        str(roster),
        "--village",
        VILLAGE,
        "--token-file",
        str(reporter),
        "--store-valid",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["listed"] == 5

    coordinator = token(home, Role.COORDINATOR, "chengguan-governance-office")
    code, out, err = in_process(
        home,
        capsys,
        monkeypatch,
        "screening",
        "open",
        "--name",
        "走访排查",
        "--village",
        VILLAGE,
        "--from",
        (local_today() - timedelta(days=3)).isoformat(),
        "--to",
        local_today().isoformat(),
        "--token-file",
        str(coordinator),
    )
    assert code == 0, err
    campaign_id = out.strip()
    code, out, err = in_process(
        home,
        capsys,
        monkeypatch,
        "screening",
        "coverage",
        "--campaign",
        str(campaign_id),
        "--token-file",
        str(coordinator),
        "--json",
    )
    assert code == 0, err
    total = json.loads(out)["total"]
    assert (total["minors"], total["visited"], total["not_visited"]) == (5, 0, 5)
    assert all(k.name not in out for k in minors)


def test_an_unregistered_users_token_is_refused_by_every_screening_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A genuine token is not enough: its user must be registered and active (issue 16), as for
    `casetrail report investigate`; one line, exit 2, nothing stored."""
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    roster = tmp_path / "名册.csv"
    roster.write_bytes(csv_bytes([k.cells() for k in kids(2, VILLAGE, seed=9)]))
    reporter = token(home, Role.REPORTER, VILLAGE, registered=False)
    coordinator = token(home, Role.COORDINATOR, "chengguan-governance-office", registered=False)
    today = local_today().isoformat()
    for args in (
        ("roster", "import", str(roster), "--village", VILLAGE, "--token-file", str(reporter)),
        (
            "screening",
            "open",
            "--name",
            "走访排查",
            "--from",
            today,
            "--to",
            today,
            "--token-file",
            str(coordinator),
        ),
        (
            "screening",
            "coverage",
            "--campaign",
            "6f1c1f0e-4a43-4c5e-9d3a-0c2b8e4f1a11",
            "--token-file",
            str(coordinator),
        ),
    ):
        code, out, err = in_process(home, capsys, monkeypatch, *args)
        assert code == 2, (args, out, err)
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
