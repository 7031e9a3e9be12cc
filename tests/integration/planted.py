"""A planted case: synthetic personal data distinctive enough to search for in bytes and logs."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

from faker import Faker

from gateway.cli.demo import synthetic_report


@dataclass(frozen=True)
class Planted:
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["minor"]["name"])

    @property
    def id_number(self) -> str:
        return str(self.body["minor"]["id_number"])

    @property
    def description(self) -> str:
        return str(self.body["description"])

    @property
    def phone(self) -> str:
        return str(self.body["guardians"][0]["phone"])

    def needles(self) -> dict[str, bytes]:
        """What must never be found in clear, as the bytes that would be stored."""
        return {
            "name": self.name.encode(),
            "id_number": self.id_number.encode(),
            "description": self.description.encode(),
            "phone": self.phone.encode(),
        }


def planted_case(village: str = "dongshan-village", seed: int | None = None) -> Planted:
    rng = random.Random(seed)
    faker = Faker("zh_CN")
    faker.seed_instance(rng.randrange(1 << 30))
    body = synthetic_report(faker, rng, village=village)
    # A name and description no other test data can share by chance.
    body["minor"]["name"] = faker.last_name() + "".join(rng.sample("晓雨泽宸涵瑾萱昊", 3))
    body["description"] = f"孩子近期情绪低落,家访发现家中争吵频繁。标记{uuid.uuid4().hex[:10]}"
    return Planted(body)
