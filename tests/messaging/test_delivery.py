"""Sealed notices end to end, against a real nats-server started from the wheel.

One stack for the module: the broker with the generated config, the API and the relay as
processes, and a `casetrail unit listen` process per unit. Commands go over real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import pytest
from cryptography.hazmat.primitives import serialization
from nats.js.api import ConsumerConfig

from domain.clock import local_today
from domain.notices import NoticeReceived, received_id
from domain.taxonomy import Role
from domain.units import Unit
from gateway.messaging.broker import EmbeddedBroker
from gateway.messaging.broker_config import CertificateAuthority, client_bundle
from gateway.messaging.sealing import UnitCredentials
from tests.integration.planted import Planted, planted_case
from tests.messaging.stack import Listener, Stack, build_stack, wait_for

POLICE = "chengguan-police-station"
SCHOOL = "chengguan-school-district-office"
OFFICE = "chengguan-governance-office"
AUDIT = "county-compliance-audit"
VILLAGE = "dongshan-village"
TASK = "到校了解欺凌情况并约谈相关学生家长。任务标记"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = build_stack(
        tmp_path_factory.mktemp("delivery"),
        [
            (POLICE, "城关派出所", "police_station"),
            (SCHOOL, "城关学区办", "school_district_office"),
            (OFFICE, "城关街道综治办", "governance_office"),
            (AUDIT, "县合规审查组", "compliance_audit"),
        ],
    )
    try:
        built.start_api()
        built.start_relay()
        for unit in (POLICE, SCHOOL, OFFICE, AUDIT):
            built.listeners[unit] = built.start_listener(unit)
        built.wait_api()
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def listeners(stack: Stack) -> dict[str, Listener]:
    return stack.listeners


def report(stack: Stack, planted: Planted | None = None) -> str:
    body = (planted or planted_case(VILLAGE)).body
    answer = httpx.post(
        f"{stack.api_url}/v1/cases", json=body, headers=stack.headers(Role.REPORTER, VILLAGE)
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def assign(stack: Stack, case_id: str, unit: str, task: str = TASK, days: int = 7) -> str:
    answer = httpx.post(
        f"{stack.api_url}/v1/cases/{case_id}/assignments",
        json={
            "unit": unit,
            "function": "judicial",
            "task": task,
            "due_on": (local_today() + timedelta(days=days)).isoformat(),
        },
        headers=stack.headers(Role.COORDINATOR, OFFICE),
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["assignment_id"])


def assignment_state(stack: Stack, case_id: str, assignment_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{stack.api_url}/v1/cases/{case_id}",
        headers=stack.headers(Role.COORDINATOR, OFFICE, purpose="consultation"),
    )
    assert answer.status_code == 200, answer.text
    found = {a["id"]: a for a in answer.json()["assignments"]}
    return dict(found[assignment_id])


def received(listener: Listener, assignment_id: str) -> list[dict[str, Any]]:
    return [a for a in listener.assignments() if a["id"] == assignment_id]


def test_an_assignment_over_http_reaches_its_unit_decrypted_and_its_receipt_is_stored(
    stack: Stack, listeners: dict[str, Listener]
) -> None:
    planted = planted_case(VILLAGE)
    case_id = report(stack, planted)
    assignment_id = assign(stack, case_id, POLICE)

    police = listeners[POLICE]
    wait_for(lambda: bool(received(police, assignment_id)), 30, "the police to get it")
    [entry] = [
        e
        for e in police.entries()
        if e["kind"] == "assignment" and e["body"]["assignment"]["id"] == assignment_id
    ]
    got = entry["body"]["assignment"]
    assert got["case_ref"] == case_id
    assert got["function"] == "judicial"
    assert got["task"] == TASK
    assert got["due_on"] == (local_today() + timedelta(days=7)).isoformat()
    # The unit learns who the child is only by an audited read: nothing of the minor here.
    inbox_text = police.inbox.read_text(encoding="utf-8")
    for needle in (planted.name, planted.id_number, planted.description, planted.phone):
        assert needle not in inbox_text
    # No other unit gets it.
    assert not received(listeners[SCHOOL], assignment_id)

    # The unit's client confirmed its receipt: NoticeReceived (a machine's), after the
    # relay's NoticePublished; nobody signed for the task (a person does that, not the client).
    def receipts() -> list[NoticeReceived]:
        with stack.application() as application:
            return [
                e
                for e in application.events.get(received_id(entry["message_id"]))
                if isinstance(e, NoticeReceived)
            ]

    wait_for(lambda: bool(receipts()), 20, "NoticeReceived")
    [receipt] = receipts()
    with stack.application() as application:
        published = application.published_notice(entry["message_id"])
    assert published is not None
    assert (receipt.unit, receipt.kind, str(receipt.case_id)) == (POLICE, "assignment", case_id)
    assert receipt.assignment_id == assignment_id
    assert receipt.timestamp >= published.timestamp
    assert receipt.client["user"] == f"user-{Role.UNIT_MEMBER}-{POLICE}"
    assert assignment_state(stack, case_id, assignment_id)["acknowledged_at"] is None
    assert [r["outcome"] for r in police.reported() if r["message_id"] == entry["message_id"]] == [
        "received"
    ]


def test_the_broker_stores_only_ciphertext_and_opaque_names(
    stack: Stack, listeners: dict[str, Listener]
) -> None:
    planted = planted_case(VILLAGE)
    case_id = report(stack, planted)
    task = f"{TASK}{uuid.uuid4().hex[:8]}"
    assignment_id = assign(stack, case_id, SCHOOL, task=task)
    wait_for(lambda: bool(received(listeners[SCHOOL], assignment_id)), 30, "the school to get it")

    # What a subscriber with the admin's rights on the stream reads: every stored message.
    messages = stack.stream_messages()
    assert messages
    needles = {
        "name": planted.name,
        "id_number": planted.id_number,
        "description": planted.description,
        "task": task,
        "unit id": SCHOOL,
        "case id": case_id,
        "assignment id": assignment_id,
    }
    for subject, headers, data in messages:
        seen = subject + json.dumps(headers) + data.decode("latin-1")
        for what, needle in needles.items():
            assert needle not in seen, f"{what} found on the broker"
            assert needle.encode() not in data
        envelope = json.loads(data)
        assert set(envelope) == {"v", "id", "to", "ct", "sig"}
        assert subject.split(".")[2] == envelope["to"]
    # And the broker's own files on disk.
    for path in stack.layout.store_dir.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            for what, needle in needles.items():
                assert needle.encode() not in raw, f"{what} found in {path.name}"


def test_a_unit_cannot_fetch_subscribe_to_or_read_another_units_messages(
    stack: Stack, listeners: dict[str, Listener]
) -> None:
    # The school holds messages in its consumer, unacknowledged, for the police to try to steal.
    listeners[SCHOOL].process.stop()
    case_id = report(stack)
    assign(stack, case_id, SCHOOL)
    with stack.application() as application:
        school: Unit = application.unit(SCHOOL)
        police: Unit = application.unit(POLICE)

    async def attempt() -> tuple[list[str], list[str]]:
        errors: list[str] = []
        nc = await stack.connect(
            stack.credentials[POLICE], errors, inbox_prefix=f"_INBOX_{police.nats_user}"
        )
        stolen: list[str] = []
        try:
            js = nc.jetstream(timeout=1)
            # 1. Pull from the school's durable consumer.
            pull = await js.pull_subscribe_bind(durable=school.nats_user, stream="CASETRAIL")
            with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
                msgs = await pull.fetch(1, timeout=1)
                stolen.extend(m.subject for m in msgs)

            # 2. Subscribe to the school's subject, to every subject, and to its inbox prefix.
            async def keep(msg: Any) -> None:
                stolen.append(msg.subject)

            for subject in (
                f"ct.*.{school.nats_user}",
                "ct.>",
                f"_INBOX_{school.nats_user}.>",
                "$JS.>",
            ):
                await nc.subscribe(subject, cb=keep)
            # 3. Read the stream by sequence, directly or through the API, and make a consumer.
            for api_subject in (
                "$JS.API.DIRECT.GET.CASETRAIL",
                "$JS.API.STREAM.MSG.GET.CASETRAIL",
            ):
                with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                    answer = await nc.request(api_subject, b'{"seq": 1}', timeout=1)
                    stolen.append(answer.data.decode())
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await js.add_consumer(
                    "CASETRAIL", ConsumerConfig(name="mine", filter_subject="ct.>")
                )
            # Meanwhile a new message for the school is published.
            assign(stack, report(stack), SCHOOL, task=f"{TASK}-2", days=8)
            await asyncio.sleep(1.5)
        finally:
            await nc.close()
        return errors, stolen

    errors, stolen = asyncio.run(attempt())
    assert stolen == []
    joined = "\n".join(errors).lower()
    assert f'publish to "$js.api.consumer.msg.next.casetrail.{school.nats_user}"' in joined
    assert 'subscription to "ct.>"' in joined
    assert f'subscription to "_inbox_{school.nats_user}.>"' in joined
    assert 'publish to "$js.api.direct.get.casetrail"' in joined
    assert 'publish to "$js.api.stream.msg.get.casetrail"' in joined

    # The school's messages are still there for the school, in full.
    listeners[SCHOOL] = stack.start_listener(SCHOOL)
    wait_for(
        lambda: {a["task"] for a in listeners[SCHOOL].assignments()} >= {TASK, f"{TASK}-2"},
        30,
        "the school to get its own messages",
    )


def test_a_certificate_not_registered_is_refused_by_the_broker(stack: Stack) -> None:
    # Signed by the project's CA, but not a registered unit's: not pinned, no user.
    ca = CertificateAuthority.load(stack.layout)
    key, cert = ca.issue("u0000000000000000", client=True)
    bundle = stack.root / "stranger.pem"
    bundle.write_bytes(client_bundle(key, cert, ca.pem))

    async def usable() -> bool:
        try:
            nc = await stack.connect(bundle)
        except Exception:  # refused during the handshake or the CONNECT
            return False
        try:
            await nc.flush(timeout=2)
            return nc.is_connected
        except Exception:  # refused after the handshake
            return False
        finally:
            await nc.close()

    assert asyncio.run(usable()) is False
    assert isinstance(stack.broker, EmbeddedBroker)  # this module's stack: one server
    assert "certificate not pinned" in stack.broker.log_path.read_text()


def tamper(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    ct = bytearray(doc["ct"].encode())
    ct[60] = ord("A") if ct[60] != ord("A") else ord("B")
    doc["ct"] = ct.decode()
    return json.dumps(doc).encode()


def test_tampered_replayed_and_misaddressed_messages_are_rejected_with_a_log_line(
    stack: Stack, listeners: dict[str, Listener]
) -> None:
    office = listeners[OFFICE]
    case_id = report(stack)
    assignment_id = assign(stack, case_id, OFFICE)
    wait_for(lambda: bool(received(office, assignment_id)), 30, "the office to get it")
    school_case = report(stack)
    school_assignment = assign(stack, school_case, SCHOOL, task=f"{TASK}-3")
    with stack.application() as application:
        school_unit = application.unit(SCHOOL)
    [taken] = [
        e["message_id"]
        for e in office.entries()
        if e["kind"] == "assignment" and e["body"]["assignment"]["id"] == assignment_id
    ]
    messages = stack.stream_messages()
    [original] = [
        (subject, data) for subject, _, data in messages if json.loads(data)["id"] == taken
    ]
    for_school = next(
        data for subject, _, data in messages if subject.endswith(school_unit.nats_user)
    )

    # New clues alert the office too, at their own pace: count the other notices only.
    def not_alerts() -> list[dict[str, Any]]:
        return [e for e in office.entries() if e["kind"] != "new_clue"]

    before = len(not_alerts())

    async def inject() -> None:
        nc = await stack.connect(stack.layout.admin_bundle)
        js = nc.jetstream()
        subject = original[0]
        await js.publish(subject, tamper(original[1]), headers={"Nats-Msg-Id": "t-1"})
        await js.publish(subject, original[1], headers={"Nats-Msg-Id": "t-2"})
        await js.publish(subject, for_school, headers={"Nats-Msg-Id": "t-3"})
        await nc.close()

    asyncio.run(inject())

    def reasons() -> list[str]:
        return [line["cause"] for line in office.process.events("message_rejected")]

    wait_for(lambda: len(reasons()) >= 3, 20, "three rejections")
    assert sorted(reasons()) == ["bad_signature", "replayed", "wrong_recipient"]
    for line in office.process.events("message_rejected"):
        assert line["level"] == "warning"
        assert line["detail"]
    # None of them entered the inbox; the genuine message is there once.
    assert len(not_alerts()) == before
    assert len(received(office, assignment_id)) == 1
    assert school_assignment not in {a["id"] for a in office.assignments()}


def test_escalations_reminders_and_compliance_alerts_reach_their_units(
    stack: Stack, listeners: dict[str, Listener]
) -> None:
    case_id = report(stack)
    assignment_id = assign(stack, case_id, POLICE, days=1)
    escalated = httpx.post(
        f"{stack.api_url}/v1/cases/{case_id}/escalations",
        json={"to": "police_station", "to_level": "county", "reason": "情况紧急,需要上报。"},
        headers=stack.headers(Role.COORDINATOR, OFFICE),
    )
    assert escalated.status_code == 201, escalated.text
    # A refused read: the compliance auditors are alerted.
    refused = httpx.get(
        f"{stack.api_url}/v1/cases/{case_id}",
        headers=stack.headers(Role.UNIT_MEMBER, SCHOOL, purpose="intervention"),
    )
    assert refused.status_code == 404
    # The deadline scan, as the relay runs it every minute (here: the day after the due date).
    remind = stack.spawn(
        "remind", "relay", "remind", "--today", (local_today() + timedelta(days=2)).isoformat()
    )
    assert remind.popen.wait(30) == 0, remind.text()

    def kinds(unit: str) -> list[dict[str, Any]]:
        return [e for e in listeners[unit].entries() if e["body"].get("case_ref") == case_id]

    wait_for(lambda: any(e["kind"] == "case_escalated" for e in kinds(OFFICE)), 30, "escalation")
    wait_for(lambda: any(e["kind"] == "case_escalated" for e in kinds(POLICE)), 30, "escalation")

    def overdue() -> list[dict[str, Any]]:
        return [
            e["body"]
            for e in kinds(POLICE)
            if e["kind"] == "deadline_missed" and e["body"]["fact"] == "AssignmentOverdue"
        ]

    wait_for(lambda: bool(overdue()), 30, "the overdue assignment's notice")
    wait_for(lambda: any(e["kind"] == "compliance_alert" for e in kinds(AUDIT)), 30, "alert")

    assert [b["assignment_id"] for b in overdue()] == [assignment_id]
    [alert] = [e for e in kinds(AUDIT) if e["kind"] == "compliance_alert"]
    assert alert["body"]["alert"] == "access_denied"
    assert alert["body"]["actor"]["unit"] == SCHOOL
    [escalation] = [e for e in kinds(OFFICE) if e["kind"] == "case_escalated"]
    assert escalation["body"]["to_level"] == "county"
    assert "情况紧急" not in json.dumps(escalation, ensure_ascii=False)
    # Not to units the rules do not name.
    assert kinds(SCHOOL) == []
    # A second scan the same day stores nothing new.
    again = stack.spawn(
        "remind-again",
        "relay",
        "remind",
        "--today",
        (local_today() + timedelta(days=2)).isoformat(),
    )
    assert again.popen.wait(30) == 0
    assert "0 deadline fact(s)" in again.text()


def test_a_restarted_unit_client_does_not_report_or_take_anything_twice(
    stack: Stack, listeners: dict[str, Listener]
) -> None:
    police = listeners[POLICE]
    case_id = report(stack)
    first = assign(stack, case_id, POLICE, task=f"{TASK}-r1")
    wait_for(lambda: bool(received(police, first)), 30, "the first assignment")
    [taken] = [
        e["message_id"]
        for e in police.entries()
        if e["kind"] == "assignment" and e["body"]["assignment"]["id"] == first
    ]
    wait_for(lambda: taken in {r["message_id"] for r in police.reported()}, 30, "the first report")
    entries_before = police.entries()
    reported_before = police.reported()
    assert police.process.stop() in (0, -15)

    listeners[POLICE] = police = stack.start_listener(POLICE)
    second = assign(stack, report(stack), POLICE, task=f"{TASK}-r2", days=9)
    wait_for(lambda: bool(received(police, second)), 30, "the second assignment")
    wait_for(lambda: len(police.reported()) == len(reported_before) + 1, 20, "one new report")
    assert police.entries()[: len(entries_before)] == entries_before
    assert len(police.entries()) == len(entries_before) + 1
    ids = [e["message_id"] for e in police.entries()]
    assert len(ids) == len(set(ids))
    reported = [r["message_id"] for r in police.reported()]
    assert len(reported) == len(set(reported))
    # The client marks the inbox reported, then logs it: the line may lag the file a moment.
    wait_for(lambda: bool(police.process.events("receipt_confirmed")), 10, "the receipt's log line")
    assert police.process.events("receipt_confirmed")[-1]["outcome"] == "received"
    assert len(police.process.events("receipt_confirmed")) == 1


def test_unit_add_on_a_running_broker_reloads_it_and_keeps_private_keys_out_of_the_store(
    stack: Stack,
) -> None:
    out = stack.root / "new-unit.pem"
    added = stack.spawn(
        "unit-add",
        "unit",
        "add",
        "--unit",
        "chengguan-tribunal",
        "--name",
        "城关人民法庭",
        "--type",
        "tribunal",
        "--street",
        "chengguan-street",
        "--out",
        str(out),
        env={"CASETRAIL_NATS_URL": ""},  # the embedded broker: `unit add` signals it to reload
    )
    assert added.popen.wait(30) == 0, added.text()
    assert "the embedded server reloaded it" in added.text()
    assert out.stat().st_mode & 0o777 == 0o600
    stack.credentials["chengguan-tribunal"] = out

    # The new unit connects at once and receives its assignment.
    tribunal = stack.start_listener("chengguan-tribunal")
    case_id = report(stack)
    assignment_id = assign(stack, case_id, "chengguan-tribunal")
    wait_for(lambda: bool(received(tribunal, assignment_id)), 30, "the tribunal to get it")

    # Its private keys are in its file only: not in the store, not in its registration event.
    credentials = UnitCredentials.load(out)
    secrets = {
        "sealing key": credentials.sealing_key.private_bytes_raw(),
        "tls key": serialization.load_pem_private_key(credentials.tls_key_pem, None).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    with stack.application() as application:
        unit = application.unit("chengguan-tribunal")
        stored = [
            application.mapper.to_domain_event(n)
            for n in application.notifications()
            if n.originator_id == unit.id
        ]
    state = json.dumps([vars(e) for e in stored], default=str)
    for what, secret in secrets.items():
        for form in (secret.hex(), base64.b64encode(secret).decode()):
            assert form not in state, what
    for path in stack.home.glob("*.sqlite*"):
        raw = path.read_bytes()
        for what, secret in secrets.items():
            assert secret not in raw, f"{what} in {path.name}"


def test_listen_refuses_credentials_of_another_unit_or_open_to_others(stack: Stack) -> None:
    loose = stack.root / "loose.pem"
    loose.write_bytes(Path(stack.credentials[POLICE]).read_bytes())
    loose.chmod(0o644)
    wrong = stack.spawn(
        "listen-wrong",
        "unit",
        "listen",
        "--unit",
        SCHOOL,
        "--key",
        str(stack.credentials[POLICE]),
        "--token-file",
        str(stack.root / f"{POLICE}.token"),
    )
    opened = stack.spawn("listen-loose", "unit", "listen", "--unit", POLICE, "--key", str(loose))
    for refused, fragment in ((wrong, f"not {SCHOOL}"), (opened, "chmod 600")):
        assert refused.popen.wait(30) == 2
        lines = refused.text().strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("casetrail: error: ")
        assert fragment in lines[0]
