"""Giving up a connection never raises (`gateway.messaging.broker.close_connection`).

The unit client and the relay close their connection when they recover from a failure (the
broker away, a timeout) and then connect again. nats-py's own close raises AttributeError when
messages were published while the broker was away and its TLS transport is gone: raised from
the recovery, it ended the unit client's process, and the notices of the outage were never read
(a CI run of tests/reliability/test_outages_broker.py). Real parts: the wheel's nats-server with
the generated TLS config, and a real client.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import nats
from nats.aio.client import Client as NATS

from gateway.messaging.broker import close_connection, quiet_asyncio_tls_notes
from tests.messaging.stack import Stack, build_stack

UNIT = ("chengguan-police-station", "城关派出所", "police_station")


async def _reconnecting_client(stack: Stack) -> NATS:
    quiet_asyncio_tls_notes()
    context = ssl.create_default_context(cadata=stack.layout.ca_cert.read_text())
    context.load_cert_chain(str(stack.layout.admin_bundle))
    return await nats.connect(
        servers=stack.nats.servers,
        tls=context,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=2,
    )


async def _given_up_after_an_outage(stack: Stack, published: int) -> tuple[str | None, bool]:
    """The broker stops under a client that keeps `published` messages pending, then the
    client is given up: (what closing it raised, whether it is closed)."""
    nc = await _reconnecting_client(stack)
    stack.broker.stop()
    await asyncio.sleep(0.1)  # the client has seen the connection go and is reconnecting
    for _ in range(published):
        await nc.publish("casetrail.test", b"x" * 100)  # buffered: the broker is away
    try:
        return await close_connection(nc), nc.is_closed
    finally:
        stack.broker.start()


def test_closing_after_an_outage_never_raises_and_leaves_the_connection_closed(
    tmp_path: Path,
) -> None:
    stack = build_stack(tmp_path, [UNIT])
    try:
        # With messages pending, nats-py's close fails (AttributeError here): reported, not raised.
        failed, closed = asyncio.run(_given_up_after_an_outage(stack, published=50))
        assert closed
        assert failed in (None, "AttributeError"), failed
        # Nothing pending: a clean close.
        assert asyncio.run(_given_up_after_an_outage(stack, published=0)) == (None, True)

        async def twice() -> list[str | None]:
            nc = await _reconnecting_client(stack)
            return [await close_connection(nc), await close_connection(nc)]

        assert asyncio.run(twice()) == [None, None]  # a closed connection: nothing to do
    finally:
        stack.close()
