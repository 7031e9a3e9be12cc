"""A revoked role and a suspended user are refused on BOTH API processes of a two-worker
`casetrail serve` within the documented bound (`gateway.auth.DEFAULT_REFRESH_SECONDS`, 2 s),
and each worker records its refusals (issue 16).

How: a real `casetrail serve` with CASETRAIL_WORKERS=2 on SQLite (tests.integration.live_service).
Which worker answered a request is read from Linux's /proc: the server side of the client's
connection (its local port in /proc/net/tcp) is a socket held open by exactly one worker
process. Two keep-alive clients are kept on different workers; after the revocation (answered
by the API, so stored) and after the suspension (stored by an administrator's tool on the same
store, as `casetrail user suspend` does), every request is attributed to its worker until each
worker has refused, and the time each took is compared with the bound. Nothing of the display
names registered appears in the service's log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import httpx
from faker import Faker

from domain.access import Actor
from domain.taxonomy import Role
from domain.users import ChangeStatus, Post
from gateway import keyring
from gateway.auth import DEFAULT_REFRESH_SECONDS, issue_token
from gateway.bootstrap import open_application
from gateway.settings import Settings
from tests.integration.live_service import LiveService, missing

STREET: Final = "county"
UNIT: Final = "county-audit"
# The documented bound, plus what a loaded 2-core machine adds to a request here.
BOUND: Final = DEFAULT_REFRESH_SECONDS + 1.5
# A worker is up in a few seconds on an idle machine; on a loaded one (uvicorn restarts a worker
# that does not answer its 5 s health check while it starts) it may take much longer.
START_TIMEOUT: Final = 300
NAMES: Final = {user: Faker("zh_CN").name() for user in ("admin-1", "audit-1", "audit-2")}


def _descendants(pid: int) -> set[int]:
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


def _workers(service: LiveService) -> list[int]:
    assert service.process is not None
    found = []
    for pid in _descendants(service.process.pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return sorted(found)


def _worker_of(response: httpx.Response, server_port: int, workers: list[int]) -> int:
    """The worker process holding the server side of the response's connection."""
    _, client_port = response.extensions["network_stream"].get_extra_info("client_addr")
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(f.split(":")[1], 16) for f in fields[1:3])
        if (local, remote) == (server_port, client_port):
            inode = fields[9]
            break
    assert inode is not None, "the connection is not in /proc/net/tcp"
    target = f"socket:[{inode}]"
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().as_posix() == target:
                    return pid
            except OSError:
                continue
    raise AssertionError("no worker holds the connection")


def _register(settings: Settings) -> None:
    application = open_application(settings)
    try:
        by = {"user": "cli:operator", "role": "operator", "unit": "", "street": ""}
        for user, role, post in (
            ("admin-1", Role.ADMIN, Post.SYSTEM_ADMINISTRATOR),
            ("audit-1", Role.COMPLIANCE_AUDITOR, Post.COMPLIANCE_REVIEWER),
            ("audit-2", Role.COMPLIANCE_AUDITOR, Post.COMPLIANCE_REVIEWER),
        ):
            unit = "county-admin" if role is Role.ADMIN else UNIT
            application.ensure_user(
                Actor(user, role, unit, STREET),
                display_name=NAMES[user],
                post=post,
                by=by,
                reason="设立",
            )
    finally:
        application.close()


def _suspend(settings: Settings, user: str) -> None:
    """What `casetrail user suspend` does: a write to the store, by another process's tool."""
    application = open_application(settings)
    try:
        by = {"user": "cli:operator", "role": "operator", "unit": "", "street": ""}
        application.suspend_user(user, ChangeStatus(reason="停职调查"), by)
    finally:
        application.close()


class Pair:
    """Two keep-alive clients answered by different workers."""

    def __init__(self, service: LiveService) -> None:
        self.port = service.port
        self.workers = _workers(service)
        assert len(self.workers) == 2, f"expected two API workers, found {self.workers}"
        self.clients: dict[int, httpx.Client] = {}
        spare: list[httpx.Client] = []
        for _ in range(40):
            client = httpx.Client(base_url=service.base, timeout=10)
            worker = _worker_of(client.get("/healthz"), self.port, self.workers)
            if worker in self.clients:
                spare.append(client)
            else:
                self.clients[worker] = client
            if len(self.clients) == 2:
                break
        for client in spare:
            client.close()
        assert len(self.clients) == 2, "the connections never reached both workers"

    def statuses(self, path: str, headers: dict[str, str]) -> dict[int, int]:
        """One request on each client: {worker that answered: status}."""
        found = {}
        for client in self.clients.values():
            response = client.get(path, headers=headers)
            found[_worker_of(response, self.port, self.workers)] = response.status_code
        return found

    def refused_on_both_within(self, path: str, headers: dict[str, str]) -> dict[int, float]:
        """Seconds until each worker refused (401); once refused, a worker never admits again."""
        started = time.monotonic()
        refused: dict[int, float] = {}
        while len(refused) < 2:
            elapsed = time.monotonic() - started
            assert elapsed < 15, f"refused so far by {refused} only"
            for worker, status in self.statuses(path, headers).items():
                if status == 401:
                    refused.setdefault(worker, time.monotonic() - started)
                else:
                    assert status == 200, status
                    assert worker not in refused, "a worker admitted the user again"
            time.sleep(0.05)
        return refused

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def test_revoked_and_suspended_users_are_refused_on_both_workers_within_the_bound(
    tmp_path: Path,
) -> None:
    if not Path("/proc/net/tcp").exists():
        missing("/proc/net/tcp (Linux) is needed to tell the workers apart")
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    settings = Settings.from_env({"CASETRAIL_HOME": str(home)})
    _register(settings)
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")

    def bearer(user: str, role: Role, unit: str = UNIT) -> dict[str, str]:
        token = issue_token(key, user=user, role=role, unit=unit, street=STREET)
        return {"Authorization": f"Bearer {token}"}

    admin = bearer("admin-1", Role.ADMIN, "county-admin")
    audit_1 = bearer("audit-1", Role.COMPLIANCE_AUDITOR)
    audit_2 = bearer("audit-2", Role.COMPLIANCE_AUDITOR)
    service = LiveService(home, tmp_path / "serve.log", env={"CASETRAIL_WORKERS": "2"}).start(
        timeout=START_TIMEOUT
    )
    pair: Pair | None = None
    try:
        pair = Pair(service)
        path = "/v1/users/admin-1/history"
        # Both workers admit both auditors (each has them in its snapshot now).
        assert set(pair.statuses(path, audit_1).values()) == {200}
        assert set(pair.statuses(path, audit_2).values()) == {200}

        revoke = {"role": "compliance_auditor", "reason": "调离合规审查岗位"}
        answer = next(iter(pair.clients.values())).post(
            "/v1/users/audit-1/revocations", json=revoke, headers=admin
        )
        assert answer.status_code == 200, answer.text
        revoked = pair.refused_on_both_within(path, audit_1)
        assert max(revoked.values()) <= BOUND, revoked

        _suspend(settings, "audit-2")
        suspended = pair.refused_on_both_within(path, audit_2)
        assert max(suspended.values()) <= BOUND, suspended
        # The administrator is still admitted on both.
        assert set(pair.statuses(path, admin).values()) == {200}
    finally:
        if pair is not None:
            pair.close()
        service.stop()

    application = open_application(settings)
    try:
        refusals = application.authentication_refusals()
    finally:
        application.close()
    # Each worker stores its own first refusal of each reason (its throttle is its own).
    reasons = [e.reason for e in refusals]
    assert reasons.count("role_not_held") >= 2, reasons
    assert reasons.count("user_suspended") >= 2, reasons
    log = service.logs()
    for name in NAMES.values():
        assert name not in log
