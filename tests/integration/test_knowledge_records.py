"""Exact knowledge records (issue 13): every access event stores the case version it disclosed or
decided on, the channel it came by, and the client as the service saw it.

- Old stores: the access events of the store written before (tests/fixtures/store_v1) read as
  version 2 with the values that say nothing was recorded (`unrecorded`, no version, an empty
  client); a read today adds one that records all three, in the same access log.
- Every channel, over HTTP through the real ASGI app on SQLite and PostgreSQL: a case read, its
  access log and break-glass (`api`), a bundle, a ledger page, a lookup, an export, and the
  refusals of worklists and reports, each stores its channel and the case version decided on (a
  read after a change records the new version; a refusal naming no case, none); the access log
  answer shows them with the client.
- The client: the socket peer's address, or, only from a trusted proxy, the rightmost untrusted
  address of the configured header (X-Forwarded-For); ignored from any other peer, also by the
  real server (uvicorn's own proxy handling is off); a refused authentication records the same
  address; the user agent bounded and without control or format characters.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi.testclient import TestClient

from domain.access import NO_CASE, AccessDenied, BreakGlassAccessed, CaseAccessed, Channel, Client
from domain.application import CaseTrail
from domain.refusals import AuthenticationRefused
from domain.taxonomy import Purpose, Role
from gateway import keyring
from gateway.auth import issue_token
from gateway.http.app import create_app
from gateway.http.client import USER_AGENT_MAX, ProxyTrust, client_address, user_agent
from gateway.settings import Settings
from projections.readmodels import ReadModels
from tests.architecture.test_stored_topics import (
    COORDINATOR,
    FIXTURE_HOME,
    case_ids_in,
    open_store,
)
from tests.conftest import TokenFactory
from tests.integration.live_service import LiveService, cli
from tests.integration.planted import Planted, planted_case
from tests.integration.test_one_reader import application_of, stored
from tests.people import register

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"
POLICE = "chengguan-police-station"
AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) casetrail-knowledge-test"

# --- the store written before access events had version 2 --------------------------------------


@pytest.fixture
def old_store(tmp_path: Path) -> CaseTrail:
    home = tmp_path / "home"
    shutil.copytree(FIXTURE_HOME, home)
    return open_store(home)


def _accessed_cases(application: CaseTrail) -> list[UUID]:
    return [c for c in case_ids_in(application) if application.access_events(c)]


def test_the_old_stores_access_events_read_as_unrecorded(old_store: CaseTrail) -> None:
    try:
        accessed = _accessed_cases(old_store)
        events = [e for c in accessed for e in old_store.access_events(c)]
        # The fixture holds granted, refused and break-glass reads (write_store.py).
        assert {type(e).__name__ for e in events} >= {
            "CaseAccessed",
            "AccessDenied",
            "BreakGlassAccessed",
        }
        for event in events:
            assert event.case_version is None
            assert event.channel == "unrecorded"
            assert event.client == {"address": "", "user_agent": ""}
        log = old_store.access_log(accessed[0])
        assert log
        assert all(
            (e["channel"], e["case_version"], e["client"])
            == ("unrecorded", None, {"address": "", "user_agent": ""})
            for e in log
        )
    finally:
        old_store.close()


def test_a_read_of_the_old_store_today_records_version_channel_and_client(
    old_store: CaseTrail,
) -> None:
    client = Client("198.51.100.20", "casetrail-test/1")
    try:
        case_id = _accessed_cases(old_store)[0]
        version: int = old_store.repository.get(case_id).version
        before = len(old_store.access_log(case_id))
        answer = old_store.read_case(
            case_id,
            COORDINATOR,
            Purpose.CONSULTATION,
            "req-knowledge",
            channel=Channel.API,
            client=client,
        )
        assert answer["version"] == version
        log = old_store.access_log(case_id)
        assert len(log) == before + 1
        newest = log[-1]
        assert (newest["channel"], newest["case_version"], newest["client"]) == (
            "api",
            version,
            {"address": "198.51.100.20", "user_agent": "casetrail-test/1"},
        )
        assert {e["channel"] for e in log[:-1]} == {"unrecorded"}
        # Stored as version 2: read back through the mapper, with the class version it has.
        stored = old_store.access_events(case_id)[-1]
        assert isinstance(stored, CaseAccessed)
        assert not isinstance(stored, AccessDenied)
        assert "class_version" not in vars(stored)
        assert stored.case_version == version
    finally:
        old_store.close()


# --- every channel, over HTTP ------------------------------------------------------------------


def _knowledge(event: CaseAccessed | AccessDenied) -> tuple[str, int | None]:
    return event.channel, event.case_version


def _only(client: TestClient, response: httpx.Response) -> CaseAccessed | AccessDenied:
    events = stored(client, response)
    assert len(events) == 1, events
    return events[0]


def _version(client: TestClient, case_id: str) -> int:
    found: int = application_of(client).repository.get(UUID(case_id)).version
    return found


@pytest.fixture
def planted(client: TestClient, auth: TokenFactory) -> tuple[Planted, str]:
    planted = planted_case()
    created = client.post("/v1/cases", json=planted.body, headers=auth(Role.REPORTER, VILLAGE))
    assert created.status_code == 201, created.text
    return planted, created.json()["id"]


def _synced(client: TestClient) -> None:
    readmodels: ReadModels = client.app.state.services.readmodels  # type: ignore[attr-defined]
    readmodels.catch_up()


def test_a_case_read_records_the_version_it_disclosed_and_a_later_read_the_new_one(
    client: TestClient, auth: TokenFactory, planted: tuple[Planted, str]
) -> None:
    _, case_id = planted
    headers = {**auth(Role.COORDINATOR, OFFICE, purpose="consultation"), "User-Agent": AGENT}
    first = client.get(f"/v1/cases/{case_id}", headers=headers)
    assert first.status_code == 200, first.text
    event = _only(client, first)
    assert isinstance(event, CaseAccessed)
    assert _knowledge(event) == ("api", first.json()["version"])
    assert event.client == {"address": "testclient", "user_agent": AGENT}

    changed = client.post(
        f"/v1/cases/{case_id}/risk-assessments",
        json={"level": "high", "reason": "家访后评估为高风险。"},
        headers=auth(Role.COORDINATOR, OFFICE),
    )
    assert changed.status_code < 300, changed.text
    second = client.get(f"/v1/cases/{case_id}", headers=headers)
    assert second.status_code == 200
    assert second.json()["version"] == first.json()["version"] + 1
    assert _knowledge(_only(client, second)) == ("api", second.json()["version"])

    # A refusal records the version it was decided on; a case that does not exist, none.
    far = auth(Role.COORDINATOR, "far-office", street="far-street", purpose="consultation")
    refused = client.get(f"/v1/cases/{case_id}", headers=far)
    assert refused.status_code == 404
    denied = _only(client, refused)
    assert isinstance(denied, AccessDenied)
    assert _knowledge(denied) == ("api", second.json()["version"])
    missing = client.get(f"/v1/cases/{uuid4()}", headers=headers)
    assert missing.status_code == 404
    assert _knowledge(_only(client, missing)) == ("api", None)


def test_break_glass_the_access_log_and_the_bundle_record_their_channel_and_version(
    client: TestClient, auth: TokenFactory, planted: tuple[Planted, str]
) -> None:
    _, case_id = planted
    version = _version(client, case_id)
    far = auth(Role.COORDINATOR, "far-office", street="far-street")
    opened = client.post(
        f"/v1/cases/{case_id}/break-glass",
        json={"reason": "孩子今晨失联，需要立即联系监护人。"},
        headers={**far, "User-Agent": AGENT},
    )
    assert opened.status_code == 200, opened.text
    glass = _only(client, opened)
    assert isinstance(glass, BreakGlassAccessed)
    assert _knowledge(glass) == ("api", version)

    bundle = client.get(
        f"/v1/evidence/cases/{case_id}/bundle",
        headers=auth(Role.COORDINATOR, OFFICE, purpose="consultation"),
    )
    assert bundle.status_code == 200, bundle.text
    assert _knowledge(_only(client, bundle)) == ("bundle", version)

    auditor = {
        **auth(Role.COMPLIANCE_AUDITOR, "county-compliance", purpose="compliance_review"),
        "User-Agent": "auditor-agent/2",
    }
    log = client.get(f"/v1/cases/{case_id}/accesses", headers=auditor)
    assert log.status_code == 200, log.text
    assert _knowledge(_only(client, log)) == ("api", version)
    entries: list[dict[str, Any]] = log.json()["access_log"]
    # The access log answer: each entry's channel, version and client; no case content.
    assert [(e["channel"], e["case_version"], e["break_glass"]) for e in entries] == [
        ("api", version, True),
        ("bundle", version, False),
        ("api", version, False),
    ]
    assert entries[0]["client"] == {"address": "testclient", "user_agent": AGENT}
    assert entries[2]["client"] == {"address": "testclient", "user_agent": "auditor-agent/2"}


def test_ledger_lookup_and_export_record_their_channel_and_the_version_shown(
    client: TestClient, auth: TokenFactory, planted: tuple[Planted, str]
) -> None:
    found, case_id = planted
    version = _version(client, case_id)
    _synced(client)
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    requests = {
        "ledger": client.get("/v1/ledger", headers=headers),
        "lookup": client.post("/v1/cases/search", json={"name": found.name}, headers=headers),
        "export": client.get(
            "/v1/ledger/export", params={"format": "json", "identity": "true"}, headers=headers
        ),
    }
    for channel, response in requests.items():
        assert response.status_code == 200, (channel, response.text)
        events = [e for e in stored(client, response) if e.case_id == UUID(case_id)]
        assert len(events) == 1, (channel, events)
        assert isinstance(events[0], CaseAccessed)
        assert _knowledge(events[0]) == (channel, version), channel

    # The ledger shows the row as the read models hold it: after a change, once they follow,
    # the version recorded is the new one.
    changed = client.post(
        f"/v1/cases/{case_id}/risk-assessments",
        json={"level": "urgent", "reason": "复评后升为紧急。"},
        headers=auth(Role.COORDINATOR, OFFICE),
    )
    assert changed.status_code < 300, changed.text
    _synced(client)
    again = client.get("/v1/ledger", headers=headers)
    (event,) = [e for e in stored(client, again) if e.case_id == UUID(case_id)]
    assert _knowledge(event) == ("ledger", version + 1)


@pytest.mark.parametrize(
    ("channel", "path", "params", "role", "purpose"),
    [
        ("ledger", "/v1/ledger", {}, Role.INVESTIGATOR, "investigation"),
        ("lookup", "/v1/cases/search", {"name": "张三"}, Role.INVESTIGATOR, "investigation"),
        ("export", "/v1/ledger/export", {"identity": "true"}, Role.UNIT_MEMBER, "intervention"),
        ("worklist", "/v1/worklists/consultations", {}, Role.INVESTIGATOR, "investigation"),
        ("worklist", "/v1/worklists/assignments", {}, Role.INVESTIGATOR, "investigation"),
        ("worklist", "/v1/worklists/quarterly-updates", {}, Role.INVESTIGATOR, "investigation"),
        ("report", "/v1/reports/quarterly", {}, Role.REPORTER, "follow_up"),
    ],
)
def test_a_refusal_naming_no_case_records_its_channel_and_no_version(
    client: TestClient,
    auth: TokenFactory,
    channel: str,
    path: str,
    params: dict[str, str],
    role: Role,
    purpose: str,
) -> None:
    headers = {**auth(role, POLICE if role is Role.UNIT_MEMBER else VILLAGE, purpose=purpose)}
    sent = {**headers, "User-Agent": AGENT}
    if path == "/v1/cases/search":  # a lookup names the minor in its body, never in the URL
        response = client.post(path, json=params, headers=sent)
    else:
        response = client.get(path, params=params, headers=sent)
    assert response.status_code == 403, response.text
    event = _only(client, response)
    assert isinstance(event, AccessDenied)
    assert event.case_id == NO_CASE
    assert _knowledge(event) == (channel, None)
    assert event.client == {"address": "testclient", "user_agent": AGENT}


# --- the client's address and user agent --------------------------------------------------------

TRUSTED = {"CASETRAIL_TRUSTED_PROXY_HEADER": "X-Forwarded-For",
           "CASETRAIL_TRUSTED_PROXIES": "10.0.0.0/8"}  # fmt: skip


@pytest.fixture
def proxied_settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    return Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_REFUSAL_FLOOR_MS": "0", **TRUSTED}
    )


def _client_from(settings: Settings, peer: str) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False, client=(peer, 40000)) as test_client:
        yield test_client


@pytest.fixture
def behind_proxy(proxied_settings: Settings) -> Iterator[TestClient]:
    yield from _client_from(proxied_settings, "10.1.2.3")


@pytest.fixture
def direct(proxied_settings: Settings) -> Iterator[TestClient]:
    yield from _client_from(proxied_settings, "192.0.2.44")


def _tokens(settings: Settings) -> TokenFactory:
    key = keyring.load_private_key(settings.keys_dir / keyring.TOKEN_KEY, "token key")

    def headers(role: Role, unit: str, *, purpose: str | None = None) -> dict[str, str]:
        register(settings, f"user-{role}", role, unit, "chengguan-street")
        token = issue_token(
            key, user=f"user-{role}", role=role, unit=unit, street="chengguan-street"
        )
        found = {"Authorization": f"Bearer {token}"}
        if purpose:
            found["X-Purpose-Of-Use"] = purpose
        return found

    return headers


def _read_recorded_from(client: TestClient, settings: Settings, forwarded: str) -> str:
    """Report a case and read it with `forwarded` in X-Forwarded-For: the address recorded."""
    auth = _tokens(settings)
    created = client.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    )
    assert created.status_code == 201, created.text
    read = client.get(
        f"/v1/cases/{created.json()['id']}",
        headers={
            **auth(Role.REPORTER, VILLAGE, purpose="follow_up"),
            "X-Forwarded-For": forwarded,
        },
    )
    assert read.status_code == 200, read.text
    return _only(client, read).client["address"]


def test_a_trusted_proxys_header_names_the_client(
    behind_proxy: TestClient, proxied_settings: Settings
) -> None:
    # The rightmost address not a trusted proxy: the one the first proxy saw connect.
    assert (
        _read_recorded_from(behind_proxy, proxied_settings, "1.1.1.1, 203.0.113.9, 10.9.9.9")
        == "203.0.113.9"
    )


def test_the_header_from_an_untrusted_peer_is_ignored(
    direct: TestClient, proxied_settings: Settings
) -> None:
    assert _read_recorded_from(direct, proxied_settings, "203.0.113.9") == "192.0.2.44"


def test_a_refused_authentication_records_the_same_address(
    behind_proxy: TestClient, direct: TestClient
) -> None:
    for test_client, expected in ((behind_proxy, "203.0.113.77"), (direct, "192.0.2.44")):
        refused = test_client.get(
            f"/v1/cases/{uuid4()}", headers={"X-Forwarded-For": "203.0.113.77"}
        )
        assert refused.status_code == 401
        application = application_of(test_client)
        (event,) = application.authentication_refusals(limit=1)
        assert isinstance(event, AuthenticationRefused)
        assert event.request_id == refused.headers["X-Request-ID"]
        assert event.client == expected


def test_the_user_agent_is_bounded_and_cleaned(
    direct: TestClient, proxied_settings: Settings
) -> None:
    auth = _tokens(proxied_settings)
    created = direct.post(
        "/v1/cases", json=planted_case().body, headers=auth(Role.REPORTER, VILLAGE)
    )
    # DEL and NEL are control characters, the soft hyphen a format character: all removed.
    agent = b"Evil\x7f\x85Agent\xad/1 " + b"A" * 2000
    read = direct.get(
        f"/v1/cases/{created.json()['id']}",
        headers=[
            *auth(Role.REPORTER, VILLAGE, purpose="follow_up").items(),
            ("User-Agent", agent),
        ],
    )
    assert read.status_code == 200, read.text
    recorded = _only(direct, read).client["user_agent"]
    assert recorded == ("EvilAgent/1 " + "A" * 2000)[:USER_AGENT_MAX]


def test_the_real_server_does_not_take_the_header_from_an_untrusted_peer(
    tmp_path: Path,
) -> None:
    """`casetrail serve` over a real socket from 127.0.0.1, not a trusted proxy here: the
    header is ignored (uvicorn's own X-Forwarded-For handling, which trusts 127.0.0.1 by
    default, is off), and the socket's address is recorded."""
    home = tmp_path / "home"
    cli(home, "keys", "init")
    service = LiveService(home, tmp_path / "service.log", env=TRUSTED).start()
    try:
        reporter = service.token("reporter", VILLAGE)
        auditor = service.token("compliance_auditor", "county-compliance")
        forged = {"X-Forwarded-For": "203.0.113.9", "User-Agent": AGENT}
        created = httpx.post(
            f"{service.base}/v1/cases",
            json=planted_case().body,
            headers={**service.headers(reporter), **forged},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        case_id = created.json()["id"]
        read = httpx.get(
            f"{service.base}/v1/cases/{case_id}",
            headers={**service.headers(reporter, "follow_up"), **forged},
            timeout=30,
        )
        assert read.status_code == 200, read.text
        log = httpx.get(
            f"{service.base}/v1/cases/{case_id}/accesses",
            headers=service.headers(auditor, "compliance_review"),
            timeout=30,
        )
        assert log.status_code == 200, log.text
        first = log.json()["access_log"][0]
        assert first["client"] == {"address": "127.0.0.1", "user_agent": AGENT}
        assert (first["channel"], first["case_version"]) == ("api", read.json()["version"])
    finally:
        service.stop()


# --- the rules of the address, one by one ---------------------------------------------------------

TRUST = ProxyTrust(
    "x-forwarded-for",
    (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:1::/48")),
)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Not a trusted proxy: the header is someone's claim, ignored.
        ("192.0.2.1", ["203.0.113.9"], "192.0.2.1"),
        # A trusted proxy without the header: the proxy itself.
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        # Rightmost untrusted: what the client wrote on the left is not believed.
        ("10.0.0.1", ["6.6.6.6, 203.0.113.9, 10.2.2.2"], "203.0.113.9"),
        # The header given twice reads as one list, in order.
        ("10.0.0.1", ["6.6.6.6", "203.0.113.9"], "203.0.113.9"),
        # Every hop a trusted proxy: the leftmost.
        ("10.0.0.1", ["10.3.3.3, 10.2.2.2"], "10.3.3.3"),
        # Garbage ends the walk at the last trusted proxy.
        ("10.0.0.1", ["203.0.113.9, not-an-ip"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.9, <script>, 10.2.2.2"], "10.2.2.2"),
        # Ports and brackets are not part of the address.
        ("10.0.0.1", ["203.0.113.9:5511"], "203.0.113.9"),
        ("10.0.0.1", ['"[2001:db8:9::1]:443"'], "2001:db8:9::1"),
        ("2001:db8:1::5", ["2001:db8:9::1"], "2001:db8:9::1"),
        # An IPv4 proxy seen on a dual-stack socket.
        ("::ffff:10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        # No peer known, or not an IP address (the test client's "testclient").
        (None, ["203.0.113.9"], "unknown"),
        ("testclient", ["203.0.113.9"], "testclient"),
    ],
)
def test_the_client_address_rules(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, TRUST) == expected


def test_without_a_header_setting_the_peer_is_the_client() -> None:
    assert client_address("10.0.0.1", ["203.0.113.9"], ProxyTrust()) == "10.0.0.1"


def test_user_agent_is_cut_and_cleaned() -> None:
    assert user_agent(None) == ""
    assert user_agent("curl/8.5.0") == "curl/8.5.0"
    assert user_agent("a\u202eb\u200bc\x00d\te") == "abcde"
    assert len(user_agent("x" * 10_000)) == USER_AGENT_MAX
