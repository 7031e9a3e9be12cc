"""A real casetrail server for HTTP benchmarks, and the bench-only variant without access writes.

Run as a process of its own (`Server` below starts it), it does what `casetrail serve
--no-messaging` does, through the same `gateway.serving.run`: settings from the environment,
JSON logs configured, the store opened and the key checked, the API workers (the service's own
`create_app`, uvicorn with the same options) and the followers' process as the settings say
(`service_env`: as in production). One thing may differ, and only here:

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

With `CASETRAIL_BENCH_SAVE_ENDPOINT=yes` (a setting of `gateway/settings.py`, off by default;
only this launcher looks at it) every worker also answers `POST /_bench/save`: the baseline
that `bench.commands` measures commands against, in the same server and workers. It takes one
request's events, encoded by the application's own transcoder (JSON, the way the store encodes
them before the cipher), authenticates the bearer token as every API route does, decodes them
as the library's mapper does (`object.__new__` of the topic's class, its state set), and calls
`Application.save` on them: HTTP, authentication, JSON parsing, encryption and the durable
commit, and none of the service's own work (validation, loading the case, the rules, the
command's group commit). The service's app (`gateway.serving.service_app`, `casetrail serve`)
never has it.

The variant reaches the workers through `CASETRAIL_BENCH_VARIANT`, which only `bench_app` in
this module reads. Every variant also answers `GET /_bench/stats` (one worker's group commit
batches and events), a route that only this launcher adds; `Server.stats()` sums what each
worker leaves behind when it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import get_topic, resolve_topic
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from domain.access import AccessDenied, CaseAccessed
from domain.application import CaseTrail
from domain.group_commit import Committing
from domain.refusals import AuthenticationRefused
from gateway import bootstrap, logs, serving
from gateway.bootstrap import open_application
from gateway.http.app import create_app
from gateway.http.dependencies import ActorDep
from gateway.settings import Settings

VARIANTS: Final = ("audited", "no-access-write", "audited-no-group-commit")


class UnauditedCaseTrail(CaseTrail):
    """Bench only: every read is decided and disclosed as by the service, but not recorded."""

    def _record_access(self, event: CaseAccessed | AccessDenied | AuthenticationRefused) -> None:
        return None

    def _submit_accesses(self, events: Sequence[CaseAccessed | AccessDenied]) -> Committing:
        return Committing.stored()


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


VARIANT_ENV: Final = "CASETRAIL_BENCH_VARIANT"  # read by `bench_app` only, never by the service
STATS_ENV: Final = "CASETRAIL_BENCH_STATS_DIR"


def bench_app() -> FastAPI:
    """One worker's app, as `gateway.serving.service_app` builds it, for the variant named in
    the environment; it also answers `GET /_bench/stats` and leaves its group-commit counts in
    `$CASETRAIL_BENCH_STATS_DIR/<pid>.json` when it stops (each worker has its own)."""
    variant = os.environ[VARIANT_ENV]
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    application = build_application(settings, variant)
    committer = application.access_commits

    def counts() -> dict[str, Any]:
        return {
            "variant": variant,
            "group_commit_batches": committer.batches if committer else 0,
            "group_commit_events": committer.events if committer else 0,
        }

    app = create_app(settings, bootstrap.api(settings, application))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: FastAPI) -> AsyncIterator[Any]:
        try:
            async with inner(target) as state:
                yield state
        finally:
            folder = os.environ.get(STATS_ENV)
            if folder:
                (Path(folder) / f"{os.getpid()}.json").write_text(json.dumps(counts()))

    app.router.lifespan_context = lifespan

    @app.get("/_bench/stats", include_in_schema=False)
    def stats() -> dict[str, Any]:
        return counts()

    if settings.bench_save_endpoint:
        mount_raw_save(app, application)
    return app


SAVE_PATH: Final = "/_bench/save"


def encode_events(application: CaseTrail, events: Sequence[DomainEventProtocol[Any]]) -> bytes:
    """A request body for `POST /_bench/save`: the events as the library's mapper takes them
    apart (topic, originator id and version, the rest of the state), in the application's
    transcoder's JSON."""
    items = []
    for event in events:
        state = dict(vars(event))
        items.append(
            {
                "topic": get_topic(type(event)),
                "originator_id": state.pop("originator_id"),
                "originator_version": state.pop("originator_version"),
                "state": state,
            }
        )
    return application.mapper.transcoder.encode(items)


def decode_events(application: CaseTrail, body: bytes) -> list[DomainEventProtocol[Any]]:
    """`encode_events` undone, as `Mapper.to_domain_event` builds an event from its state."""
    events: list[DomainEventProtocol[Any]] = []
    for item in application.mapper.transcoder.decode(body):
        state = dict(item["state"])
        state["originator_id"] = item["originator_id"]
        state["originator_version"] = item["originator_version"]
        event = object.__new__(resolve_topic(item["topic"]))
        object.__setattr__(event, "__dict__", state)
        events.append(event)
    return events


def mount_raw_save(app: FastAPI, application: CaseTrail) -> None:
    """`POST /_bench/save` (see the module's docstring): authenticated like every route (the
    service's own `current_actor`), then a raw `Application.save` of the body's events, in the
    worker's thread pool as the command routes run theirs."""

    def save(body: bytes) -> int:
        events = decode_events(application, body)
        application.save(*events)
        return len(events)

    @app.post(SAVE_PATH, status_code=201, include_in_schema=False)
    async def raw_save(request: Request, actor: ActorDep) -> dict[str, Any]:
        saved = await run_in_threadpool(save, await request.body())
        return {"saved": saved, "by": actor.user}


def serve(port: int, variant: str) -> None:
    """What `casetrail serve --no-messaging` does (`gateway.serving.run`: the workers and the
    followers' process as the settings say), with the variant's app in every worker."""
    os.environ[VARIANT_ENV] = variant
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    app = "bench.server:bench_app"
    serving.run(settings, host="127.0.0.1", port=port, messaging=False, app=app)


# A server is quiet when it uses less than this share of a CPU (its followers' polls, the user
# registry's refresh and the heartbeats use a few per cent when no request comes).
SETTLED_CPU: Final = 0.05


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
        # Generous: on this shared machine (load average 30 at times) a start takes a minute.
        startup_timeout: float = 240.0,
    ) -> None:
        self.port = port
        self.variant = variant
        self.env = dict(env)
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.stats_dir = log_path.with_suffix(".stats")

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
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        env[STATS_ENV] = str(self.stats_dir)
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
        """CPU time (user + system) the server has used so far: its process, its workers and
        the followers' process, all threads."""
        return process_tree_cpu_seconds(self.pid)

    def followers_cpu_seconds(self) -> float:
        """The part of `cpu_seconds()` used by the followers' process (`projections run`):
        the read models and the evidence log."""
        return process_tree_cpu_seconds(self.pid, named=FOLLOWERS_COMMAND)

    def settled_cpu_seconds(self, window: float = 0.3, limit: float = 10.0) -> float:
        """`cpu_seconds()` once the server has gone quiet: less than `SETTLED_CPU` of CPU in
        the last `window` seconds (or after `limit` seconds). Read at the end of a block, it
        counts the work a block's requests left behind: the followers' process indexes a
        block's events up to a quarter of a second after its last answer (`GATHER_SECONDS`),
        and read at once that work fell outside every block of this server, or (commands:
        the API and the raw save share one server) into the next side's block."""
        deadline = time.monotonic() + limit
        last = self.cpu_seconds()
        while True:
            time.sleep(window)
            now = self.cpu_seconds()
            if now - last < SETTLED_CPU * window or time.monotonic() >= deadline:
                return now
            last = now

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
        """Group-commit counts summed over the workers; read after `stop()` (each worker
        leaves its own when it stops)."""
        total: dict[str, Any] = {"group_commit_batches": 0, "group_commit_events": 0}
        for path in sorted(self.stats_dir.glob("*.json")):
            found = json.loads(path.read_text())
            for key in total:
                total[key] += found[key]
        return total

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


# What the followers' process's command line holds (`gateway.supervisor` starts it).
FOLLOWERS_COMMAND: Final = "projections run"


def process_tree_cpu_seconds(pid: int, named: str | None = None) -> float:
    """`process_cpu_seconds` of a process and of every process below it (Linux /proc); with
    `named`, only of those whose command line holds that text."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if named is None or named in _command_line(current):
            total += process_cpu_seconds(current)
        todo.extend(children.get(current, ()))
    return total


def _command_line(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0.0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The service's environment for a benchmark store (keys under `home/keys`), laid out as
    ops/casetrail.env.example lays out production: one API worker per CPU, the read models and
    the evidence log followed by their own process (`CASETRAIL_PROJECTIONS=process`). Every
    server gets a store of its own, since followers of one store would share its tables."""
    return {
        "CASETRAIL_HOME": str(home),
        "CASETRAIL_DATABASE_URL": database_url,
        "CASETRAIL_LOG_LEVEL": "info",
        "CASETRAIL_WORKERS": str(os.cpu_count() or 1),
        "CASETRAIL_PROJECTIONS": "process",
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
