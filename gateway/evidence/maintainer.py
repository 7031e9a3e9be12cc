"""Tamper evidence as the service runs it: the Merkle log kept up to date, signed checkpoints
every N events or T seconds, and on-demand checkpoints for proofs and bundles. The units get
each stored checkpoint from the relay, which reads the checkpoint table like an outbox
(`gateway.messaging.relay`).

Settings (environment, read once at start by `gateway.settings`):

- CASETRAIL_CHECKPOINT_EVERY_EVENTS (default 100): sign once the tree has grown by this many
  events;
- CASETRAIL_CHECKPOINT_EVERY_SECONDS (default 60): or once this long has passed since the last
  checkpoint and the tree has grown at all;
- CASETRAIL_EVIDENCE_POLL_SECONDS (default 1): how often the maintainer looks for new events
  (on PostgreSQL it also wakes on the store's NOTIFY).

Before signing, the checkpointer checks that the stored tree still extends the previous
checkpoint (an RFC 9162 consistency proof from the stored nodes, checked against the previous,
signed root); if not, history below it was rewritten and it refuses to sign, loudly.

Signing-key rotation (`casetrail keys rotate --service`, `projections.evidence.rotation`): the
checkpointer trusts the previous checkpoints signed by any key of its key's chain, and signs
only with the key in force. When the store announces a successor to the key it holds, it loads
the key file again (`reload_key`); until the file holds the announced key it signs nothing
(`KeyNotInForce`, logged, retried). Proven by tests/evidence/test_key_rotation.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.persistence import IntegrityError

from domain.application import CaseTrail
from gateway.logs import get_logger
from gateway.settings import Settings, SettingsProblem
from gateway.store.horizon import settled_horizon
from gateway.store.persistence import LockedSQLiteViewRecorder
from projections.evidence.checkpoints import Checkpoint, CheckpointStore, key_id
from projections.evidence.log import MerkleLog, close_recorder, merkle_follower
from projections.evidence.merkle import verify_consistency
from projections.evidence.rotation import Announcement, AnnouncementStore, KeyChain
from projections.follower import GATHER_SECONDS, Follower, waker_for

log = get_logger("casetrail.evidence")

_MAX_BACKOFF_SECONDS: Final = 30.0
_SIGN_ATTEMPTS: Final = 3


class EvidenceConfigError(SettingsProblem):
    """A setting of this module is not usable; the message names the variable."""


@dataclass(frozen=True)
class EvidenceSettings:
    every_events: int = 100
    every_seconds: float = 60.0
    poll_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EvidenceSettings:
        return cls(
            every_events=settings.checkpoint_every_events,
            every_seconds=settings.checkpoint_every_seconds,
            poll_seconds=settings.evidence_poll_seconds,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EvidenceSettings:
        """Through `Settings.from_env` (the one reader of the environment)."""
        try:
            return cls.from_settings(Settings.from_env(environ))
        except SettingsProblem as exc:
            raise EvidenceConfigError(str(exc)) from None


class TreeInconsistent(Exception):
    """The stored tree does not extend the last signed checkpoint: history was rewritten."""


class KeyNotInForce(Exception):
    """The store announces a signing key this process does not hold (yet): it signs nothing."""


def signed_at(checkpoint: Checkpoint) -> float:
    try:
        return datetime.fromisoformat(checkpoint.time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class Checkpointer:
    """Signs checkpoints of the stored tree and stores them."""

    def __init__(
        self,
        merkle: MerkleLog,
        store: CheckpointStore,
        key: Ed25519PrivateKey,
        settings: EvidenceSettings,
        reload_key: Callable[[], Ed25519PrivateKey] | None = None,
    ) -> None:
        self.merkle = merkle
        self.store = store
        self.announcements = AnnouncementStore(merkle.recorder)
        self.settings = settings
        self._key = key
        self.public_key: Ed25519PublicKey = key.public_key()
        self._reload_key = reload_key
        # The chain of keys, read again when a checkpoint number it has not seen appears (an
        # announcement commits with its checkpoint: `AnnouncementStore.add`).
        self._chain: KeyChain | None = None
        self._chain_seq: int | None = -1
        # Wall-clock seconds: checkpoint times are wall-clock times (replaceable in tests).
        self.clock: Callable[[], float] = time.time
        # The newest checkpoint this process signed or checked: kept in memory, so deleting
        # rows from the table does not make it forget what it has vouched for.
        self._last: Checkpoint | None = None
        # Signatures already checked (the policy looks at the latest checkpoint every poll).
        self._verified: set[Checkpoint] = set()
        self._lock = threading.Lock()

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint signed by this service's key (stored or remembered)."""
        stored = self.store.latest()
        if stored is not None and not self._signed_by_us(stored, stored.seq):
            log.error("checkpoint_signature_invalid", seq=stored.seq)
            valid = [c for c in self.store.all() if self._signed_by_us(c)]
            stored = valid[-1] if valid else None
        if self._last is not None and (stored is None or stored.seq < self._last.seq):
            if stored is None or stored.size < self._last.size:
                log.error("checkpoints_missing_from_store", remembered_seq=self._last.seq)
            return self._last
        return stored

    @property
    def key(self) -> Ed25519PrivateKey:
        """The key this process signs with now (it changes when the store announces another)."""
        return self._key

    def chain(self, newest_seq: int | None = None) -> KeyChain:
        """This key's chain, from the store's announcements (read again when the newest
        checkpoint number changed since the last look)."""
        if self._chain is None or newest_seq != self._chain_seq:
            self._chain = KeyChain.build(self.public_key, self.announcements.all())
            self._chain_seq = newest_seq
        return self._chain

    def _signed_by_us(self, checkpoint: Checkpoint, newest_seq: int | None = None) -> bool:
        # The whole checkpoint is the key: any field changed in the table is checked afresh.
        if checkpoint in self._verified:
            return True
        chain = self.chain(newest_seq if newest_seq is not None else checkpoint.seq)
        if chain.problem(checkpoint) is not None:
            return False
        self._verified.add(checkpoint)
        return True

    def _ensure_key_in_force(self, newest_seq: int | None) -> None:
        """Sign only with the key the store's announcements put in force."""
        chain = self.chain(newest_seq)
        current = chain.current()
        if key_id(current) == key_id(self.public_key):
            return
        try:
            reloaded = self._reload_key() if self._reload_key is not None else None
        except Exception:  # a key file mid-replacement: not in force yet, looked at again later
            reloaded = None
        if reloaded is None or key_id(reloaded.public_key()) != key_id(current):
            log.warning("signing_key_not_in_force", announced=key_id(current))
            raise KeyNotInForce(
                f"the store announces signing key {key_id(current)}, which this process does "
                "not hold: finish the rotation (`casetrail keys rotate --service`)"
            )
        self._key, self.public_key = reloaded, reloaded.public_key()
        self._chain = None
        log.info("signing_key_changed", key_id=key_id(current))

    def due(self) -> bool:
        size = self.merkle.size()
        latest = self.latest()
        if latest is None:
            return size > 0
        grown = size - latest.size
        if grown >= self.settings.every_events:
            return True
        return grown > 0 and self.clock() - signed_at(latest) >= self.settings.every_seconds

    def maybe_checkpoint(self) -> Checkpoint | None:
        return self.checkpoint() if self.due() else None

    def checkpoint(self) -> Checkpoint:
        """Sign the stored tree as it is now (or return the latest checkpoint if the tree has
        not grown since). Raises TreeInconsistent rather than sign a rewritten history."""
        for _attempt in range(_SIGN_ATTEMPTS):
            with self._lock:
                checkpoint = self._sign_current()
            if checkpoint is not None:
                return checkpoint
        raise IntegrityError("another writer kept taking the next checkpoint number")

    def _sign_current(self) -> Checkpoint | None:
        """The checkpoint of the tree as it is (the latest, if it has not grown); None if
        another process took the next number first."""
        size = self.merkle.size()
        previous = self.latest()
        if previous is not None and previous.size == size:
            self._last = previous
            return previous
        self._ensure_key_in_force(previous.seq if previous else None)
        root = self.merkle.root(size)
        if previous is not None:
            self._check_extends(previous, size, root)
        checkpoint = Checkpoint.sign(
            self._key, seq=(previous.seq + 1 if previous else 1), size=size, root=root
        )
        try:
            self.store.add(checkpoint)
        except IntegrityError:
            # Another process signed this number first: look again.
            return None
        self._last = checkpoint
        log.info("checkpoint_signed", seq=checkpoint.seq, size=checkpoint.size)
        return checkpoint

    def announce(self, successor: Ed25519PrivateKey) -> Announcement:
        """Sign a checkpoint of the tree as it is with the key in force and, in the same
        transaction, the announcement of `successor` (signed by both keys). From then on only
        `successor` may sign (`_ensure_key_in_force`)."""
        for _attempt in range(_SIGN_ATTEMPTS):
            with self._lock:
                size = self.merkle.size()
                previous = self.latest()
                self._ensure_key_in_force(previous.seq if previous else None)
                root = self.merkle.root(size)
                if previous is not None:
                    self._check_extends(previous, size, root)
                checkpoint = Checkpoint.sign(
                    self._key, seq=(previous.seq + 1 if previous else 1), size=size, root=root
                )
                announcement = Announcement.sign(checkpoint, self._key, successor)
                try:
                    self.announcements.add(announcement)
                except IntegrityError:
                    continue  # another process signed this number first: look again
                self._last = checkpoint
                self._chain = None
                log.info(
                    "signing_key_announced",
                    seq=checkpoint.seq,
                    old=announcement.old_key_id,
                    new=announcement.new_key_id,
                )
                return announcement
        raise IntegrityError("another writer kept taking the next checkpoint number")

    def _check_extends(self, previous: Checkpoint, size: int, root: bytes) -> None:
        if size < previous.size:
            problem = f"the stored tree has {size} leaves, fewer than {previous.describe()}"
        else:
            proof = self.merkle.consistency_proof(previous.size, size)
            if verify_consistency(previous.size, size, previous.root, root, proof):
                return
            problem = f"the stored tree of {size} leaves does not extend {previous.describe()}"
        log.error("merkle_tree_inconsistent", seq=previous.seq, size=size)
        raise TreeInconsistent(f"{problem}: history was rewritten; run `casetrail verify`")


class Evidence:
    """The service's evidence machinery for one application."""

    def __init__(
        self,
        application: CaseTrail,
        key: Ed25519PrivateKey,
        settings: EvidenceSettings,
        reload_key: Callable[[], Ed25519PrivateKey] | None = None,
    ) -> None:
        self.application = application
        self.settings = settings
        self.merkle = MerkleLog(application.recorder)
        self.checkpoints = CheckpointStore(application.recorder)
        self.checkpointer = Checkpointer(
            self.merkle, self.checkpoints, key, settings, reload_key=reload_key
        )
        self._follower: Follower | None = None
        self._follower_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.checkpointer.public_key

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return self.checkpointer.key

    def follower(self) -> Follower:
        with self._follower_lock:
            if self._follower is None:
                # On SQLite each batch takes the writer lock (gateway.store.persistence).
                self._follower = merkle_follower(
                    self.application,
                    horizon=settled_horizon(self.application),
                    log=log,
                    sqlite_class=LockedSQLiteViewRecorder,
                )
            return self._follower

    def catch_up(self) -> int:
        """Bring the tree up to every event stored so far; returns how many it added."""
        return self.follower().catch_up()

    def checkpoint_now(self) -> Checkpoint:
        """A checkpoint covering every event stored up to now (signed now if need be)."""
        self.catch_up()
        return self.checkpointer.checkpoint()

    # --- the background maintainer ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="casetrail-evidence", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        """Stop the maintainer and release the follower's own connections."""
        self.stop()
        with self._follower_lock:
            if self._follower is not None:
                close_recorder(self._follower.recorder)
                self._follower = None

    def _run(self) -> None:
        waker: Any = None
        backoff = self.settings.poll_seconds
        while not self._stop.is_set():
            try:
                if waker is None:
                    waker = waker_for(self.application, log)
                moved = self.catch_up()
                self.checkpointer.maybe_checkpoint()
            except Exception as exc:  # the maintainer outlives any one failure
                log.warning("evidence_maintenance_failed", error_type=type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            backoff = self.settings.poll_seconds
            # At most one look per GATHER_SECONDS: a steady stream in batches (follower.py).
            self._stop.wait(GATHER_SECONDS)
            if not moved:
                waker.wait(self.settings.poll_seconds, self._stop)
        if waker is not None:
            waker.close()
