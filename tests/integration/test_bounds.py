"""Every parameter of every operation is bounded in the schema, and no value, however extreme,
answers a 5xx: the OpenAPI document is walked (a new parameter without bounds fails here), then
each bounded query parameter is tried just outside its bounds and at values no store can hold
(2**63, 2**64, 10**40, year 1, year 9999) against the real app on SQLite and PostgreSQL, and
just inside them (the answer may be 4xx, never 5xx)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

OFFICE = "chengguan-governance-office"
VILLAGE = "dongshan-village"
Schema = dict[str, Any]

# Values that made drivers overflow or date arithmetic fail before the bounds.
HUGE_INTEGERS = (2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**40)
EXTREME_DATES = ("0001-01-01", "1999-12-31", "2100-01-01", "9999-12-31")
# What each required parameter is given while another one is probed.
REQUIRED_DEFAULTS = {"position": "1", "first": "1"}


def _resolve(document: Schema, schema: Schema) -> Schema:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        found: Schema = document["components"]["schemas"][name]
        return found
    return schema


def _branches(document: Schema, schema: Schema) -> Iterator[Schema]:
    """The non-null alternatives of a parameter's schema, with the outer schema's keywords
    (FastAPI puts a Query's extra keywords beside an anyOf)."""
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    for alternative in schema.get("anyOf", [schema]):
        branch = _resolve(document, alternative)
        if branch.get("type") != "null":
            yield {**outer, **branch}


def unbounded(document: Schema, schema: Schema) -> list[str]:
    """What is missing for the schema to be bounded, or [] when it is."""
    missing = []
    for branch in _branches(document, schema):
        kind, form = branch.get("type"), branch.get("format")
        if "enum" in branch or kind == "boolean" or form == "uuid":
            continue
        if kind == "integer":
            missing += [k for k in ("minimum", "maximum") if k not in branch]
        elif kind == "string" and form in ("date", "date-time"):
            missing += [k for k in ("formatMinimum", "formatMaximum") if k not in branch]
        elif kind == "string":
            missing += [k for k in ("maxLength",) if k not in branch]
        else:
            missing.append(f"a bounded type (found {kind})")
    return missing


def operations(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_unbounded_detects_what_it_should() -> None:
    """The walker itself: an unbounded integer, date and string are reported."""
    document: Schema = {"components": {"schemas": {"E": {"enum": ["a"], "type": "string"}}}}
    assert unbounded(document, {"type": "integer", "minimum": 0}) == ["maximum"]
    assert unbounded(document, {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]})
    assert unbounded(document, {"type": "string"}) == ["maxLength"]
    assert unbounded(document, {"$ref": "#/components/schemas/E"}) == []
    assert unbounded(document, {"type": "string", "format": "uuid"}) == []


def test_every_parameter_of_every_operation_is_bounded(client: TestClient) -> None:
    document = client.app.openapi()  # type: ignore[attr-defined]
    seen = 0
    faults = []
    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            seen += 1
            missing = unbounded(document, parameter["schema"])
            if missing:
                where = f"{method.upper()} {path} {parameter['in']} {parameter['name']}"
                faults.append(f"{where}: no {', '.join(missing)}")
    assert seen >= 20, "the walk found too few parameters to prove anything"
    assert faults == []


def _body_dates_and_integers(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    # Request bodies only: answers (a problem's status) are the service's own numbers.
    for name in sorted(_request_models(document)):
        model = document["components"]["schemas"][name]
        for field, schema in model.get("properties", {}).items():
            for branch in _branches(document, schema):
                is_date = branch.get("format") in ("date", "date-time")
                if branch.get("type") == "integer" or is_date:
                    yield name, field, schema


def test_every_date_and_integer_of_a_command_is_bounded(client: TestClient) -> None:
    """Request bodies too (each bound is tried over HTTP in test_dates)."""
    document = client.app.openapi()  # type: ignore[attr-defined]
    found = list(_body_dates_and_integers(document))
    assert len(found) >= 8, found
    faults = [f"{name}.{field}" for name, field, schema in found if unbounded(document, schema)]
    assert faults == []


def _request_models(document: Schema) -> set[str]:
    """The names of every model a request body reaches, nested ones included."""
    pending = [
        content["schema"]
        for _, _, operation in operations(document)
        for content in operation.get("requestBody", {}).get("content", {}).values()
    ]
    found: set[str] = set()
    while pending:
        schema = pending.pop()
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in found:
                found.add(name)
                pending.append(document["components"]["schemas"][name])
            continue
        pending += schema.get("anyOf", []) + list(schema.get("properties", {}).values())
        if "items" in schema:
            pending.append(schema["items"])
    return found


def test_every_field_of_every_request_body_is_bounded(client: TestClient) -> None:
    """Every list has a maximum number of items, every text a maximum length (or a pattern,
    or an enumeration), every number and date both bounds."""
    document = client.app.openapi()  # type: ignore[attr-defined]
    models = _request_models(document)
    assert {"ReportClue", "Minor", "Guardian", "AssignUnit", "IssueInvestigationOrder"} <= models
    faults = []
    for name in sorted(models):
        for field, schema in document["components"]["schemas"][name].get("properties", {}).items():
            for branch in _branches(document, schema):
                if branch.get("type") == "array":
                    if "maxItems" not in branch:
                        faults.append(f"{name}.{field}: no maxItems")
                elif branch.get("type") == "string" and "pattern" in branch:
                    continue
                elif branch.get("type") != "object" and unbounded(document, branch):
                    faults.append(f"{name}.{field}: no {unbounded(document, branch)}")
    assert faults == []


def _probes(document: Schema) -> Iterator[tuple[str, str, str, str]]:
    """(path, parameter, value, expectation) for every bounded query parameter of every GET:
    'refused' outside the bounds, 'answered' at them."""
    for path, method, operation in operations(document):
        if method != "get":
            continue
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            for branch in _branches(document, parameter["schema"]):
                name = parameter["name"]
                if branch.get("type") == "integer":
                    low, high = branch["minimum"], branch["maximum"]
                    yield path, name, str(low - 1), "refused"
                    for value in (high + 1, *HUGE_INTEGERS):
                        if value > high:
                            yield path, name, str(value), "refused"
                    yield path, name, str(high), "answered"
                    yield path, name, str(low), "answered"
                elif branch.get("format") == "date":
                    first = date.fromisoformat(branch["formatMinimum"])
                    last = date.fromisoformat(branch["formatMaximum"])
                    for text in (*EXTREME_DATES, str(first - timedelta(days=1))):
                        if not first <= date.fromisoformat(text) <= last:
                            yield path, name, text, "refused"
                    yield path, name, str(last + timedelta(days=1)), "refused"
                    yield path, name, str(first), "answered"
                    yield path, name, str(last), "answered"
                elif branch.get("type") == "string" and "maxLength" in branch:
                    yield path, name, "长" * (branch["maxLength"] + 1), "refused"


@pytest.fixture
def populated(client: TestClient, auth: TokenFactory) -> str:
    """One case file, and the read models caught up on it (reports and worklists have rows)."""
    response = client.post(
        "/v1/cases", json=planted_case(seed=31).body, headers=auth(Role.REPORTER, VILLAGE)
    )
    assert response.status_code == 201, response.text
    client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]
    return str(response.json()["id"])


def test_extreme_query_values_answer_422_and_none_a_5xx(
    client: TestClient, auth: TokenFactory, populated: str
) -> None:
    document = client.app.openapi()  # type: ignore[attr-defined]
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    probes = list(_probes(document))
    tried = {(path, name) for path, name, _, _ in probes}
    # The parameters the outside probe named are among those tried.
    for named in (
        ("/v1/evidence/checkpoints", "after"),
        ("/v1/evidence/proofs/inclusion", "position"),
        ("/v1/evidence/proofs/inclusion", "size"),
        ("/v1/evidence/proofs/consistency", "first"),
        ("/v1/evidence/proofs/consistency", "second"),
        ("/v1/reports/quarterly", "as_of"),
        ("/v1/worklists/quarterly-updates", "on"),
        ("/v1/worklists/assignments", "on"),
        ("/v1/ledger", "found_from"),
        ("/v1/ledger", "page"),
        ("/v1/ledger/export", "found_to"),
    ):
        assert named in tried, named
    faults = []
    for path, name, value, expected in probes:
        url = re.sub(r"\{[a-z_]+\}", populated, path)
        params = {k: v for k, v in REQUIRED_DEFAULTS.items() if k != name}
        if "proofs/inclusion" not in path:
            params.pop("position", None)
        if "proofs/consistency" not in path:
            params.pop("first", None)
        params[name] = value
        response = client.get(url, params=params, headers=headers)
        label = f"GET {path}?{name}={value[:24]}: {response.status_code}"
        if response.status_code >= 500:
            faults.append(label)
        elif expected == "refused":
            problem = response.json() if response.status_code == 422 else {}
            fields = [e["field"] for e in problem.get("errors", [])]
            if (
                response.status_code != 422
                or response.headers["content-type"] != "application/problem+json"
                or name not in fields
            ):
                faults.append(f"{label} (expected 422 naming {name})")
            elif len(value) > 8 and value in response.text:
                faults.append(f"{label} echoes the value")
    assert faults == []


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "2100-01-01", "1999-12-31"])
@pytest.mark.parametrize(
    "path",
    [
        "/v1/reports/quarterly?as_of=",
        "/v1/worklists/quarterly-updates?on=",
        "/v1/worklists/assignments?on=",
        "/v1/ledger?found_from=",
        "/v1/ledger?found_to=",
        "/v1/ledger/export?format=json&found_from=",
    ],
)
def test_the_dates_the_probe_named_are_refused_with_422(
    client: TestClient, auth: TokenFactory, populated: str, path: str, value: str
) -> None:
    response = client.get(
        path + value, headers=auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert value not in response.text


@pytest.mark.parametrize(
    "query",
    [
        "/v1/evidence/checkpoints?after=9223372036854775808",
        "/v1/evidence/checkpoints?after=99999999999999999999999",
        "/v1/evidence/proofs/inclusion?position=9223372036854775808",
        "/v1/evidence/proofs/inclusion?position=18446744073709551616",
        "/v1/evidence/proofs/inclusion?position=1&size=9223372036854775808",
        "/v1/evidence/proofs/consistency?first=9223372036854775808",
        "/v1/evidence/proofs/consistency?first=0&second=18446744073709551617",
        "/v1/ledger?page=9223372036854775808",
        "/v1/ledger?per_page=9223372036854775808",
    ],
)
def test_the_integers_the_probe_named_are_refused_with_422(
    client: TestClient, auth: TokenFactory, populated: str, query: str
) -> None:
    response = client.get(query, headers=auth(Role.COORDINATOR, OFFICE, purpose="consultation"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_position_at_the_bound_is_not_found_not_a_failure(
    client: TestClient, auth: TokenFactory, populated: str
) -> None:
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    for query in (
        f"/v1/evidence/proofs/inclusion?position={2**53}",
        f"/v1/evidence/proofs/consistency?first={2**53}",
        f"/v1/evidence/checkpoints?after={2**53}",
        f"/v1/evidence/cases/{uuid.uuid4()}/bundle",
    ):
        response = client.get(query, headers=headers)
        assert response.status_code < 500, (query, response.text)


HOSTILE_TEXT = ["a\x00b", "\x00", "x\x1b[2Jy", "\u202eabc", "abc\ufeff", "a\x7fb"]


def test_text_no_store_accepts_is_refused_in_every_string_parameter(
    client: TestClient, auth: TokenFactory, populated: str
) -> None:
    """NUL (which PostgreSQL refuses in text), other control characters and bidi controls, in
    every plain string query parameter of every GET: 422 naming it, never a 5xx."""
    document = client.app.openapi()  # type: ignore[attr-defined]
    headers = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    tried = 0
    faults = []
    for path, method, operation in operations(document):
        if method != "get":
            continue
        for parameter in operation.get("parameters", []):
            branches = list(_branches(document, parameter["schema"]))
            plain = [b for b in branches if b.get("type") == "string" and "format" not in b]
            if parameter["in"] != "query" or not plain or "enum" in plain[0]:
                continue
            name = parameter["name"]
            params = {"position": "1"} if "inclusion" in path else {}
            for value in HOSTILE_TEXT:
                tried += 1
                url = re.sub(r"\{[a-z_]+\}", populated, path)
                response = client.get(url, params={**params, name: value}, headers=headers)
                fields = [e.get("field") for e in response.json().get("errors", [])]
                if response.status_code != 422 or name not in fields:
                    faults.append(f"GET {path}?{name}={value!r}: {response.status_code}")
    assert tried >= 6 * 8, tried
    assert faults == []
