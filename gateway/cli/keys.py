"""`casetrail keys rotate --event|--token|--service` and `casetrail keys status` (registered in
`gateway.cli.main`; the keys themselves are `gateway.keyring`'s).

`keys status` counts the stored events per event key id from each stored state's header alone
(no key needed; `gateway.store.eventstore`): format byte 0x01 names its key by the 4 bytes
after it; a state of format 0x02 (a per-case data key, issue 19) is counted as `data-key`;
anything else as `unencrypted`. Proven by tests/evidence/test_key_rotation.py.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder

    from gateway.settings import Settings

_PAGE: Final = 5000


class KeysUsageError(click.ClickException):
    exit_code = 2


def events_per_key(recorder: ApplicationRecorder) -> Counter[str]:
    """Stored events by the key id their header names (hex), `data-key`, or `unencrypted`."""
    counts: Counter[str] = Counter()
    start = 0
    while True:
        page = recorder.select_notifications(start=start, limit=_PAGE, inclusive_of_start=False)
        for notification in page:
            state = bytes(notification.state)
            if state[:1] == b"\x01" and len(state) >= 5:
                counts[state[1:5].hex()] += 1
            elif state[:1] == b"\x02":
                counts["data-key"] += 1
            else:
                counts["unencrypted"] += 1
        if len(page) < _PAGE:
            return counts
        start = page[-1].id


def rotate(kind: str, grace_hours: int) -> None:
    from gateway import keyring
    from gateway.settings import Settings

    settings = Settings.from_env()
    keys_dir = settings.keys_dir
    if kind == "event":
        if settings.event_key_env:
            raise KeysUsageError(
                "the event keys come from CASETRAIL_EVENT_KEY, not keys/event.key: put a new "
                "key first in that variable (the old ones after it) and restart"
            )
        new_id = keyring.rotate_event_key(keys_dir)
        click.echo(
            f"event key {new_id} now encrypts new events; the previous keys stay in "
            f"{keys_dir / keyring.EVENT_KEY} for reading. Running casetrail processes follow "
            "the file (within about a second); back the key file up offline now"
        )
    elif kind == "kek":
        if settings.event_key_env:
            raise KeysUsageError(
                "the keys come from CASETRAIL_EVENT_KEY: rotate the key-encryption key with the "
                "key files in CASETRAIL_HOME/keys"
            )
        new_id = keyring.rotate_kek(keys_dir)
        added = _rewrap(settings)
        click.echo(
            f"key-encryption key {new_id} now wraps the data keys ({added} rewrapped under it); "
            "the previous ones stay in the key file. Running casetrail processes follow the "
            "file (within about a second): wait a few seconds, then "
            "`casetrail keys retire-kek OLD_ID` to drop each old one"
        )
    elif kind == "token":
        rotation = keyring.rotate_token_key(keys_dir, grace_hours * 3600)
        click.echo(
            f"token key {rotation.new_key_id} now signs tokens; the old key "
            f"{rotation.old_key_id} verifies tokens until {rotation.verify_until}"
        )
    else:
        _rotate_service(settings)


def _rewrap(settings: Settings) -> int:
    """Wrap every live data key under the current key-encryption key too."""
    from gateway import bootstrap
    from gateway.store.datakeys import DataKeyProblem
    from gateway.store.eventstore import BoundAESGCMCipher

    try:
        application = bootstrap.open_application(settings)
    except bootstrap.StartupProblem as exc:
        raise KeysUsageError(str(exc)) from None
    try:
        cipher = application.mapper.cipher
        if not isinstance(cipher, BoundAESGCMCipher):
            raise KeysUsageError("the store is not encrypted: it has no data keys")
        try:
            return cipher.data_keys.rewrap()
        except DataKeyProblem as exc:
            raise KeysUsageError(str(exc)) from None
    finally:
        application.close()


def retire_kek(kek_id: str) -> None:
    from gateway import bootstrap, keyring
    from gateway.settings import Settings
    from gateway.store.datakeys import DataKeyProblem
    from gateway.store.eventstore import BoundAESGCMCipher

    settings = Settings.from_env()
    try:
        raw = bytes.fromhex(kek_id)
    except ValueError:
        raise KeysUsageError(
            "the key id is not hexadecimal: give 8 hex digits, as `keys status` shows them"
        ) from None
    if len(raw) != 4:
        raise KeysUsageError("a key id is 8 hex digits, as `keys status` shows it")
    rewrapped = _rewrap(settings)
    try:
        application = bootstrap.open_application(settings)
    except bootstrap.StartupProblem as exc:
        raise KeysUsageError(str(exc)) from None
    try:
        cipher = application.mapper.cipher
        if not isinstance(cipher, BoundAESGCMCipher):
            raise KeysUsageError("the store is not encrypted: it has no data keys")
        try:
            dropped = cipher.data_keys.retire(raw)
        except DataKeyProblem as exc:
            raise KeysUsageError(str(exc)) from None
    finally:
        application.close()
    if kek_id in [k.hex() for k in _kek_ids(settings)]:
        try:
            keyring.drop_kek(settings.keys_dir, kek_id)
        except keyring.KeyProblem as exc:
            raise KeysUsageError(str(exc)) from None
    click.echo(
        f"key-encryption key {kek_id} retired: {rewrapped} key(s) rewrapped first, "
        f"{dropped} wrap(s) under it dropped from the key table, removed from the key file"
    )


def _kek_ids(settings: Settings) -> list[bytes]:
    from gateway import keyring
    from gateway.store.eventstore import decode_key, key_id

    return [key_id(decode_key(t)) for t in keyring.load_keks(settings.keys_dir)]


def _rotate_service(settings: Settings) -> None:
    from gateway import bootstrap, keyring, logs
    from projections.evidence.checkpoints import key_id

    logs.configure(settings.log_level)
    keys_dir = settings.keys_dir
    old = keyring.load_private_key(keys_dir / keyring.SERVICE_KEY, "service signing key")
    # Written before the store announces it: a rotation cut short is finished by running it
    # again, never left with an announced key that no file holds.
    new = keyring.stage_service_key(keys_dir)
    new_id = key_id(new.public_key())
    try:
        application = bootstrap.open_unkeyed(settings, create=False)
    except bootstrap.StartupProblem as exc:
        raise KeysUsageError(str(exc)) from None
    try:
        evidence = bootstrap.open_evidence(settings, application, key=old)
        try:
            if key_id(evidence.checkpointer.chain().current()) == new_id:
                click.echo(f"the store already announces key {new_id}: installing it")
            else:
                evidence.catch_up()
                announcement = evidence.checkpointer.announce(new)
                click.echo(
                    f"announced key {new_id} in checkpoint #{announcement.seq} (size "
                    f"{announcement.checkpoint.size}), signed by the old key "
                    f"{announcement.old_key_id} and the new one"
                )
        finally:
            evidence.close()
    finally:
        application.close()
    keyring.install_service_key(keys_dir)
    click.echo(
        f"service key {new_id} now signs checkpoints; the old public key stays as "
        f"{keys_dir}/service-signing.{key_id(old.public_key())}.pub. Give units the new public "
        "key; `casetrail verify` follows the announcement from either key"
    )


def status(*, count_events: bool) -> None:
    from eventsourcing.persistence import PersistenceError

    from gateway import bootstrap, keyring, logs
    from gateway.settings import Settings

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    keys = keyring.key_status(settings.keys_dir)
    counts: Counter[str] | None = None
    if count_events:
        try:
            application = bootstrap.open_unkeyed(settings, create=False)
        except bootstrap.StartupProblem as exc:
            raise KeysUsageError(f"{exc} (or give --no-events)") from None
        try:
            counts = events_per_key(application.recorder)
        except PersistenceError as exc:
            raise KeysUsageError(f"the event store failed: {type(exc).__name__}") from None
        finally:
            application.close()
    for key in keys:
        age = key.age_days()
        line = f"{key.kind:<8} {key.key_id:<16}  {key.use}"
        line += f"; made {key.created}" if key.created else ""
        line += f" ({age:.1f} days ago)" if age is not None else ""
        if key.retired:
            line += f"; retired {key.retired}"
        if key.verify_until:
            line += f"; verifies until {key.verify_until}"
        if counts is not None and key.kind == "event":
            line += f"; {counts.pop(key.key_id, 0)} stored events"
        click.echo(line)
    for name, count in sorted((counts or {}).items()):
        what = {
            "data-key": "events under per-case data keys",
            "unencrypted": "events without a casetrail cipher header",
        }.get(name, "events under a key this directory does not hold")
        click.echo(f"events   {name:<16}  {count} {what}")
