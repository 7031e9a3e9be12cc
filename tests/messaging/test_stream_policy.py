"""The stream denies purges and deletes, on a real nats-server: a notice leaves it only by age.

`gateway.messaging.relay.ensure_stream` creates the stream that way, and brings a stream made by
an earlier version (which allowed purges) to it at the relay's start. The refusals come from the
server itself, so they hold even for the admin's certificate, which has every right on the
broker (`docs/messaging.md`, "The broker's view").
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats.js.errors
import pytest
from nats.js import JetStreamContext

from gateway.messaging.broker_config import STREAM, SUBJECT_ROOT
from gateway.messaging.relay import MESSAGE_ID_HEADER, ensure_stream, stream_config
from tests.messaging.stack import Stack, build_stack

UNITS = [("chengguan-police-station", "城关派出所", "police_station")]
SUBJECT = f"{SUBJECT_ROOT}.stest.utest"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    found = build_stack(tmp_path, UNITS)
    try:
        yield found
    finally:
        found.close()


async def publish(js: JetStreamContext, count: int) -> None:
    for _ in range(count):
        await js.publish(
            SUBJECT, b"sealed", stream=STREAM, headers={MESSAGE_ID_HEADER: uuid.uuid4().hex}
        )


async def refusals(stack: Stack) -> tuple[str, str, int]:
    """As the admin: purge the stream, delete its first message; the errors, and how many
    messages the stream still holds."""
    admin = await stack.connect(stack.layout.admin_bundle)
    try:
        jsm = admin.jsm()
        with pytest.raises(nats.js.errors.APIError) as purge:
            await jsm.purge_stream(STREAM)
        info = await jsm.stream_info(STREAM)
        with pytest.raises(nats.js.errors.APIError) as delete:
            await jsm.delete_msg(STREAM, info.state.first_seq)
        info = await jsm.stream_info(STREAM)
        return str(purge.value), str(delete.value), info.state.messages
    finally:
        await admin.close()


def test_the_stream_the_relay_makes_denies_purges_and_deletes(stack: Stack) -> None:
    async def run() -> tuple[bool, bool, tuple[str, str, int]]:
        service = await stack.connect(stack.layout.service_bundle)
        try:
            js = service.jetstream()
            await ensure_stream(js)
            await ensure_stream(js)  # again, as at every start: no change, no error
            await publish(js, 3)
            config = (await service.jsm().stream_info(STREAM)).config
        finally:
            await service.close()
        return bool(config.deny_purge), bool(config.deny_delete), await refusals(stack)

    deny_purge, deny_delete, (purge, delete, held) = asyncio.run(run())
    assert deny_purge and deny_delete
    # The server's own refusals (JetStream errors 10110 and 10057).
    assert "stream purge not permitted" in purge
    assert "message delete not permitted" in delete
    assert held == 3


def test_a_stream_made_before_is_updated_to_deny_purges(stack: Stack) -> None:
    """A broker kept from the previous version holds a stream that allowed purges: the relay's
    start turns the denial on, and the messages already in it stay."""

    async def run() -> tuple[bool, bool, tuple[str, str, int]]:
        admin = await stack.connect(stack.layout.admin_bundle)
        try:
            before = dataclasses.replace(stream_config(), deny_purge=False)
            await admin.jetstream().add_stream(before)
            await publish(admin.jetstream(), 2)
            was = (await admin.jsm().stream_info(STREAM)).config.deny_purge
        finally:
            await admin.close()
        service = await stack.connect(stack.layout.service_bundle)
        try:
            await ensure_stream(service.jetstream())
            now = (await service.jsm().stream_info(STREAM)).config.deny_purge
        finally:
            await service.close()
        return bool(was), bool(now), await refusals(stack)

    was, now, (purge, _, held) = asyncio.run(run())
    assert not was
    assert now
    assert "stream purge not permitted" in purge
    assert held == 2
