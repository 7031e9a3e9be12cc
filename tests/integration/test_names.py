"""Names and invisible characters, over HTTP on SQLite and PostgreSQL: a report whose minor's or
guardian's name holds a bidi override, a zero-width character, a leading byte order mark or an
isolate is refused (422 naming the field, the name not echoed, nothing written); a name sent
decomposed, with a compatibility ideograph or with surrounding spaces is stored in its one
form, so an exact lookup of the name as it looks finds the file, whichever form either side
used; a lookup holding such characters is refused the same way."""

from __future__ import annotations

import copy
import random
import unicodedata
from typing import Any

import pytest
from faker import Faker
from fastapi.testclient import TestClient

from domain.taxonomy import Role
from tests.conftest import TokenFactory
from tests.integration.planted import planted_case

VILLAGE = "dongshan-village"
OFFICE = "chengguan-governance-office"

# How each hidden character is placed in a name.
HIDDEN = {
    "U+202E right-to-left override": lambda n: n[0] + "\u202e" + n[1:],
    "U+200B zero-width space": lambda n: n[:1] + "\u200b" + n[1:],
    "U+FEFF leading byte order mark": lambda n: "\ufeff" + n,
    "U+2066 left-to-right isolate": lambda n: "\u2066" + n + "\u2069",
    "U+200D zero-width joiner": lambda n: n + "\u200d",
    "U+200F right-to-left mark": lambda n: n[:1] + "\u200f" + n[1:],
}
FIELDS = {"minor.name": ("minor", "name"), "guardians.0.name": ("guardians", 0, "name")}


def _position(client: TestClient) -> int:
    app = client.app.state.services.application  # type: ignore[attr-defined]
    return int(app.recorder.max_notification_id() or 0)


def _catch_up(client: TestClient) -> None:
    client.app.state.services.readmodels.catch_up()  # type: ignore[attr-defined]


def _set(body: dict[str, Any], path: tuple[str | int, ...], value: str) -> None:
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _name(seed: int) -> str:
    faker = Faker("zh_CN")
    faker.seed_instance(seed)
    rng = random.Random(seed)
    return faker.last_name() + "".join(rng.sample("晓雨泽宸涵瑾萱昊", 2))


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("kind", list(HIDDEN))
def test_a_name_with_hidden_characters_is_refused_naming_the_field(
    client: TestClient, auth: TokenFactory, kind: str, field: str
) -> None:
    body = copy.deepcopy(planted_case(seed=81).body)
    visible = _name(len(kind) + len(field))
    _set(body, FIELDS[field], HIDDEN[kind](visible))
    headers = auth(Role.REPORTER, VILLAGE)  # registers the user: an event, not counted
    position = _position(client)
    response = client.post("/v1/cases", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert visible not in response.text
    assert _position(client) == position


# (as reported, as looked up): each pair looks the same and differs in code points.
FORMS = [
    ("阮文Nguye\u0302\u0303n", "阮文Nguyễn"),  # decomposed stored, composed looked up
    ("阮文Nguyễn", "阮文Nguye\u0302\u0303n"),  # composed stored, decomposed looked up
    ("\uf90a晓雨", "金晓雨"),  # CJK compatibility ideograph U+F90A for 金
    ("李Åsa", "李A\u030asa"),
    ("  王泽宸 ", "王泽宸"),  # spaces around, stored
    ("王涵瑾", "\u3000王涵瑾  "),  # ideographic and plain spaces around, looked up
]


@pytest.mark.parametrize(("reported", "looked_up"), FORMS)
def test_a_lookup_of_the_name_as_it_looks_finds_the_file(
    client: TestClient, auth: TokenFactory, reported: str, looked_up: str
) -> None:
    assert reported != looked_up
    assert (
        unicodedata.normalize("NFC", reported).strip()
        == unicodedata.normalize("NFC", looked_up).strip()
    ), "the pair must look the same"
    body = copy.deepcopy(planted_case(seed=82).body)
    body["minor"]["name"] = reported
    response = client.post("/v1/cases", json=body, headers=auth(Role.REPORTER, VILLAGE))
    assert response.status_code == 201, response.text
    case_id = response.json()["id"]
    _catch_up(client)
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    by_query = client.post("/v1/cases/search", json={"name": looked_up}, headers=coordinator)
    by_body = client.post("/v1/cases/search", json={"name": looked_up}, headers=coordinator)
    for found in (by_query, by_body):
        assert found.status_code == 200, found.text
        assert [r["id"] for r in found.json()["rows"]] == [case_id]
    # And the file holds the one form.
    read = client.get(f"/v1/cases/{case_id}", headers=coordinator)
    assert read.json()["minor"]["name"] == unicodedata.normalize("NFC", reported).strip()


@pytest.mark.parametrize("kind", list(HIDDEN))
def test_a_lookup_with_hidden_characters_is_refused_naming_name(
    client: TestClient, auth: TokenFactory, kind: str
) -> None:
    coordinator = auth(Role.COORDINATOR, OFFICE, purpose="consultation")
    visible = _name(len(kind))
    hidden = HIDDEN[kind](visible)
    for response in (
        client.post("/v1/cases/search", json={"name": hidden}, headers=coordinator),
        client.post("/v1/cases/search", json={"name": hidden}, headers=coordinator),
    ):
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["name"]
        assert visible not in response.text


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("minor", "school"), "城关\u200b中心小学"),
        (("minor", "grade_class"), "\u202e4年级(2)班"),
        (("description",), "家访发现\u202e情绪低落"),
        (("description",), "家访发现\x1b[2J情绪低落"),
    ],
)
def test_other_texts_refuse_what_would_hide_or_reorder_them(
    client: TestClient, auth: TokenFactory, path: tuple[str, ...], value: str
) -> None:
    body = copy.deepcopy(planted_case(seed=83).body)
    _set(body, path, value)
    headers = auth(Role.REPORTER, VILLAGE)  # registers the user: an event, not counted
    position = _position(client)
    response = client.post("/v1/cases", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [".".join(path)]
    assert _position(client) == position
