"""The unit registry: the member units (成员单位) that receive sealed notices, and their keys.

A unit is identified by its code (the `unit` of tokens and assignments), has a Chinese name, a
type, the street it belongs to, an X25519 public key that notices are sealed to, and the public
half of its broker credentials (an opaque user name, and the fingerprint of its TLS client key).
The private keys are made by the gateway and written to the unit operator's file; they never
reach the store. One aggregate per unit, with an id derived from the code, so a unit can be
registered once only.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Final
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import AfterValidator, Field

from domain.commands import Code, Command, ShortText
from domain.errors import DomainError
from domain.taxonomy import UNIT_TYPE_LABELS, UnitType

Record = dict[str, Any]

_NAMESPACE: Final = UUID("6f1d7d0e-3b0a-5d51-9a57-3f4b6c1e8a20")

# Not a member unit of the plan: the compliance reviewers (DOMAIN.md "who takes part"), who
# receive alerts about refused and emergency reads. A casetrail term, not one of the plan's.
COMPLIANCE_AUDIT: Final = "compliance_audit"
UNIT_KINDS: Final = (*(t.value for t in UnitType), COMPLIANCE_AUDIT)
UNIT_KIND_LABELS: Final = {
    **{str(k): v for k, v in UNIT_TYPE_LABELS.items()},
    COMPLIANCE_AUDIT: "合规审查",
}

_OPAQUE = re.compile(r"^[a-z][0-9a-f]{16}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class UnitAlreadyRegistered(DomainError):
    code = "unit_already_registered"


class UnknownUnit(DomainError):
    status = 404
    code = "unknown_unit"


def unit_stream_id(unit_id: str) -> UUID:
    """The aggregate id of a unit: one per code, so a second registration is refused."""
    return uuid5(_NAMESPACE, f"unit:{unit_id}")


def _known_kind(value: str) -> str:
    if value not in UNIT_KINDS:
        raise ValueError(f"type must be one of {', '.join(UNIT_KINDS)}")
    return value


def _x25519_public(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("must be base64") from None
    if len(raw) != 32:
        raise ValueError("must be the 32 bytes of an X25519 public key")
    return value


class RegisterUnit(Command):
    """A unit as its operator describes it."""

    unit_id: Code
    name: ShortText = Field(description="the unit's Chinese name, e.g. 城关派出所")
    type: Annotated[str, AfterValidator(_known_kind)]
    street: Code


class UnitKeys(Command):
    """The public halves of a unit's keys, made by the gateway."""

    sealing_key: Annotated[str, AfterValidator(_x25519_public)]
    nats_user: Annotated[str, Field(pattern=_OPAQUE.pattern)]
    street_token: Annotated[str, Field(pattern=_OPAQUE.pattern)]
    tls_fingerprint: Annotated[str, Field(pattern=_FINGERPRINT.pattern)]


class Unit(Aggregate):
    """One member unit and the public keys it receives notices with."""

    @staticmethod
    def create_id(unit_id: str, **_: Any) -> UUID:
        return unit_stream_id(unit_id)

    @classmethod
    def register(cls, command: RegisterUnit, keys: UnitKeys, *, by: Record) -> Unit:
        return cls(
            unit_id=command.unit_id,
            name=command.name,
            type=command.type,
            street=command.street,
            by=by,
            **keys.model_dump(),
        )

    @event("UnitRegistered")
    def __init__(
        self,
        *,
        unit_id: str,
        name: str,
        type: str,
        street: str,
        sealing_key: str,
        nats_user: str,
        street_token: str,
        tls_fingerprint: str,
        by: Record,
    ) -> None:
        self.unit_id = unit_id
        self.name = name
        self.type = type
        self.street = street
        self.sealing_key = sealing_key
        self.nats_user = nats_user
        self.street_token = street_token
        self.tls_fingerprint = tls_fingerprint
        self.key_version = 1

    def rotate_keys(self, keys: UnitKeys, *, by: Record) -> None:
        if keys.nats_user != self.nats_user or keys.street_token != self.street_token:
            raise DomainError(
                "a key rotation keeps the unit's broker address; only the keys change",
                field="nats_user",
            )
        if keys.sealing_key == self.sealing_key:
            raise DomainError("the new sealing key is the current one", field="sealing_key")
        self._keys_rotated(
            sealing_key=keys.sealing_key, tls_fingerprint=keys.tls_fingerprint, by=by
        )

    @event("UnitKeyRotated")
    def _keys_rotated(self, sealing_key: str, tls_fingerprint: str, by: Record) -> None:
        self.sealing_key = sealing_key
        self.tls_fingerprint = tls_fingerprint
        self.key_version += 1

    def describe(self) -> Record:
        """What anyone may know of a unit: no key material beyond public keys' fingerprints."""
        return {
            "unit_id": self.unit_id,
            "name": self.name,
            "type": self.type,
            "type_label": UNIT_KIND_LABELS.get(self.type, self.type),
            "street": self.street,
            "key_version": self.key_version,
            "registered_at": self.created_on.isoformat(),
        }
