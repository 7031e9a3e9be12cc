"""The relay on a PostgreSQL store: its position in the events' own schema, and a notice through
a real nats-server to the unit, opened with the unit's credentials."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from domain import commands as cmd
from domain.access import Actor
from domain.clock import local_today
from domain.taxonomy import Role
from domain.units import RegisterUnit
from gateway import keyring
from gateway.bootstrap import open_application
from gateway.messaging.broker import EmbeddedBroker, NatsSettings
from gateway.messaging.broker_config import NatsLayout
from gateway.messaging.registry import register_unit, write_broker_config
from gateway.messaging.relay import Relay, RelayOptions
from gateway.messaging.sealing import UnitCredentials, open_envelope
from gateway.settings import Settings
from tests.conftest import pg_url
from tests.integration.planted import planted_case
from tests.messaging.stack import connect_as, free_port, require_nats_server

STREET = "chengguan-street"
POLICE = "chengguan-police-station"
COORDINATOR = Actor("user-coordinator", Role.COORDINATOR, "chengguan-governance-office", STREET)
REPORTER = Actor("user-reporter", Role.REPORTER, "dongshan-village", STREET)


@pytest.mark.postgres
def test_the_relay_follows_a_postgresql_store(tmp_path: Path, pg_schema: str) -> None:
    require_nats_server()
    home = tmp_path / "home"
    keyring.init_keys(home / "keys")
    settings = Settings.from_env(
        {"CASETRAIL_HOME": str(home), "CASETRAIL_DATABASE_URL": pg_url(pg_schema)}
    )
    port = free_port()
    nats = NatsSettings(url=f"tls://127.0.0.1:{port}", port=port)
    layout = NatsLayout(home)
    application = open_application(settings)
    broker = EmbeddedBroker(layout, host="127.0.0.1", port=port)
    try:
        credentials_path = tmp_path / "police.pem"
        register_unit(
            settings,
            application,
            RegisterUnit(unit_id=POLICE, name="城关派出所", type="police_station", street=STREET),
            credentials_path,
        )
        write_broker_config(settings, application, nats)
        broker.start()
        case_id = application.report_clue(cmd.ReportClue(**planted_case().body), REPORTER)
        assignment_id = application.change_case(
            case_id,
            COORDINATOR,
            "assign_unit",
            lambda c: c.assign_unit(
                cmd.AssignUnit(
                    unit=POLICE,
                    function="online",
                    task="核查网络欺凌线索。",
                    due_on=local_today() + timedelta(days=5),
                ),
                by=COORDINATOR.as_record(),
            ),
        )
        head = application.recorder.max_notification_id()
        credentials = UnitCredentials.load(credentials_path)

        def relay() -> Relay:
            return Relay(
                application,
                nats_settings=nats,
                layout=layout,
                signer=keyring.load_private_key(
                    settings.keys_dir / keyring.SERVICE_KEY, "service key"
                ),
                index_key=keyring.load_index_key(settings.keys_dir),
                options=RelayOptions(reminder_interval=0),
            )

        async def run() -> dict[str, object]:
            worker = relay()
            await worker.connect()
            try:
                while worker.position() < (head or 0):
                    await worker.step()
            finally:
                await worker.close()
            nc = await connect_as(
                nats, layout, credentials_path, inbox_prefix=f"_INBOX_{credentials.user}"
            )
            try:
                pull = await nc.jetstream().pull_subscribe_bind(
                    durable=credentials.user, stream="CASETRAIL"
                )
                [message] = await pull.fetch(1, timeout=5)
                await message.ack()
            finally:
                await nc.close()
            return open_envelope(
                message.data,
                recipient=credentials.user,
                private_key=credentials.sealing_key,
                service_key=credentials.service_key,
            ).content

        content = asyncio.run(run())
        assert content["kind"] == "assignment"
        body = content["body"]
        assert isinstance(body, dict)
        assert body["assignment"]["id"] == str(assignment_id)
        assert body["assignment"]["case_ref"] == str(case_id)
        # The position is durable, in the events' schema: a new relay starts from it.
        assert relay().position() == head
    finally:
        broker.stop()
        application.close()
