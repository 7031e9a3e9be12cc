"""The unit's side: `casetrail unit listen`. Pull, verify, decrypt, keep, acknowledge, confirm.

For each message from the unit's durable consumer:

1. verify the service's signature and open the seal
   (`gateway.messaging.sealing.open_envelope`); a message
   that fails is refused for good (`term`) with a `message_rejected` log line naming why;
2. a message id already in the inbox is not taken twice: a redelivery (the client stopped before
   its acknowledgement reached the broker) is dropped quietly, a replay (the same message
   published again) is refused with a `message_rejected` line;
3. append it to the local inbox (JSON lines, fsync'd, mode 0600), then acknowledge it to
   JetStream: a crash in between means a redelivery, which step 2 drops;
4. confirm its receipt to the API (`POST /v1/notices/{message_id}/receipt`, the message id
   only), which stores `NoticeReceived`: the unit's client holds it, a machine's receipt, not a
   person signing for a task (that is `POST .../assignments/{aid}/acknowledgement`, by a person,
   never by this client). Each receipt confirmed is noted in `<inbox>.reported`, so a restart
   confirms only what was not confirmed yet; an API that is down is retried until it answers,
   and a notice the API does not know yet (the relay stores its `NoticePublished` a moment after
   the stream took it) is asked about again for `RECEIPT_PATIENCE_SECONDS`.

A `checkpoint` message (a signed tree head the relay broadcasts to every unit) is not put in the
inbox nor reported: its own Ed25519 signature is checked with the service key as well, and it
is kept in `<inbox>.checkpoints.json`, one entry per seq, in the form `casetrail checkpoint
export --all` writes, so `casetrail verify --checkpoint <that file>` reads it as it stands. The
file is rewritten whole (temporary file, fsync, rename) before the message is acknowledged; a
redelivered checkpoint already held is acknowledged and dropped, one that differs from the held
checkpoint of the same seq is refused (`message_rejected`, cause `checkpoint_conflict`).

The inbox holds what the unit may know: the assignment's id, function, task, due date and the
case's reference. Who the child is, the unit learns only by reading the case through the API,
and that read is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import nats
import nats.errors
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from gateway.logs import get_logger
from gateway.messaging.broker import (
    NatsSettings,
    close_connection,
    quiet_asyncio_tls_notes,
    tls_context,
)
from gateway.messaging.broker_config import STREAM, UnitAddress
from gateway.messaging.sealing import Opened, Rejected, UnitCredentials, open_envelope
from projections.evidence.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    checkpoints_document,
    load_checkpoints,
)

log = get_logger("casetrail.unit")

_FETCH_BATCH: Final = 64
_FETCH_SECONDS: Final = 1.0
_REPORT_RETRY_SECONDS: Final = 5.0
_RECEIPT_SOON_SECONDS: Final = 0.2
# How long a receipt the API answers "no such notice" is tried again: the relay stores the
# notice's `NoticePublished` after the stream's acknowledgement, and after a crash of the relay
# only at its restart. The stream's duplicate window, the same day.
RECEIPT_PATIENCE_SECONDS: Final = 24 * 3600.0
USER_AGENT: Final = "casetrail-unit/2"


def _append_line(path: Path, record: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    found: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            found.append(json.loads(line))
        except ValueError:
            log.warning("inbox_line_unreadable")  # a torn last line after a crash: skipped
    return found


class Inbox:
    """The unit's local inbox: one JSON line per message taken, each message id once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reported_path = path.with_name(path.name + ".reported")
        self.entries = _read_lines(path)
        self.ids = {e["message_id"] for e in self.entries}
        self.reported = {r["message_id"] for r in _read_lines(self.reported_path)}

    def __contains__(self, message: str) -> bool:
        return message in self.ids

    def add(self, opened: Opened) -> dict[str, Any]:
        content = opened.content
        entry = {
            "message_id": opened.message_id,
            "kind": content.get("kind"),
            "issued_at": content.get("issued_at"),
            "received_at": datetime.now(UTC).isoformat(),
            "body": content.get("body"),
        }
        _append_line(self.path, entry)
        self.entries.append(entry)
        self.ids.add(opened.message_id)
        return entry

    def unreported(self) -> list[dict[str, Any]]:
        """The notices whose receipt the API has not confirmed yet (checkpoints are not in the
        inbox: they have no receipt)."""
        return [e for e in self.entries if e["message_id"] not in self.reported]

    def mark_reported(self, message: str, outcome: str) -> None:
        _append_line(
            self.reported_path,
            {"message_id": message, "outcome": outcome, "at": datetime.now(UTC).isoformat()},
        )
        self.reported.add(message)


CHECKPOINT_KIND: Final = "checkpoint"


def checkpoint_file_of(inbox: Path) -> Path:
    """Where a unit keeps the checkpoints it received: next to its inbox."""
    return inbox.with_name(inbox.name + ".checkpoints.json")


class CheckpointFile:
    """The checkpoints a unit holds, by seq, in a file `casetrail verify --checkpoint` reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held: dict[int, Checkpoint] = {}
        if path.exists():
            try:
                self.held = {c.seq: c for c in load_checkpoints(path)}
            except CheckpointFormatError as exc:
                # Never overwrite what may be evidence: set it aside and start a new file.
                aside = path.with_name(
                    f"{path.name}.unreadable-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
                )
                os.replace(path, aside)
                log.error(
                    "checkpoint_file_unreadable",
                    path=str(path),
                    moved_to=str(aside),
                    error=str(exc)[:200],
                )

    def get(self, seq: int) -> Checkpoint | None:
        return self.held.get(seq)

    def add(self, checkpoint: Checkpoint) -> None:
        held = {**self.held, checkpoint.seq: checkpoint}
        document = checkpoints_document([held[seq] for seq in sorted(held)])
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.held = held


class ReportFailed(Exception):
    """The API did not take the receipt now; it is tried again later."""


NOT_YET: Final = "refused:404:notice-not-found"


@dataclass(frozen=True)
class ApiReporter:
    """Confirms to the API that the unit's client holds a notice (`NoticeReceived`)."""

    base_url: str
    token: str
    timeout: float = 10.0

    def receipt(self, message: str) -> str:
        """`received` (stored now, or before: the API answers a repeat the same), `NOT_YET`
        (no such notice published to this unit, yet), or `refused:<status>:<problem>`."""
        url = f"{self.base_url.rstrip('/')}/v1/notices/{message}/receipt"
        if not url.startswith(("http://", "https://")):
            raise ReportFailed("the API URL must start with http:// or https://")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            url,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Length": "0",
                "User-Agent": USER_AGENT,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                answer.read()
                return "received"
        except urllib.error.HTTPError as exc:
            problem = _problem_type(exc)
            if exc.code in (403, 404, 409, 422):
                return f"refused:{exc.code}:{problem.rsplit(':', 1)[-1]}"
            raise ReportFailed(f"the API answered {exc.code} ({problem})") from None
        except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
            # HTTPException: e.g. an answer cut short (IncompleteRead), which is no OSError.
            raise ReportFailed(f"the API is not reachable: {type(exc).__name__}") from None


    def inbox(self, on: str | None = None) -> dict[str, Any]:
        """The unit's assignments and their states as the API knows them (`GET /v1/inbox`):
        published, received, signed for, declined, result due, overdue, result reported,
        ended. No case content; `on` (YYYY-MM-DD) is the day deadlines are judged on."""
        url = f"{self.base_url.rstrip('/')}/v1/inbox"
        if on is not None:
            url += "?" + urllib.parse.urlencode({"on": on})
        if not url.startswith(("http://", "https://")):
            raise ReportFailed("the API URL must start with http:// or https://")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            url,
            headers={
                "Authorization": f"Bearer {self.token}",
                "X-Purpose-Of-Use": "intervention",
                "User-Agent": USER_AGENT,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                found: dict[str, Any] = json.loads(answer.read())
                return found
        except urllib.error.HTTPError as exc:
            raise ReportFailed(f"the API answered {exc.code} ({_problem_type(exc)})") from None
        except (
            urllib.error.URLError,
            TimeoutError,
            OSError,
            ValueError,
            http.client.HTTPException,
        ) as exc:
            raise ReportFailed(f"the API is not reachable: {type(exc).__name__}") from None


def _problem_type(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read() or b"{}").get("type", ""))
    except ValueError:
        return ""


def _server(nc: NATS | None) -> str | None:
    """The broker node a connection is on (`host:port`)."""
    url = nc.connected_url if nc is not None else None
    return url.netloc if url is not None else None


class UnitClient:
    def __init__(
        self,
        credentials: UnitCredentials,
        credentials_path: Path,
        *,
        inbox: Inbox,
        reporter: ApiReporter,
        nats_settings: NatsSettings,
        service_key: Ed25519PublicKey | None = None,
        checkpoints: CheckpointFile | None = None,
    ) -> None:
        self.credentials = credentials
        self.credentials_path = credentials_path
        self.user = credentials.user
        self.address = UnitAddress(self.user, "")
        self.inbox = inbox
        self.reporter = reporter
        self.nats_settings = nats_settings
        self.service_key = service_key or credentials.service_key
        self.checkpoints = checkpoints or CheckpointFile(checkpoint_file_of(inbox.path))
        self.nc: NATS | None = None
        self.received = 0
        self.rejected = 0
        self._next_report = 0.0

    async def connect(self) -> NATS:
        # The credentials file opens with the TLS key and certificate: `load_cert_chain` reads
        # them as they stand and skips the other blocks.
        quiet_asyncio_tls_notes()
        context = tls_context(self.credentials_path, self.credentials.ca_pem.decode())

        async def on_error(exc: Exception) -> None:
            # Permission refusals arrive here: they name the subject, never message content.
            log.warning("broker_error", error=str(exc)[:200])

        async def on_reconnected() -> None:
            # On a cluster: the node it failed over to (`tests/messaging/test_cluster.py`).
            log.info("unit_reconnected", unit=self.credentials.unit_id, server=_server(self.nc))

        nc = await nats.connect(
            servers=self.nats_settings.servers,
            tls=context,
            name=f"casetrail-unit-{self.user}",
            inbox_prefix=self.address.inbox_prefix,
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
            reconnected_cb=on_reconnected,
        )
        self.nc = nc
        log.info(
            "unit_connected",
            unit=self.credentials.unit_id,
            held=len(self.inbox.ids),
            server=_server(nc),
        )
        return nc

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                nc = self.nc
                if nc is None or nc.is_closed:
                    nc = await self.connect()
                js = nc.jetstream()
                subscription = await js.pull_subscribe_bind(
                    durable=self.address.consumer, stream=STREAM
                )
                backoff = 0.5
                while not stop.is_set():
                    await self.report_pending()
                    try:
                        messages = await subscription.fetch(_FETCH_BATCH, timeout=_FETCH_SECONDS)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                    for message in messages:
                        await self.handle(message)
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                # E.g. the broker is away, or the relay has not made this unit's consumer yet:
                # start again from a fresh connection (and subscription) after a pause.
                log.warning("unit_waiting", error=type(exc).__name__)
                await self.close()
            except Exception as exc:
                # Anything else (a defect, a message this code cannot handle): the client must
                # not stop taking notices. Said at error level; a message not acknowledged
                # comes again after the consumer's ack wait.
                log.error("unit_client_failed", error_type=type(exc).__name__)
                await self.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 10.0)
        await self.close()

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            failed = await close_connection(nc)
            if failed is not None:
                log.info("unit_connection_dropped", error=failed)

    async def handle(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            opened = open_envelope(
                message.data,
                recipient=self.user,
                private_key=self.credentials.sealing_key,
                service_key=self.service_key,
            )
        except Rejected as exc:
            self.rejected += 1
            log.warning("message_rejected", cause=exc.reason, detail=str(exc), seq=sequence)
            await message.term()
            return
        if opened.content.get("kind") == CHECKPOINT_KIND:
            await self._keep_checkpoint(message, opened, sequence)
            return
        if opened.message_id in self.inbox:
            if message.metadata.num_delivered > 1:
                log.info("message_redelivered", message_id=opened.message_id, seq=sequence)
            else:
                self.rejected += 1
                log.warning(
                    "message_rejected",
                    cause="replayed",
                    detail="this message id was received before; a copy is not taken twice",
                    message_id=opened.message_id,
                    seq=sequence,
                )
            await message.ack_sync()
            return
        self.inbox.add(opened)
        await message.ack_sync()
        self.received += 1
        log.info(
            "message_received",
            message_id=opened.message_id,
            kind=opened.content.get("kind"),
            seq=sequence,
        )
        self._next_report = 0.0

    async def _keep_checkpoint(self, message: Msg, opened: Opened, sequence: int) -> None:
        """Check the checkpoint's own signature, keep it by seq, then acknowledge it."""
        try:
            checkpoint = Checkpoint.from_json(opened.content.get("body"))
            if opened.content.get("event") != f"checkpoint/{checkpoint.seq}":
                raise Rejected("malformed", "the message does not name this checkpoint")
            if not checkpoint.verify(self.service_key):
                raise Rejected("checkpoint_signature", "the checkpoint's signature is not valid")
            held = self.checkpoints.get(checkpoint.seq)
            if held is not None and held != checkpoint:
                raise Rejected(
                    "checkpoint_conflict", f"another checkpoint #{checkpoint.seq} is held"
                )
        except (Rejected, CheckpointFormatError) as exc:
            self.rejected += 1
            cause = exc.reason if isinstance(exc, Rejected) else "malformed"
            log.warning(
                "message_rejected",
                cause=cause,
                detail=str(exc),
                message_id=opened.message_id,
                seq=sequence,
            )
            await message.term()
            return
        if held is not None:
            log.info("checkpoint_already_held", checkpoint=checkpoint.seq, seq=sequence)
            await message.ack_sync()
            return
        self.checkpoints.add(checkpoint)
        await message.ack_sync()
        self.received += 1
        log.info(
            "checkpoint_received",
            message_id=opened.message_id,
            checkpoint=checkpoint.seq,
            size=checkpoint.size,
            seq=sequence,
        )

    async def report_pending(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_report:
            return
        retry = _REPORT_RETRY_SECONDS
        for entry in self.inbox.unreported():
            message = entry["message_id"]
            try:
                outcome = await asyncio.to_thread(self.reporter.receipt, message)
            except ReportFailed as exc:
                log.warning("receipt_failed", message_id=message, error=str(exc))
                self._next_report = loop.time() + _REPORT_RETRY_SECONDS
                return
            age = _age_seconds(entry)
            if outcome == NOT_YET and age < RECEIPT_PATIENCE_SECONDS:
                # The relay has not stored its fact yet (it does so a moment after the stream's
                # acknowledgement): asked again soon, then at the usual pace.
                retry = min(retry, _RECEIPT_SOON_SECONDS if age < 10 else retry)
                continue
            self.inbox.mark_reported(message, outcome)
            log.info(
                "receipt_confirmed", message_id=message, kind=entry.get("kind"), outcome=outcome
            )
        self._next_report = loop.time() + retry


def _age_seconds(entry: dict[str, Any]) -> float:
    """How long ago the client took the notice (0 if the inbox line does not say)."""
    try:
        taken = datetime.fromisoformat(str(entry.get("received_at")))
    except ValueError:
        return 0.0
    return (datetime.now(UTC) - taken).total_seconds()
