"""Observability (issue 21): `/metrics`, `/readyz`, and followers' status across processes.

Guarantees proven here, with the real app on real SQLite and PostgreSQL stores:
- `/metrics` (Prometheus text) times requests by route TEMPLATE, audit writes (time and group
  size), counts refusals by rule, and reports the store's figures (projection lag and running,
  relay backlog, evidence lag, undelivered notices, checkpoint age). After planted personal
  data (name, ID number, phone, description) went through reports, reads, refusals, a path
  and a query that carry them, no planted value and no case id is anywhere in the exposition,
  and every `route` label is a template of the app's or `unmatched`.
- Who reads the figures: with `CASETRAIL_METRICS_TOKEN` only its bearer (else 401); without
  it only a loopback peer (else 403). `/readyz`'s verdict is for anyone, its figures are not.
- `/readyz` is 503 while a check fails (no relay, a follower stopped) and 200 once the store,
  the read models, the evidence log and the checkpoints are current.
- A worker whose followers run elsewhere reports them as the other process runs them: running
  while its heartbeat is fresh, stopped as soon as it stops (`/healthz`, `/readyz`).
- Two workers under `casetrail serve`: a scrape on any worker counts every worker's requests
  (multiprocess mode, `$CASETRAIL_HOME/metrics`), and the followers in the child process are
  reported running.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from domain.taxonomy import Role
from gateway import bootstrap, keyring
from gateway.http.app import create_app
from gateway.http.metrics import ENV_TOKEN, UNMATCHED
from gateway.http.probes import ENV_MESSAGING
from gateway.settings import Settings
from projections.follower import HEARTBEAT_STALE_SECONDS, beat
from tests.conftest import TokenFactory, pg_url
from tests.integration.live_service import LiveService
from tests.integration.planted import planted_case
from tests.messaging.stack import build_stack, wait_for

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
TOKEN = "metrics-" + uuid.uuid4().hex


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The service's settings (tests/conftest.py) with the metrics token set."""
    return settings.model_copy(update={"metrics_token": TOKEN})


@pytest.fixture
def scraper() -> dict[str, str]:
    """The scraper's headers: the metrics token the service's settings hold."""
    return {"Authorization": f"Bearer {TOKEN}"}


def configure(client: TestClient, **updates: object) -> None:
    """Change the running service's settings (as a restart with them would), probes rebuilt."""
    services = client.app.state.services  # type: ignore[attr-defined]
    services.settings = services.settings.model_copy(update=updates)
    client.app.state.probes = None  # type: ignore[attr-defined]


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _templates(routes: Any) -> set[str]:
    """Every route template of the app, in included routers too."""
    found: set[str] = set()
    for route in routes:
        if isinstance(route, APIRoute):
            found.add(route.path)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found |= _templates(inner.routes)
    return found


def _wait_for(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_metrics_hold_no_personal_data_and_no_case_id(
    client: TestClient, auth: TokenFactory, scraper: dict[str, str]
) -> None:
    # The counters are the process's (the test session's): compare with a scrape before.
    before = _samples(client.get("/metrics", headers=scraper).text)
    planted = planted_case()
    reporter = auth(Role.REPORTER, VILLAGE)
    created = client.post("/v1/cases", json=planted.body, headers=reporter)
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    assert client.get(f"/v1/cases/{case_id}", headers=coordinator).status_code == 200
    outsider = auth(Role.REPORTER, "xihe-village", purpose="follow_up")
    assert client.get(f"/v1/cases/{case_id}", headers=outsider).status_code == 404
    # Personal data where it does not belong: in a path no route takes, in a query, in a
    # path parameter that is not a UUID.
    client.get(f"/nothing/{quote(planted.name)}/{planted.id_number}?phone={planted.phone}")
    client.get(f"/v1/cases/{planted.id_number}", headers=coordinator)
    client.get(f"/v1/cases/{case_id}?q={quote(planted.description)}", headers=coordinator)

    scraped = client.get("/metrics", headers=scraper)
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    exposed = text.encode()
    for what, needle in {**planted.needles(), "case id": case_id.encode()}.items():
        assert needle not in exposed, what
        assert quote(needle.decode()).encode() not in exposed, what
    assert planted.id_number[:17].encode() not in exposed

    samples = _samples(text)
    # The registry is the process's: a benchmark launcher's routes (`/_bench/...`, mounted by
    # tests/integration/test_bench_measures.py in the same worker) may be labelled there too.
    routes = {
        labels["route"]
        for _, labels, _ in samples
        if "route" in labels and not labels["route"].startswith("/_bench/")
    }
    app_routes = client.app.router.routes  # type: ignore[attr-defined]
    mounts = {"/static/{path}", "/docs/static/{path}"}
    assert routes <= _templates(app_routes) | mounts | {UNMATCHED}
    assert {"/v1/cases", "/v1/cases/{case_id}", UNMATCHED} <= routes

    def total(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
        return sum(
            v for n, ls, v in found if n == name and all(ls.get(k) == x for k, x in labels.items())
        )

    def value(name: str, **labels: str) -> float:
        """The figure now; for a counter or a histogram, how much it grew in this test."""
        grown = name.endswith(("_total", "_count"))
        return total(samples, name, **labels) - (total(before, name, **labels) if grown else 0)

    read = {"route": "/v1/cases/{case_id}", "method": "GET"}
    assert value("casetrail_http_request_duration_seconds_count", status="200", **read) == 2
    assert value("casetrail_http_request_duration_seconds_count", status="404", **read) == 1
    assert value("casetrail_access_refusals_total", rule="out_of_scope") == 1
    # Every read stored its access event through the access committer, timed and sized.
    assert value("casetrail_audit_write_group_size_count", committer="access-group-commit") >= 3
    assert value("casetrail_audit_write_seconds_count", committer="command-group-commit") >= 1
    # The store's figures: the read models' names only as labels.
    lags = {ls["projection"] for n, ls, _ in samples if n == "casetrail_projection_lag_events"}
    assert lags and all(name.isidentifier() for name in lags)
    assert value("casetrail_store_up") == 1
    assert value("casetrail_undelivered_notices") == 0
    assert value("casetrail_store_position") >= 2


def test_figures_need_the_token_or_a_local_peer(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", headers={"Authorization": "Bearer not-it"})
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"  # not a web page
    anonymous = client.get("/readyz")
    assert anonymous.status_code in (200, 503)
    assert all(set(check) == {"ok"} for check in anonymous.json()["checks"].values())
    with_token = client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert any(len(check) > 1 for check in with_token.json()["checks"].values())
    # No token set: the test client's peer is not a loopback address.
    configure(client, metrics_token=None)
    assert client.get("/metrics").status_code == 403


def test_ready_once_followers_and_evidence_are_current(
    client: TestClient, auth: TokenFactory, scraper: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    created = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    )
    assert created.status_code == 201
    # Messaging required and no relay ever ran: not ready, and the relay check says why.
    not_ready = client.get("/readyz", headers=scraper)
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["relay"] == {"ok": False, "running": False, "lag": None}
    # A layout without messaging: ready once the followers in this process are current.
    configure(client, ready_messaging="ignore")

    def ready() -> bool:
        answer = client.get("/readyz", headers=scraper)
        lag: int = answer.json()["checks"]["projections"]["max_lag"]
        return answer.status_code == 200 and lag == 0

    assert _wait_for(ready), client.get("/readyz", headers=scraper).json()
    checks = client.get("/readyz", headers=scraper).json()["checks"]
    assert set(checks) == {"store", "projections", "evidence", "checkpoint"}
    assert checks["projections"]["stopped"] == [] and checks["projections"]["max_lag"] == 0
    assert checks["store"]["position"] >= 1


@pytest.fixture
def api_without_followers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """An API process whose followers run elsewhere (`CASETRAIL_PROJECTIONS=process`)."""
    elsewhere = settings.model_copy(update={"projections": "process", "ready_messaging": "ignore"})
    assert not elsewhere.followers_in_api
    with TestClient(create_app(elsewhere), raise_server_exceptions=False) as test_client:
        yield test_client


def test_followers_of_another_process_are_reported_as_they_run(
    api_without_followers: TestClient,
    settings: Settings,
    auth: TokenFactory,
    scraper: dict[str, str],
) -> None:
    client = api_without_followers
    health_headers = auth(Role.COORDINATOR, OFFICE)

    def running() -> set[bool]:
        found = client.get("/healthz", headers=health_headers).json()["projections"]
        return {p["running"] for p in found["projections"]}

    assert running() == {False}
    stopped = client.get("/readyz", headers=scraper).json()["checks"]["projections"]
    assert stopped["ok"] is False and stopped["stopped"]

    # The followers, as `casetrail projections run` runs them: their own objects, their own
    # connections; what the API knows of them is only what they store.
    followers = bootstrap.followers(settings)
    followers.readmodels.start(poll_seconds=0.1)
    try:
        assert _wait_for(lambda: running() == {True}, timeout=20), running()
        found = client.get("/healthz", headers=health_headers).json()["projections"]
        assert all(p["heartbeat_age"] is not None for p in found["projections"])
        assert client.get("/readyz", headers=scraper).json()["checks"]["projections"]["ok"]
        scraped = client.get("/metrics", headers=scraper).text
        up = [v for n, _, v in _samples(scraped) if n == "casetrail_projection_running"]
        assert up and set(up) == {1.0}
    finally:
        followers.readmodels.stop()
        followers.close()
    # Stopped: reported at once, not when the heartbeat goes stale.
    assert running() == {False}


# --- two workers under `casetrail serve` ----------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_workers_share_their_metrics(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    env = {"CASETRAIL_WORKERS": "2", ENV_TOKEN: TOKEN, ENV_MESSAGING: "ignore"}
    if store == "postgres":
        env["CASETRAIL_DATABASE_URL"] = pg_url(request.getfixturevalue("pg_schema"))
    service = LiveService(home, tmp_path / "serve.log", env=env).start(timeout=120)
    scraper = {"Authorization": f"Bearer {TOKEN}"}
    try:
        requests = 60

        def one(_: int) -> int:  # a new connection each, eight at once: both workers take some
            return httpx.get(f"{service.base}/v1/taxonomy", timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, range(requests))) == {200}

        def counted(text: str) -> float:
            return sum(
                v
                for n, ls, v in _samples(text)
                if n == "casetrail_http_request_duration_seconds_count"
                and ls.get("route") == "/v1/taxonomy"
            )

        # Whichever worker answers a scrape, it counts every worker's requests.
        for _ in range(6):
            scraped = httpx.get(f"{service.base}/metrics", headers=scraper, timeout=10)
            assert scraped.status_code == 200, scraped.text
            assert counted(scraped.text) == requests
        files = list((home / "metrics").glob("*.db"))
        assert len({f.stem.rsplit("_", 1)[-1] for f in files}) >= 2, files

        # The followers run in `casetrail serve`'s child process: the workers say so.
        def ready() -> dict[str, Any]:
            answer = httpx.get(f"{service.base}/readyz", headers=scraper, timeout=10)
            found: dict[str, Any] = answer.json()
            return found

        assert _wait_for(lambda: ready()["status"] == "ready", timeout=60), ready()
        assert ready()["checks"]["projections"]["stopped"] == []
    finally:
        assert service.stop() == 0, service.logs()[-3000:]


def test_the_followers_threads_beat(settings: Settings) -> None:
    """The heartbeat is written by the loop itself, and a stop is written at once."""
    followers = bootstrap.followers(settings)
    try:
        follower = next(iter(followers.readmodels.followers.values()))
        stop = threading.Event()
        thread = threading.Thread(target=follower.run, args=(stop, 0.1))
        thread.start()
        try:
            assert _wait_for(lambda: follower.status().heartbeat_age is not None, timeout=10)
        finally:
            stop.set()
            thread.join(10)
        assert follower.status().running is False
    finally:
        followers.close()


# --- the relay, in a process of its own, with a real broker ---------------------------------------


def test_the_relay_of_another_process_is_reported_as_it_runs(tmp_path: Path) -> None:
    stack = build_stack(tmp_path, [("dongshan-village", "东山村", "village")])
    try:
        # The API with messaging (its own broker check), the relay not started yet.
        stack.api = stack.spawn(
            "api", "serve", "--no-messaging", "--port", str(stack.api_port), env={ENV_TOKEN: TOKEN}
        )
        stack.wait_api()
        scraper = {"Authorization": f"Bearer {TOKEN}"}

        def relay() -> dict[str, Any]:
            answer = httpx.get(f"{stack.api_url}/readyz", headers=scraper, timeout=10)
            checks: dict[str, Any] = answer.json()["checks"]
            assert checks["broker"] == {"ok": True, "reachable": 1, "servers": 1}
            found: dict[str, Any] = checks["relay"]
            return found

        assert relay()["ok"] is False and relay()["running"] is False
        process = stack.start_relay()
        current = {"ok": True, "running": True, "lag": 0}
        wait_for(lambda: relay() == current, 60, "the relay to be reported running")
        metrics = httpx.get(f"{stack.api_url}/metrics", headers=scraper, timeout=10).text
        assert ("casetrail_relay_running", {}, 1.0) in _samples(metrics)
        # Stopped (SIGTERM): reported so at once; its position stays where it was.
        assert process.stop() == 0
        assert relay() == {"ok": False, "running": False, "lag": 0}
    finally:
        stack.close()


def test_a_stale_heartbeat_is_a_stopped_follower(settings: Settings) -> None:
    """A follower killed without a word (SIGKILL) leaves a heartbeat that ages: it is reported
    running until the heartbeat is older than HEARTBEAT_STALE_SECONDS, then stopped."""
    followers = bootstrap.followers(settings)
    try:
        follower = next(iter(followers.readmodels.followers.values()))
        beat(follower.recorder)
        assert follower.status().running is True

        def aged(seconds: float) -> None:
            beat_ms = int((time.time() - seconds) * 1000)
            with follower.recorder._writing() as db:
                db.execute(
                    "UPDATE {follower_heartbeats} SET beat_ms = ? WHERE name = ?",
                    (beat_ms, follower.name),
                )

        aged(HEARTBEAT_STALE_SECONDS - 5)
        assert follower.status().running is True
        aged(HEARTBEAT_STALE_SECONDS + 1)
        status = follower.status()
        assert status.running is False
        assert status.heartbeat_age is not None and status.heartbeat_age > HEARTBEAT_STALE_SECONDS
    finally:
        followers.close()


def test_without_a_token_only_this_host_reads_the_figures(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"metrics_token": None})
    local = ("127.0.0.1", 50000)
    with TestClient(create_app(settings), client=local) as here:
        assert here.get("/metrics").status_code == 200
        assert len(here.get("/readyz").json()["checks"]["store"]) > 1  # its figures
    with TestClient(create_app(settings), client=("192.0.2.7", 50000)) as remote:
        assert remote.get("/metrics").status_code == 403
    # Behind a proxy on this host, every request comes from loopback: then none is local.
    proxied = settings.model_copy(
        update={"trusted_proxy_header": "X-Forwarded-For", "trusted_proxies": "127.0.0.1/32"}
    )
    with TestClient(create_app(proxied), client=local) as through_proxy:
        assert through_proxy.get("/metrics").status_code == 403


def test_an_event_waiting_too_long_for_a_checkpoint_is_not_ready(
    client: TestClient,
    auth: TokenFactory,
    scraper: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(client, ready_messaging="ignore", ready_max_checkpoint_age=0.0)
    created = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    )
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")

    def uncovered() -> int:
        found: int = client.get("/readyz", headers=scraper).json()["checks"]["checkpoint"][
            "uncovered"
        ]
        return found

    # The first checkpoint covers what is logged when it is signed; the reads after it wait
    # for the next one (every 60 s by default): longer than the 0 s allowed here.
    assert _wait_for(
        lambda: (
            client.get("/readyz", headers=scraper).json()["checks"]["checkpoint"]["age_seconds"]
            is not None
        )
    )
    client.get(f"/v1/cases/{created.json()['id']}", headers=coordinator)
    assert _wait_for(lambda: uncovered() > 0)
    answer = client.get("/readyz", headers=scraper)
    assert answer.status_code == 503
    assert answer.json()["checks"]["checkpoint"]["ok"] is False
