"""A real casetrail server for HTTP benchmarks, and the bench-only variant without access writes.

Run as a process of its own (`Server` below starts it), it does what `casetrail serve` does:
settings from the environment, JSON logs configured, the store opened and the key checked, the
service's own `create_app`, uvicorn with the same options. One thing may differ, and only here:

    python -m bench.server --port P --variant audited       # the service as it ships
    python -m bench.server --port P --variant no-access-write
    python -m bench.server --port P --variant audited-no-group-commit

`no-access-write` builds the app around `UnauditedCaseTrail`, whose `_record_access` stores
nothing: authentication, the need-to-know decision and `disclose` are the service's own code.
It is the baseline that the cost of auditing is measured against, and it exists in this module
only: no setting or environment variable of the service can select it (gateway/settings.py
knows nothing of it). The application is opened by the service's own `open_application`, as
`casetrail serve` opens it, and the baseline's class is then swapped for the subclass, so that
whatever the service does at start the baseline does too. `audited-no-group-commit` stores
each access event in its own transaction (what `ACCESS_GROUP_COMMIT=n` in the Application's
environment gives), the naive way.

Every variant also answers `GET /_bench/stats` (group commit batches and events), a route that
only this launcher adds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx
import uvicorn

from domain.access import AccessDenied, CaseAccessed
from domain.application import CaseTrail
from gateway import logs
from gateway.api import create_app
from gateway.settings import Settings
from gateway.startup import open_application

VARIANTS: Final = ("audited", "no-access-write", "audited-no-group-commit")


class UnauditedCaseTrail(CaseTrail):
    """Bench only: every read is decided and disclosed as by the service, but not recorded."""

    def _record_access(self, event: CaseAccessed | AccessDenied) -> None:
        return None


def build_application(settings: Settings, variant: str) -> CaseTrail:
    """The application exactly as `casetrail serve` opens it (`open_application`: keys, store,
    key check, store guard), then, for a baseline, changed in the one respect it is about."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    application = open_application(settings)
    if variant == "no-access-write":
        # Same object, same state; only `_record_access` differs (UnauditedCaseTrail adds none).
        application.__class__ = UnauditedCaseTrail
    elif variant == "audited-no-group-commit" and application.access_commits is not None:
        # What ACCESS_GROUP_COMMIT=n in the Application's environment gives: one commit per read.
        application.access_commits.close()
        application.access_commits = None
    return application


def serve(port: int, variant: str) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = build_application(settings, variant)
    app = create_app(settings, application=application)

    @app.get("/_bench/stats", include_in_schema=False)
    def stats() -> dict[str, Any]:
        committer = application.access_commits
        return {
            "variant": variant,
            "group_commit_batches": committer.batches if committer else 0,
            "group_commit_events": committer.events if committer else 0,
        }

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


class Server:
    """`python -m bench.server` as a subprocess on a loopback port; stopped on exit.

    Its JSON log lines go to `log_path` (as a service's would go to its journal), so that
    writing them costs what it costs in production without filling a pipe nobody reads.
    """

    def __init__(
        self,
        *,
        port: int,
        variant: str,
        env: Mapping[str, str],
        log_path: Path,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = port
        self.variant = variant
        self.env = dict(env)
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Server:
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, **self.env, "PYTHONPATH": str(root)}
        # Each server its own read model file, so that servers sharing a store never share it.
        readmodels = self.log_path.with_suffix(".readmodels.sqlite")
        env.setdefault("CASETRAIL_READMODEL_URL", f"sqlite:///{readmodels}")
        with self.log_path.open("ab") as log:
            command = [sys.executable, "-m", "bench.server", "--port", str(self.port)]
            command += ["--variant", self.variant]
            self.process = subprocess.Popen(  # noqa: S603 (this interpreter, our arguments)
                command,
                cwd=root,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://127.0.0.1:{self.port}/healthz"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bench server {self.variant} exited at start:\n{tail}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"bench server {self.variant} not ready in {self.startup_timeout} s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far, all threads."""
        return process_cpu_seconds(self.pid)

    def logged_errors(self) -> dict[str, int]:
        """Counts of the error log lines the server wrote: "event/error_type" -> count."""
        found: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") == "error":
                key = f"{record.get('event')}/{record.get('error_type', '')}"
                found[key] = found.get(key, 0) + 1
        return found

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(
            f"http://127.0.0.1:{self.port}/_bench/stats", timeout=5.0
        ).json()
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> Server:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0.0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The service's environment for a benchmark store (keys under `home/keys`).

    Read models are not followed (`CASETRAIL_PROJECTIONS=off`) unless `extra` says otherwise:
    several servers share one store in a benchmark, and each would follow it into the same read
    model tables. The projections have their own benchmark (bench/rebuild.py).
    """
    return {
        "CASETRAIL_HOME": str(home),
        "CASETRAIL_DATABASE_URL": database_url,
        "CASETRAIL_LOG_LEVEL": "info",
        "CASETRAIL_PROJECTIONS": "off",
        **extra,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variant", choices=VARIANTS, default="audited")
    args = parser.parse_args(argv)
    serve(args.port, args.variant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
