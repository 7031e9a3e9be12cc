"""HTTP answers of the ASGI app: security headers and `Cache-Control: no-store` on every answer,
`/docs` without any outside URL, 405 with `Allow`, every problem answer in the OpenAPI document,
limits on headers and body, and `/healthz` telling the store's position to no anonymous caller.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from domain.taxonomy import Role
from gateway.cli.main import DEFAULT_STREET
from gateway.http import limits
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"
OFFICE = f"{DEFAULT_STREET}-office"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Headers and documents do not depend on the store: SQLite only."""
    return f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}"


def assert_secured(response: Any, *, no_store: bool = True) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    policy = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy, response.request.url
    if no_store:
        assert response.headers.get("cache-control") == "no-store", response.request.url


def test_every_answer_has_security_headers_and_no_store(
    client: TestClient, auth: TokenFactory
) -> None:
    reporter = auth(Role.REPORTER, VILLAGE, purpose="follow_up")
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    created = client.post("/v1/cases", json=planted_case(seed=31).body, headers=reporter)
    assert created.status_code == 201
    case_id = created.json()["id"]
    answers = [
        created,
        client.get(f"/v1/cases/{case_id}", headers=coordinator),  # a case read
        client.get("/v1/ledger", headers=coordinator),  # a ledger page
        client.post("/v1/cases/search", json={"name": "张三"}, headers=coordinator),  # a lookup
        client.get("/v1/worklists/consultations", headers=coordinator),  # a worklist
        client.get("/v1/ledger/export", params={"format": "csv"}, headers=coordinator),
        client.get("/v1/taxonomy"),
        client.get("/healthz"),
        client.get(f"/v1/cases/{case_id}"),  # 401
        client.get("/v1/cases/not-a-uuid", headers=coordinator),  # 422
        client.get("/v1/no-such-path"),  # 404
        client.delete(f"/v1/cases/{case_id}", headers=coordinator),  # 405
        client.get("/openapi.json"),
        client.get("/docs"),
    ]
    for response in answers:
        assert response.status_code < 500, response.text
        assert_secured(response)
    api_policy = answers[1].headers["content-security-policy"]
    assert "default-src 'none'" in api_policy


def test_docs_load_nothing_from_another_site(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    # Every URL in the page is on this server, and each one answers.
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert urls, page.text
    assert not re.search(r"https?://", page.text), "the page names an outside URL"
    for url in urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert_secured(asset, no_store=False)
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self' 'sha256-" in policy  # the inline start-up script, by its hash
    assert "http" not in policy
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN


def test_method_not_allowed_names_the_allowed_methods(
    client: TestClient, auth: TokenFactory
) -> None:
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    for method, path, allowed in (
        ("DELETE", "/v1/cases/3fa85f64-5717-4562-b3fc-2c963f66afa6", "GET"),
        ("PUT", "/v1/cases", "GET, POST"),
        ("GET", "/v1/investigation-orders", "POST"),
        ("PATCH", "/v1/ledger", "GET"),
        ("POST", "/healthz", "GET"),
    ):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 405, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert {m.strip() for m in response.headers["allow"].split(",")} >= set(
            allowed.split(", ")
        ), (method, path, response.headers["allow"])


def test_the_openapi_document_lists_every_problem_answer(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    assert "Problem" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            expected = {"431", "500"}
            if operation.get("security"):
                expected |= {"401", "403", "503"}
            if "{" in path:
                expected |= {"404", "422"}
            if method == "post" and "requestBody" in operation:
                expected |= {"400", "413", "422"}
            assert expected <= set(answers), (method, path, sorted(answers))
            for status, answer in answers.items():
                if status.startswith(("4", "5")):
                    assert answer["content"] == {
                        "application/problem+json": {"schema": problem_ref}
                    }
                    assert answer["description"]
            checked += 1
    assert checked > 30
    commands = document["paths"]["/v1/cases/{case_id}/closure"]["post"]["responses"]
    assert "409" in commands
    export = document["paths"]["/v1/ledger/export"]["get"]["responses"]["200"]["content"]
    assert {m.split(";")[0] for m in export} == {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "text/csv",
        "application/json",
    }


def test_health_tells_the_store_position_to_authenticated_callers_only(
    client: TestClient, auth: TokenFactory
) -> None:
    created = client.post(
        "/v1/cases", json=planted_case(seed=32).body, headers=auth(Role.REPORTER, VILLAGE)
    )
    assert created.status_code == 201
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ):
        anonymous = client.get("/healthz", headers=headers)
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "ok"}, headers
    for role, unit in ((Role.REPORTER, VILLAGE), (Role.ADMIN, "county")):
        known = client.get("/healthz", headers=auth(role, unit)).json()
        assert known["status"] == "ok"
        assert known["position"] >= 1
        assert "projections" in known


def test_too_many_or_too_large_headers_answer_431(client: TestClient) -> None:
    many = {f"x-filler-{i}": "1" for i in range(limits.MAX_HEADERS + 1)}
    for headers in (
        many,
        {"x-filler": "a" * (limits.MAX_HEADER_BYTES + 1)},
        {f"x-filler-{i}": "b" * 1000 for i in range(20)},
    ):
        for path in ("/healthz", "/v1/taxonomy", "/v1/ledger"):
            response = client.get(path, headers=headers)
            assert response.status_code == 431, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "urn:casetrail:problem:headers-too-large"
            assert_secured(response)
            assert len(response.content) < 1000
    assert client.get("/healthz", headers={"x-filler": "a" * 1000}).status_code == 200


def test_a_body_over_the_limit_answers_413_announced_or_streamed(
    client: TestClient, auth: TokenFactory
) -> None:
    headers = {**auth(Role.REPORTER, VILLAGE), "Content-Type": "application/json"}
    big = b'{"x": "' + b"a" * limits.MAX_BODY_BYTES + b'"}'

    def streamed() -> Any:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    for path in ("/v1/cases", "/v1/cases/search", "/v1/investigation-orders"):
        announced = client.post(path, content=big, headers=headers)
        assert announced.status_code == 413, path
        assert announced.json()["type"] == "urn:casetrail:problem:body-too-large"
        assert_secured(announced)
        chunked = client.post(path, content=streamed(), headers=headers)
        assert chunked.status_code == 413, path
    # Within the limit the body reaches the endpoint as sent.
    fine = client.post("/v1/cases", json=planted_case(seed=33).body, headers=headers)
    assert fine.status_code == 201, fine.text


@pytest.mark.parametrize("sent", [b"", b'{"minor": ', b"x" * 70_000])
def test_a_body_that_does_not_arrive_in_time_answers_408(
    monkeypatch: pytest.MonkeyPatch, sent: bytes
) -> None:
    """The client announced a body and stalls: 408, and the endpoint never runs."""
    monkeypatch.setattr(limits, "BODY_TIMEOUT_SECONDS", 0.3)
    reached: list[bool] = []
    given: list[bool] = []
    answers: list[Message] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)

    async def stalling() -> Message:
        if not given:
            given.append(True)
            return {"type": "http.request", "body": sent, "more_body": True}
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        answers.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/cases",
        "headers": [(b"content-length", b"100000"), (b"content-type", b"application/json")],
    }
    started = time.monotonic()
    asyncio.run(limits.RequestLimits(endpoint)(scope, stalling, send))
    assert time.monotonic() - started < 5
    assert not reached
    assert answers[0]["status"] == 408
    assert json.loads(answers[1]["body"])["type"] == "urn:casetrail:problem:request-timeout"


def test_a_body_that_is_not_utf8_json_answers_400_as_documented(
    client: TestClient, auth: TokenFactory
) -> None:
    headers = {**auth(Role.COORDINATOR, OFFICE), "Content-Type": "application/json"}
    case = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    for path in ("/v1/cases", f"/v1/cases/{case}/closure", "/v1/investigation-orders"):
        for body in (b'{"x": "\xc3\x28"}', '{"reason": "张三"}'.encode("gb18030")):
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["type"] == "urn:casetrail:problem:unreadable-body"
            assert_secured(response)
