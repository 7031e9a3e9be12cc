"""The `casetrail` command as a user runs it: real processes, real files, a real server."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from domain.taxonomy import Role
from gateway.cli.main import DEFAULT_STREET
from gateway.settings import Settings
from gateway.store.eventstore import new_key_text
from tests.people import register

CASETRAIL = str(Path(sys.executable).with_name("casetrail"))


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CASETRAIL_HOME": str(home), **(env or {})}
    environ.pop("CASETRAIL_DATABASE_URL", None)
    environ.pop("CASETRAIL_EVENT_KEY", None)
    environ.update(env or {})
    return subprocess.run(
        [CASETRAIL, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("casetrail: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_keys_init_creates_private_files_readable_by_owner_only(tmp_path: Path) -> None:
    first = run(tmp_path, "keys", "init")
    assert first.returncode == 0, first.stderr
    keys = tmp_path / "keys"
    for name in ("event.key", "token-signing.key", "service-signing.key", "index.key"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    before = (keys / "event.key").read_bytes()
    second = run(tmp_path, "keys", "init")
    assert second.returncode == 0
    assert "already present" in second.stdout
    assert (keys / "event.key").read_bytes() == before


def test_token_issue_prints_the_token_alone(tmp_path: Path) -> None:
    run(tmp_path, "keys", "init")
    # Only for a registered user holding the role (issue 16; tests/integration/test_users_cli.py).
    home = Settings.from_env({"CASETRAIL_HOME": str(tmp_path)})
    register(home, "u-7", Role.COORDINATOR, "office", DEFAULT_STREET)
    result = run(
        tmp_path, "token", "issue", "--user", "u-7", "--role", "coordinator", "--unit", "office"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].count(".") == 2


def test_bad_arguments_are_one_line_and_non_zero(tmp_path: Path) -> None:
    run(tmp_path, "keys", "init")
    bad_role = run(tmp_path, "token", "issue", "--user", "u", "--role", "king", "--unit", "x")
    assert_one_line_error(bad_role, "--role")
    missing = run(tmp_path, "token", "issue", "--role", "reporter", "--unit", "x")
    assert_one_line_error(missing, "--user")


def test_serve_without_a_key_stops_with_what_to_do(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path, "serve", "--port", "1"), "casetrail keys init")


def test_serve_with_a_wrong_key_stops_with_a_clear_message(tmp_path: Path) -> None:
    demo = run(tmp_path, "demo", "--cases", "2")
    assert demo.returncode == 0, demo.stderr
    wrong = run(tmp_path, "serve", "--port", "1", env={"CASETRAIL_EVENT_KEY": new_key_text()})
    assert_one_line_error(wrong, "not the key this store was written with")
    garbage = run(tmp_path, "serve", "--port", "1", env={"CASETRAIL_EVENT_KEY": "not-a-key"})
    assert_one_line_error(garbage, "event key")


def test_keys_init_refuses_to_replace_the_key_of_a_store_with_events(tmp_path: Path) -> None:
    assert run(tmp_path, "demo", "--cases", "1").returncode == 0
    (tmp_path / "keys" / "event.key").unlink()
    assert_one_line_error(run(tmp_path, "keys", "init"), "restore the key from backup")
    assert not (tmp_path / "keys" / "event.key").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_answers_over_real_http(tmp_path: Path) -> None:
    demo = run(tmp_path, "demo", "--cases", "3")
    assert demo.returncode == 0, demo.stderr
    case_id = demo.stdout.splitlines()[1].split()[-1]
    token = next(
        line.split()[-1]
        for line in demo.stdout.splitlines()
        if line.strip().startswith("coordinator")
    )
    port = _free_port()
    # Its embedded nats-server on a free port too: the default one (4223) may be held by
    # another test run on this machine (or another xdist worker), and serve would stop.
    environ = {
        **os.environ,
        "CASETRAIL_HOME": str(tmp_path),
        "CASETRAIL_NATS_PORT": str(_free_port()),
    }
    server = subprocess.Popen(
        [CASETRAIL, "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        # A start (the embedded broker, the followers) took more than 20 s on a loaded machine;
        # a passing run waits only as long as the start takes.
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                # Its stderr is read once it has ended: read from a live server, it never ends,
                # and the test hung instead of failing.
                server.terminate()
                _, err = server.communicate(timeout=30)
                pytest.fail(f"server did not start within 120 s: {err}")
            time.sleep(0.2)
        answer = httpx.get(
            f"{base}/v1/cases/{case_id}",
            headers={"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "consultation"},
        )
        assert answer.status_code == 200
        assert answer.json()["id"] == case_id
        assert httpx.get(f"{base}/docs").status_code == 200
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why it ended.
    assert server.returncode in (0, -15)
    assert '"event": "request"' in err
    assert '"event": "service_stopped"' in err


def test_a_setting_that_is_not_a_number_is_one_line(tmp_path: Path) -> None:
    run(tmp_path, "keys", "init")
    result = run(tmp_path, "serve", "--port", "1", env={"CASETRAIL_REFUSAL_FLOOR_MS": "soon"})
    assert_one_line_error(result, "CASETRAIL_REFUSAL_FLOOR_MS must be a number")


def test_workers_and_embedded_followers_do_not_mix_one_line(tmp_path: Path) -> None:
    run(tmp_path, "keys", "init")
    result = run(
        tmp_path,
        "serve",
        "--port",
        "1",
        env={"CASETRAIL_WORKERS": "2", "CASETRAIL_PROJECTIONS": "embedded"},
    )
    assert_one_line_error(result, "CASETRAIL_PROJECTIONS=embedded needs one API process")
    result = run(tmp_path, "serve", "--port", "1", env={"CASETRAIL_WORKERS": "many"})
    assert_one_line_error(result, "CASETRAIL_WORKERS must be a whole number")
    result = run(tmp_path, "serve", "--port", "1", env={"CASETRAIL_PROJECTIONS": "sometimes"})
    assert_one_line_error(result, "CASETRAIL_PROJECTIONS must be one of auto, embedded")


def _descendants(pid: int) -> set[int]:
    """Processes below `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(entry.parent.name)] = int(entry.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_serve_with_two_workers_follows_in_a_process_of_its_own(tmp_path: Path) -> None:
    """CASETRAIL_WORKERS=2: two API processes answer, the read models are brought up to date
    by the `projections run` child (the workers do not follow), and SIGTERM leaves no child."""
    demo = run(tmp_path, "demo", "--cases", "3")
    assert demo.returncode == 0, demo.stderr
    token = next(
        line.split()[-1]
        for line in demo.stdout.splitlines()
        if line.strip().startswith("coordinator")
    )
    port = _free_port()
    environ = {**os.environ, "CASETRAIL_HOME": str(tmp_path), "CASETRAIL_WORKERS": "2"}
    environ.pop("CASETRAIL_DATABASE_URL", None)
    # Its log goes to a file: every answer to the polling below is a log line, and a pipe read
    # only at the end fills up (64 KiB) on a slow start, which then stops the workers.
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [CASETRAIL, "serve", "--port", str(port), "--no-messaging"],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    children: set[int] = set()
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "consultation"}
        # Two workers and the follower start before the ledger can answer: under a loaded
        # machine (two test workers, other suites) that took more than 40 s; still a deadline.
        deadline = time.monotonic() + 120
        rows = 0
        while rows < 3:
            assert time.monotonic() < deadline, "the ledger never showed the 3 demo cases"
            assert server.poll() is None, log_path.read_text(errors="replace")[-4000:]
            try:
                page = httpx.get(f"{base}/v1/ledger", headers=headers, timeout=2)
                if page.status_code == 200:
                    rows = page.json()["total"]
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        children = _descendants(server.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
        assert sum(b"projections\x00run" in c for c in commands) == 1
        assert sum(b"spawn_main" in c for c in commands) == 2  # the two workers
    finally:
        server.terminate()
        server.wait(timeout=30)
    err = log_path.read_text(errors="replace")
    assert server.returncode == 0, err[-4000:]
    assert '"event": "projections_running"' in err
    # Children that saw their parent go end on their own (uvicorn's resource tracker when its
    # pipe closes): give them a moment, then none may be left.
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in children if _alive(pid)]
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
