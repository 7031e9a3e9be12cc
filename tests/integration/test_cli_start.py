"""The command line starts fast (issue 23): `casetrail --help`, `token issue`, `verify-bundle`
and `proof check` load only what they use, never the whole service.

Not timed (bench/cli_start.py measures the start against `python -c pass`): each light command
runs in a fresh interpreter through the real entry point (`gateway.cli.main.main`), and the test
asserts which modules it imported. Every heavy module named here was loaded by every command
before the change (each costs tens to hundreds of milliseconds here: `python -X importtime`).
The lazily registered commands keep their help: the top-level listing says of each exactly what
the command, once loaded, says of itself, and every command's own --help still works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import click
import pytest
from click.testing import CliRunner

from domain.taxonomy import Role
from gateway.auth import MAX_TTL_SECONDS
from gateway.cli.main import COMMANDS, DEFAULT_STREET, cli, main
from gateway.cli.main import MAX_TTL_SECONDS as CLI_MAX_TTL
from gateway.settings import Settings
from tests.people import register

ROOT: Final = Path(__file__).resolve().parents[2]
VECTORS: Final = ROOT / "docs/specs/vectors/bundle.json"

# Runs one command through the entry point, then prints the modules it imported as JSON.
PROBE: Final = """
import json, sys
from gateway.cli.main import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
print("\\n" + json.dumps({"modules": sorted(sys.modules), "exit": code}))
"""

# The service's heavy parts: none of them is needed to parse arguments or print help.
HEAVY: Final = (
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "nats",
    "faker",
    "structlog",
    "eventsourcing",
    "psycopg",
    "pydantic",
    "pydantic_settings",
    "jwt",
    "argon2",
    "domain.application",
    "gateway.settings",
    "gateway.bootstrap",
    "gateway.http",
    "gateway.web",
    "gateway.messaging",
    "gateway.evidence.maintainer",
    "projections.readmodels",
    "projections.follower",
)
# Offline checks need the signature scheme (cryptography's Ed25519) and nothing of the store.
OFFLINE_FORBIDDEN: Final = HEAVY
# `token issue` reads the user's record (to check the user is admitted) and signs: the user
# directory (`domain.user_directory`), the settings and the store's code, but not the domain's
# application with its case code (~0.3 s of CPU), the store guard or the evidence log, the HTTP
# app, the web pages, messaging, the read models, the evidence maintainer, sign-in, logging or
# the demo's data; and, on a SQLite store, nothing of PostgreSQL's (psycopg and the store's
# PostgreSQL classes: ~0.1 s of CPU).
TOKEN_FORBIDDEN: Final = (
    "domain.application",
    "domain.case",
    "gateway.store.guard",
    "projections.evidence",
    "psycopg",
    "psycopg_pool",
    "eventsourcing.postgres",
    "projections.follower_postgres",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "nats",
    "faker",
    "structlog",
    "gateway.http",
    "gateway.web",
    "gateway.serving",
    "gateway.messaging.relay",
    "gateway.evidence.maintainer",
    "gateway.signin",
    "projections.readmodels",
)


def probe(home: Path, *args: str) -> tuple[int, str, set[str]]:
    """(exit status, what the command printed, the modules it imported)."""
    environ = {**os.environ, "CASETRAIL_HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    environ.pop("CASETRAIL_DATABASE_URL", None)
    environ.pop("CASETRAIL_EVENT_KEY", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed, _, last = result.stdout.rstrip("\n").rpartition("\n")
    report: dict[str, Any] = json.loads(last)
    return int(report["exit"]), printed + result.stderr, set(report["modules"])


def loaded(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden packages (or any of their submodules) that were imported."""
    return sorted(
        name for name in forbidden if any(m == name or m.startswith(name + ".") for m in modules)
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["token", "issue", "--help"],
        ["verify-bundle", "--help"],
        ["proof", "check", "--help"],
        ["proof", "--help"],
    ],
    ids=" ".join,
)
def test_help_imports_nothing_of_the_service(tmp_path: Path, args: list[str]) -> None:
    code, printed, modules = probe(tmp_path, *args)
    assert code == 0, printed
    assert "Usage: casetrail" in printed
    assert loaded(modules, HEAVY) == []


def test_verify_bundle_checks_offline_without_the_store(tmp_path: Path) -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    bundle, key = tmp_path / "bundle.json", tmp_path / "service.pub"
    bundle.write_text(json.dumps(vectors["positive"][0]["bundle"]), encoding="utf-8")
    key.write_text(vectors["keys"]["service"]["public_key_pem"], encoding="utf-8")
    code, printed, modules = probe(tmp_path, "verify-bundle", str(bundle), "--public-key", str(key))
    assert code == 0, printed
    assert printed.startswith("intact: ")
    assert loaded(modules, OFFLINE_FORBIDDEN) == []
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in modules
    # The same check still refuses an altered bundle (exit 1), as light.
    altered = vectors["negative"][0]["bundle"]
    bundle.write_text(json.dumps(altered), encoding="utf-8")
    code, printed, modules = probe(tmp_path, "verify-bundle", str(bundle), "--public-key", str(key))
    assert code in (1, 2), printed
    assert loaded(modules, OFFLINE_FORBIDDEN) == []


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real SQLite store: keys, one registered user, a signed checkpoint. Made through the
    entry point in this process: only the probed command runs in a fresh interpreter."""
    monkeypatch.setenv("CASETRAIL_HOME", str(tmp_path))
    monkeypatch.delenv("CASETRAIL_DATABASE_URL", raising=False)
    monkeypatch.delenv("CASETRAIL_EVENT_KEY", raising=False)
    main(["keys", "init"])
    settings = Settings.from_env({"CASETRAIL_HOME": str(tmp_path)})
    register(settings, "u-7", Role.COORDINATOR, "office", DEFAULT_STREET)
    main(["checkpoint", "create"])
    return tmp_path


def test_proof_check_checks_offline_without_the_store(store: Path) -> None:
    proof = store / "proof.json"
    main(["proof", "inclusion", "--position", "1", "--out", str(proof)])
    key = store / "keys" / "service-signing.pub"
    code, printed, modules = probe(store, "proof", "check", str(proof), "--public-key", str(key))
    assert code == 0, printed
    assert printed.startswith("valid: casetrail-inclusion-proof/v1")
    assert loaded(modules, OFFLINE_FORBIDDEN) == []
    # A proof of another leaf is refused (exit 1), still without the store.
    document = json.loads(proof.read_text(encoding="utf-8"))
    document["leaf_hash"] = "00" * 32
    proof.write_text(json.dumps(document), encoding="utf-8")
    code, printed, modules = probe(store, "proof", "check", str(proof), "--public-key", str(key))
    assert code == 1, printed
    assert printed.startswith("INVALID: ")
    assert loaded(modules, OFFLINE_FORBIDDEN) == []


def test_token_issue_opens_the_store_and_nothing_else(store: Path) -> None:
    code, printed, modules = probe(
        store, "token", "issue", "--user", "u-7", "--role", "coordinator", "--unit", "office"
    )
    assert code == 0, printed
    assert printed.strip().count(".") == 2  # the token, alone
    assert loaded(modules, TOKEN_FORBIDDEN) == []
    # It did check the store: the user must be registered (issue 16).
    code, printed, _ = probe(
        store, "token", "issue", "--user", "nobody", "--role", "coordinator", "--unit", "x"
    )
    assert code == 2
    assert printed.startswith("casetrail: error: no token issued")
    assert printed.count("\n") == 1, printed


def test_token_issue_refuses_a_suspended_user_and_a_role_not_held(store: Path) -> None:
    """The user directory reads the record's later events too, as the API's admission does."""
    main(["user", "suspend", "--user", "u-7", "--reason", "test: suspended"])
    for role in ("coordinator", "reporter"):
        code, printed, modules = probe(
            store, "token", "issue", "--user", "u-7", "--role", role, "--unit", "office"
        )
        assert code == 2, printed
        assert printed.startswith("casetrail: error: no token issued: "), printed
        assert loaded(modules, TOKEN_FORBIDDEN) == []


def test_token_issue_without_a_store_refuses_the_user_in_one_line(tmp_path: Path) -> None:
    code, printed, _ = probe(tmp_path, "keys", "init")
    assert code == 0, printed
    code, printed, _ = probe(
        tmp_path, "token", "issue", "--user", "u", "--role", "coordinator", "--unit", "x"
    )
    assert code == 2
    assert printed == (
        "casetrail: error: no token issued: the token's user is not registered; ask an "
        "administrator to register you (casetrail user add)\n"
    ), printed


def test_a_store_problem_is_still_one_line(tmp_path: Path) -> None:
    # The entry point's one-line errors now look the classes up lazily: still caught.
    code, printed, _ = probe(
        tmp_path, "token", "issue", "--user", "u", "--role", "coordinator", "--unit", "x"
    )
    assert code == 2
    assert printed.count("\n") == 1, printed
    assert printed.startswith("casetrail: error: ")


def test_the_listing_says_what_each_command_says_of_itself() -> None:
    group = cli
    assert isinstance(group, click.Group)
    for name, (_, _, summary) in COMMANDS.items():
        command = group.get_command(click.Context(group), name)
        assert command is not None, name
        for limit in (45, 70, 10_000):
            listed = click.Command(name, help=summary).get_short_help_str(limit)
            assert listed == command.get_short_help_str(limit), (name, limit)


def test_every_command_still_has_its_help() -> None:
    runner = CliRunner()
    seen = 0

    def walk(command: click.Command, path: list[str]) -> None:
        nonlocal seen
        result = runner.invoke(cli, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        seen += 1
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None, [*path, name]
                walk(sub, [*path, name])

    walk(cli, [])
    assert seen > 60  # every group and command of the tree


def test_the_fresh_listing_equals_the_loaded_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in COMMANDS:  # every command loaded: the listing comes from the commands
        cli.get_command(click.Context(cli), name)
    runner = CliRunner()
    loaded_help = runner.invoke(cli, ["--help"], prog_name="casetrail", terminal_width=100)
    # As in a fresh process, none loaded: the listing comes from the summaries alone.
    fresh = {k: v for k, v in cli.commands.items() if k not in COMMANDS}
    monkeypatch.setattr(cli, "commands", fresh)
    fresh_help = runner.invoke(cli, ["--help"], prog_name="casetrail", terminal_width=100)
    assert set(cli.commands) == set(fresh)  # listing imported nothing
    assert fresh_help.output == loaded_help.output
    assert all(f"  {name} " in fresh_help.output for name in COMMANDS)


def test_the_ttl_limit_is_the_token_codes_own() -> None:
    assert CLI_MAX_TTL == MAX_TTL_SECONDS
