"""Submitted values are never echoed: not in a problem's fields, messages or detail, not in logs.

An unknown key is what was submitted (a key may hold a name and an ID number): the answer names
its parent and "an unknown field". An invalid value (a phone number where an enum, a code, a
date, a UUID or a purpose is expected) is named by its field with what is allowed. Bodies,
queries, headers and paths, on several endpoints; every answer stays small, and so does every
log line, even for a 1 MB key.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import random
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from faker import Faker
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.clock import local_today
from domain.identity import make_id_number
from domain.taxonomy import Role
from gateway import logs
from gateway.cli.main import DEFAULT_STREET
from gateway.http.problems import MAX_ERRORS, validation_errors
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"
OFFICE = f"{DEFAULT_STREET}-office"
SMALL = 4096  # bytes: an answer or a log line that repeats nothing submitted stays below


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """What is echoed does not depend on the store: SQLite only, to keep the module quick."""
    return f"sqlite:///{tmp_path / 'home' / 'casetrail.sqlite'}"


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("debug", stream=stream)
    caplog.set_level(logging.DEBUG)
    try:
        yield stream
    finally:
        logs.configure("info")


class Secrets:
    """Synthetic personal data to smuggle in: names, ID numbers (several regions), phones."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        faker = Faker("zh_CN")
        faker.seed_instance(seed)
        born = local_today() - timedelta(days=365 * 12 + rng.randrange(300))
        self.names = [faker.name() + "".join(rng.sample("晓雨泽宸涵瑾萱昊", 2)) for _ in range(3)]
        self.id_numbers = [
            make_id_number(prefix, born, rng.randrange(10, 999))
            for prefix in ("330102", "110105", "440305")
        ]
        self.phones = [f"1{rng.choice('3589')}{rng.randrange(10**8, 10**9)}" for _ in range(3)]

    def all(self) -> list[str]:
        return [*self.names, *self.id_numbers, *self.phones]


def assert_not_echoed(
    text: str, secrets: list[str], *, limit: int = SMALL, what: str = "answer"
) -> None:
    for secret in secrets:
        assert secret not in text, f"{what} repeats a submitted value: {text[:300]}"
    assert len(text.encode()) < limit, f"{what} is {len(text.encode())} bytes"


def assert_log_clean(
    stream: io.StringIO, caplog: pytest.LogCaptureFixture, secrets: list[str]
) -> None:
    # The service's lines: structlog's, and any standard logging but the test client's own.
    output = "\n".join(
        [stream.getvalue()]
        + [caplog.handler.format(r) for r in caplog.records if not r.name.startswith("httpx")]
    )
    assert '"event": "request"' in output, "no log line was captured to search"
    for line in output.splitlines():
        assert_not_echoed(line, secrets, what="log line")


def problem_of(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    found: dict[str, Any] = response.json()
    return found


@pytest.fixture
def case_id(client: TestClient, auth: TokenFactory) -> str:
    answer = client.post(
        "/v1/cases", json=planted_case(seed=11).body, headers=auth(Role.REPORTER, VILLAGE)
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


# --- unknown keys --------------------------------------------------------------------------------


def test_unknown_keys_holding_a_name_and_an_id_number_are_never_named(
    client: TestClient,
    auth: TokenFactory,
    case_id: str,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = Secrets(1)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    report = planted_case(seed=12).body
    attempts: list[tuple[str, dict[str, Any], dict[str, str], str]] = []
    for i, (name, id_number) in enumerate(zip(secrets.names, secrets.id_numbers, strict=True)):
        key = f"{name}{id_number}"
        top = copy.deepcopy(report)
        top[key] = secrets.phones[i]
        attempts.append(("/v1/cases", top, auth(Role.REPORTER, VILLAGE), "body"))
        in_minor = copy.deepcopy(report)
        in_minor["minor"][key] = "x"
        attempts.append(("/v1/cases", in_minor, auth(Role.REPORTER, VILLAGE), "minor"))
        in_guardian = copy.deepcopy(report)
        in_guardian["guardians"][0][id_number] = name
        attempts.append(("/v1/cases", in_guardian, auth(Role.REPORTER, VILLAGE), "guardians.0"))
        attempts.append(
            (
                f"/v1/cases/{case_id}/risk-assessments",
                {"level": "high", "reason": "家访后重新评估风险等级", key: 1},
                coordinator,
                "body",
            )
        )
        attempts.append(
            (
                "/v1/investigation-orders",
                {"case_id": case_id, "investigator": "u-9", key: name},
                coordinator,
                "body",
            )
        )
        attempts.append(
            (
                f"/v1/cases/{case_id}/break-glass",
                {"reason": "紧急情况需要立即查看档案", key: id_number},
                auth(Role.REPORTER, "xihe-village"),
                "body",
            )
        )
    for path, body, headers, parent in attempts:
        problem = problem_of(client.post(path, json=body, headers=headers))
        unknown = [e for e in problem["errors"] if "unknown field" in e["message"]]
        assert unknown, f"{path}: {problem}"
        assert all(e["field"] == parent for e in unknown), (path, problem["errors"])
        assert_not_echoed(json.dumps(problem, ensure_ascii=False), secrets.all())
    assert_log_clean(captured, caplog, secrets.all())


def test_a_one_megabyte_key_gives_a_small_answer_and_small_log_lines(
    client: TestClient,
    auth: TokenFactory,
    case_id: str,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = Secrets(2)
    # Within the body limit as characters that JSON-encode to one byte each.
    big = (secrets.names[0] + secrets.id_numbers[0]) * (200 * 1024 // 30)
    report = planted_case(seed=13).body
    report["minor"][big] = 1
    for path, body, headers in (
        ("/v1/cases", {**planted_case(seed=13).body, big: 1}, auth(Role.REPORTER, VILLAGE)),
        ("/v1/cases", report, auth(Role.REPORTER, VILLAGE)),
        (
            f"/v1/cases/{case_id}/closure",
            {"reason": "已结案", big[:100_000]: big[:1000]},
            auth(Role.COORDINATOR, OFFICE),
        ),
    ):
        response = client.post(path, json=body, headers=headers)
        problem = problem_of(response)
        assert_not_echoed(response.text, secrets.all())
        assert any("unknown field" in e["message"] for e in problem["errors"])
    # A key over the body limit is refused before it is parsed, as small.
    huge = "名" * (1024 * 1024)
    response = client.post("/v1/cases", json={huge: 1}, headers=auth(Role.REPORTER, VILLAGE))
    assert problem_of(response, 413)["status"] == 413
    assert_not_echoed(response.text, [huge[:20]])
    assert_log_clean(captured, caplog, [*secrets.all(), huge[:20]])


def test_many_errors_are_bounded_in_number_and_size(client: TestClient, auth: TokenFactory) -> None:
    secrets = Secrets(3)
    body = planted_case(seed=14).body
    for i in range(500):
        body[f"{secrets.names[i % 3]}{i}"] = secrets.phones[i % 3]
    body["issues"] = [{"category": secrets.phones[0], "subtype": secrets.id_numbers[0]}] * 20
    response = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, VILLAGE))
    problem = problem_of(response)
    assert len(problem["errors"]) <= MAX_ERRORS
    assert "more" in problem["detail"]
    assert_not_echoed(response.text, secrets.all())


# --- invalid values: body, query, header, path ---------------------------------------------------


def _body_attempts(secrets: Secrets, case_id: str) -> list[tuple[str, dict[str, Any], str]]:
    """(path, body, field at fault): enum, code, date, pattern, custom validators."""
    found = []
    for i in range(3):
        phone, id_number, name = secrets.phones[i], secrets.id_numbers[i], secrets.names[i]
        report = planted_case(seed=20 + i).body
        for field, value in (
            ("risk", phone),
            ("method", id_number),
            ("found_on", id_number),
            ("issues.0.subtype", phone),
            ("issues.0.category", name),
            ("guardians.0.relation", phone),
            ("minor.gender", name),
            ("minor.date_of_birth", phone),
            ("minor.village", name),
        ):
            body = copy.deepcopy(report)
            *parents, last = field.split(".")
            target: Any = body
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            target[last] = value
            found.append(("/v1/cases", body, field))
        found += [
            (f"/v1/cases/{case_id}/risk-assessments", {"level": phone, "reason": "复评"}, "level"),
            (
                f"/v1/cases/{case_id}/assignments/{uuid.uuid4()}/end",
                {"outcome": id_number},
                "outcome",
            ),
            (f"/v1/cases/{case_id}/escalations", {"to_level": phone}, "to_level"),
            ("/v1/investigation-orders", {"case_id": phone, "investigator": "u-9"}, "case_id"),
        ]
    return found


def test_invalid_body_values_are_named_not_repeated(
    client: TestClient,
    auth: TokenFactory,
    case_id: str,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = Secrets(4)
    coordinator = auth(Role.COORDINATOR, OFFICE)
    for path, body, field in _body_attempts(secrets, case_id):
        response = client.post(path, json=body, headers=coordinator)
        problem = problem_of(response)
        assert field in [e["field"] for e in problem["errors"]], (path, field, problem)
        assert_not_echoed(response.text, secrets.all())
    assert_log_clean(captured, caplog, secrets.all())


def test_invalid_enum_messages_say_what_is_allowed(
    client: TestClient, auth: TokenFactory, case_id: str
) -> None:
    secrets = Secrets(5)
    headers = auth(Role.COORDINATOR, OFFICE)
    response = client.post(
        f"/v1/cases/{case_id}/risk-assessments",
        json={"level": secrets.phones[0], "reason": "复评风险"},
        headers=headers,
    )
    message = next(e["message"] for e in problem_of(response)["errors"] if e["field"] == "level")
    assert "'urgent'" in message, message


def test_invalid_query_values_are_named_not_repeated(
    client: TestClient,
    auth: TokenFactory,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = Secrets(6)
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    for i in range(3):
        phone, id_number, name = secrets.phones[i], secrets.id_numbers[i], secrets.names[i]
        for path, params, field in (
            ("/v1/ledger", {"risk": phone}, "risk"),
            ("/v1/ledger", {"status": id_number}, "status"),
            ("/v1/ledger", {"category": name}, "category"),
            ("/v1/ledger", {"subtype": phone}, "subtype"),
            ("/v1/ledger", {"category": "mental_health", "subtype": id_number}, "subtype"),
            ("/v1/ledger", {"found_from": id_number}, "found_from"),
            ("/v1/ledger", {"page": phone}, "page"),
            ("/v1/ledger/export", {"format": phone}, "format"),
            ("/v1/worklists/assignments", {"state": name}, "state"),
            ("/v1/worklists/quarterly-updates", {"on": phone}, "on"),
            ("/v1/reports/quarterly", {"as_of": id_number}, "as_of"),
            ("/v1/evidence/checkpoints", {"after": phone + "x"}, "after"),
        ):
            response = client.get(path, params=params, headers=headers)
            problem = problem_of(response)
            assert field in [e["field"] for e in problem.get("errors", [])], (path, problem)
            assert_not_echoed(response.text, secrets.all())
    assert_log_clean(captured, caplog, secrets.all())


def test_invalid_headers_and_paths_are_named_not_repeated(
    client: TestClient,
    auth: TokenFactory,
    case_id: str,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = Secrets(7)
    token = auth(Role.COORDINATOR, OFFICE)
    for i in range(3):
        phone, id_number = secrets.phones[i], secrets.id_numbers[i]
        for path in (f"/v1/cases/{case_id}", "/v1/ledger", f"/v1/cases/{case_id}/accesses"):
            for junk in (phone, id_number, f"consultation{phone}"):
                response = client.get(path, headers={**token, "X-Purpose-Of-Use": junk})
                problem = problem_of(response)
                assert problem["errors"][0]["field"] == "X-Purpose-Of-Use", problem
                assert "'consultation'" in problem["errors"][0]["message"]
                assert_not_echoed(response.text, secrets.all())
        reader = {**token, "X-Purpose-Of-Use": "consultation"}
        for path, field in (
            (f"/v1/cases/{phone}", "case_id"),
            (f"/v1/cases/{id_number}/accesses", "case_id"),
            (f"/v1/evidence/cases/{phone}/bundle", "case_id"),
            (f"/v1/investigation-orders/{id_number}/revocation", "order_id"),
        ):
            method = client.post if path.endswith("revocation") else client.get
            response = method(path, headers=reader)
            problem = problem_of(response)
            assert field in [e["field"] for e in problem["errors"]], (path, problem)
            assert_not_echoed(response.text, secrets.all())
    assert_log_clean(captured, caplog, secrets.all())


def test_pydantic_messages_that_would_quote_the_input_are_rebuilt() -> None:
    """Error types whose pydantic message may carry the input (a validator quoting its value,
    a union's tag, a UUID's or a date's parse detail), and a dict key in the location."""

    class Cat(BaseModel):
        kind: Literal["cat"]

    class Dog(BaseModel):
        kind: Literal["dog"]

    class Probe(BaseModel):
        model_config = ConfigDict(extra="forbid")
        pet: Annotated[Cat | Dog, Field(discriminator="kind")]
        code: str
        when: date
        ref: uuid.UUID
        tags: dict[str, int]

        @field_validator("code")
        @classmethod
        def _quoting(cls, value: str) -> str:
            raise ValueError(f"'{value}' is not a code; and neither is {value}")

    secrets = Secrets(8)
    for i in range(3):
        phone, id_number, name = secrets.phones[i], secrets.id_numbers[i], secrets.names[i]
        data = {
            "pet": {"kind": phone},
            "code": id_number,
            "when": f"{phone}x",
            "ref": f"{name}{phone}",
            "tags": {f"{name}{id_number}": name},
            f"{name}-{phone}": 1,
        }
        with pytest.raises(ValidationError) as caught:
            Probe.model_validate(data)
        raw = caught.value.errors()
        assert any(phone in str(e.get("msg")) or id_number in str(e.get("msg")) for e in raw)
        errors = [{**e, "loc": ("body", *e["loc"])} for e in raw]
        found = validation_errors(RequestValidationError(errors))
        assert {e["field"] for e in found} >= {"pet", "code", "when", "ref", "tags", "body"}
        assert_not_echoed(json.dumps(found, ensure_ascii=False), secrets.all())


def test_a_request_id_that_is_not_an_id_is_replaced_not_repeated(
    client: TestClient,
    auth: TokenFactory,
    captured: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = Secrets(9)
    token = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    for given in [*secrets.phones, *secrets.id_numbers, f"req-{secrets.phones[0]}-abc"]:
        for path in ("/v1/taxonomy", "/v1/ledger?risk=extreme", "/v1/cases/not-a-uuid"):
            response = client.get(path, headers={**token, "X-Request-ID": given})
            assert response.headers["X-Request-ID"] != given
            assert_not_echoed(response.text + str(response.headers), secrets.all())
    kept = uuid.uuid4().hex
    assert (
        client.get("/v1/taxonomy", headers={"X-Request-ID": kept}).headers["X-Request-ID"] == kept
    )
    assert_log_clean(captured, caplog, secrets.all())


def test_every_logged_value_is_bounded(captured: io.StringIO) -> None:
    """Whatever a caller hands the logger (a careless `log.info(..., key=submitted)`), the line
    stays small: strings, lists, nested objects and the number of keys are all bounded."""
    log = logs.get_logger("casetrail.test")
    huge = "名" * (1024 * 1024)
    log.info("huge_string", value=huge)
    log.info("huge_list", values=[huge[:100]] * 10_000)
    log.info("deep", value={"a": {"b": {"c": {"d": [huge] * 50}}}})
    log.info("many_keys", **{f"k{i}": huge[:1000] for i in range(500)})
    log.info("bytes", value=huge.encode())
    lines = captured.getvalue().splitlines()
    assert len(lines) == 5, lines[:1]
    for line in lines:
        assert len(line.encode()) < SMALL, line[:200]
        assert json.loads(line)["event"]


def test_a_traceback_survives_the_bounds(captured: io.StringIO) -> None:
    log = logs.get_logger("casetrail.test")
    try:
        raise RuntimeError("the failure to find")
    except RuntimeError:
        log.error("failed", exc_info=True, **{f"k{i}": "名" * 300 for i in range(50)})
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert "RuntimeError: the failure to find" in line["exception"]
    assert line["dropped_keys"] > 0
