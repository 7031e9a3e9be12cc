"""Crypto-shredding end to end (issue 19): a file erased is gone for good, and the proofs hold.

On SQLite and on PostgreSQL, `casetrail serve` runs in a process of its own
(tests/integration/live_service.py). Distinctive synthetic values (tests/integration/canaries.py)
are reported over HTTP, read back (the control: the service showed them), found by a lookup,
followed by the read models, and put under a signed checkpoint. The file is then erased
(`CaseTrail.erase`, as the retention run calls it) while the service runs, and the read models
catch up. Then:

(a) no key the service holds opens the file's stored rows: the test collects every key it can
    find (the event keys in the key file, every live data key unwrapped from the key table, the
    index key, the signing keys' raw bytes) and tries each on every format-2 row of the stream
    (the captured old data key, the control, opens them all); the old key, raw or wrapped, is in
    no byte of the store's files (on PostgreSQL: in no live row of its tables, nor raw in their
    files);
(b) the planted values appear nowhere: not in clear in any file under the service's home, the
    service's log or the PostgreSQL tables; not in anything the service can still decrypt (every
    event it can read, decoded: the control finds them before the erasure); not as blind-index
    tokens in the read models (SQLite: in no byte of their file; PostgreSQL: in no live row);
    the lookup, the ledger and the case read no longer answer it;
(c) `casetrail verify` passes;
(d) an inclusion proof of the file's first event, made after the erasure, checks (`casetrail
    proof inclusion` / `proof check`);
(e) the investigation timeline shows that the file existed (its reads) and was erased, with the
    rule and the instant; an evidence bundle of the file verifies offline, its records all there,
    each content item marked erased.

Known limit, stated in docs/retention-tombstones.md: on PostgreSQL a deleted row (a read
model's, a key wrap's) stays in the table's file until vacuum reuses its space; its values were
sealed or wrapped, and the wrap needs the event key (rotate and retire it to void old copies).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.case import Case
from domain.clock import local_today
from domain.retention import KeyScope, RetentionRules
from domain.taxonomy import Role
from domain.tombstones import decoded
from gateway import keyring
from gateway.auth import issue_token
from gateway.bootstrap import open_application, open_evidence, open_read_models
from gateway.cli.main import DEFAULT_STREET, main
from gateway.evidence.documents import build_bundle
from gateway.evidence.verification import verify_bundle
from gateway.settings import Settings
from gateway.store.datakeys import unwrap
from gateway.store.eventstore import (
    FORMAT_V2,
    HEADER_V2_SIZE,
    associated_data,
    decode_key,
    key_id,
)
from projections.blind_index import BlindIndex
from projections.investigation import gather
from projections.investigation.timeline import timeline
from tests.conftest import PG_DSN, pg_url, require_postgres
from tests.domain.builders import register_units
from tests.integration.canaries import Canaries, found_in, plant
from tests.integration.live_service import LiveService
from tests.people import ensure_registered

OFFICE = "chengguan-governance-office"
VILLAGE = "dongshan-village"
BY = {"user": "retention-run", "role": "system"}
# What the report body carries (the other canaries are planted by later commands elsewhere).
IDENTITY = ("minor.name", "minor.id_number", "guardian.name", "guardian.phone", "minor.school")
PLANTED = (*IDENTITY, "description")


class Store:
    """The service's store, read from outside as an attacker with the host's files would."""

    def __init__(self, home: Path, env: dict[str, str], schema: str | None) -> None:
        self.home, self.env, self.schema = home, env, schema

    def settings(self) -> Settings:
        return Settings.from_env({**self.env, "CASETRAIL_HOME": str(self.home)})

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of the events' own database (the key table lives there too)."""
        if self.schema is None:
            with sqlite3.connect(self.home / "casetrail.sqlite") as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {self.schema}")
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    def files(self) -> dict[str, bytes]:
        """Every file under the home (store, WAL, read models, keys...); on PostgreSQL also each
        table's live rows as text and its data file after a checkpoint."""
        found = {
            str(p.relative_to(self.home)): p.read_bytes()
            for p in sorted(self.home.rglob("*"))
            if p.is_file()
        }
        if self.schema is not None:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
                (data_dir,) = conn.execute("SHOW data_directory").fetchone() or ("",)
                tables = [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)
                    ).fetchall()
                ]
                for table in tables:
                    name = f'{self.schema}."{table}"'
                    rows = conn.execute(f"SELECT t::text FROM {name} t").fetchall()
                    found[f"rows {table}"] = "\n".join(str(r[0]) for r in rows).encode()
                    (path,) = conn.execute(
                        "SELECT pg_relation_filepath(%s)", (name,)
                    ).fetchone() or ("",)
                    found[f"file {table}"] = (Path(str(data_dir)) / str(path)).read_bytes()
        return found

    def readmodel_bytes(self) -> bytes:
        """Where a deleted read-model row could linger: on SQLite the file and its WAL, on
        PostgreSQL the tables' live rows (a dead row stays in the file until vacuum)."""
        if self.schema is None:
            db = self.home / "readmodels.sqlite"
            return b"".join(
                p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists()
            )
        return b"\n".join(v for k, v in self.files().items() if k.startswith("rows "))


def _prepare(store: Store) -> dict[str, str]:
    """Keys, units and two people, in this process (as `keys init` and an administrator
    would); their tokens."""
    keyring.init_keys(store.home / "keys")
    application = open_application(store.settings())
    try:
        register_units(application, VILLAGE, OFFICE)
        ensure_registered(application, "u-reporter", Role.REPORTER, VILLAGE, DEFAULT_STREET)
        ensure_registered(application, "u-coordinator", Role.COORDINATOR, OFFICE, DEFAULT_STREET)
    finally:
        application.close()
    key = keyring.load_private_key(store.home / "keys" / keyring.TOKEN_KEY, "token key")
    return {
        "reporter": issue_token(
            key, user="u-reporter", role=Role.REPORTER, unit=VILLAGE, street=DEFAULT_STREET
        ),
        "coordinator": issue_token(
            key, user="u-coordinator", role=Role.COORDINATOR, unit=OFFICE, street=DEFAULT_STREET
        ),
    }


def casetrail(store: Store, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """`casetrail ARGS` on the service's store, run in this process (the same entry point as
    the command line, without a second interpreter's start); fails the test unless it exits 0."""
    with monkeypatch.context() as patched:
        patched.setenv("CASETRAIL_HOME", str(store.home))
        for name in ("CASETRAIL_DATABASE_URL", "CASETRAIL_EVENT_KEY", "CASETRAIL_READMODEL_URL"):
            patched.delenv(name, raising=False)
        for name, value in store.env.items():
            patched.setenv(name, value)
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
    assert code in (0, None), f"casetrail {' '.join(args)} exited {code}"


def caught_up(store: Store, timeout: float = 60) -> None:
    """Wait until every read model has applied every stored event (what `casetrail
    projections status` reports, read in this process)."""
    application = open_application(store.settings())
    readmodels = open_read_models(store.settings(), application)
    try:
        deadline = time.monotonic() + timeout
        while any(s.lag for s in readmodels.status()):
            assert time.monotonic() < deadline, "the read models did not catch up"
            time.sleep(0.1)
    finally:
        readmodels.close()
        application.close()


def _headers(token: str, purpose: str | None = "consultation") -> dict[str, str]:
    found = {"Authorization": f"Bearer {token}"}
    if purpose:
        found["X-Purpose-Of-Use"] = purpose
    return found


def _decrypted_text(store: Store) -> bytes:
    """Everything the service can still decrypt: each readable event of the store, decoded."""
    application = open_application(store.settings())
    try:
        decode = application.mapper.to_domain_event
        parts = [
            json.dumps(vars(event), default=str, ensure_ascii=False).encode()
            for n in application.notifications()
            if (event := decoded(decode, n)) is not None
        ]
    finally:
        application.close()
    return b"\n".join(parts)


def _event_keks(store: Store) -> list[bytes]:
    """The keys that may wrap data keys: the key-encryption keys (`data-keys.kek`), and the
    event keys (which wrapped them in a home made before that file)."""
    keys_dir = store.home / "keys"
    texts = keyring.load_keks(keys_dir) + keyring.load_event_keys(keys_dir, None).texts
    return [decode_key(t) for t in texts]


def _every_key(store: Store) -> dict[str, bytes]:
    """Every AES-sized key the service holds: event keys, the index key, the signing keys' raw
    bytes, and every data key still wrapped in the key table, unwrapped."""
    keys_dir = store.home / "keys"
    found = {f"event key or KEK {i}": k for i, k in enumerate(_event_keks(store))}
    found["index key"] = keyring.load_index_key(keys_dir)
    for name in (keyring.TOKEN_KEY, keyring.SERVICE_KEY):
        private = keyring.load_private_key(keys_dir / name, name)
        found[name] = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    keks = {key_id(k).hex(): k for k in _event_keks(store)}
    live = store.rows(
        "SELECT k.stream_id, k.key_id, w.kek_id, w.wrapped FROM data_keys k "
        "JOIN data_key_wraps w ON w.key_id = k.key_id"
    )
    assert live, "the key table holds no live data key: the search would prove nothing"
    for stream_id, key_hex, kek_id, wrapped in live:
        kek = keks[str(kek_id)]
        found[f"data key {key_hex}"] = unwrap(
            kek, bytes.fromhex(key_hex), stream_id, bytes(wrapped)
        )
    return found


def _old_key(store: Store, case_id: UUID) -> tuple[bytes, bytes]:
    """The file's data key and its wrap, captured before the erasure (as a thief would)."""
    ((key_hex,),) = store.rows("SELECT key_id FROM data_keys WHERE stream_id = %s", (str(case_id),))
    keks = {key_id(k).hex(): k for k in _event_keks(store)}
    ((kek_id, wrapped),) = store.rows(
        "SELECT kek_id, wrapped FROM data_key_wraps WHERE key_id = %s", (key_hex,)
    )
    return unwrap(keks[str(kek_id)], bytes.fromhex(key_hex), case_id, bytes(wrapped)), bytes(
        wrapped
    )


def _opens(key: bytes, stored: Any) -> bool:
    state = bytes(stored.state)
    header = state[:HEADER_V2_SIZE]
    aad = associated_data(stored.originator_id, stored.originator_version, stored.topic)
    try:
        AESGCM(key).decrypt(header[-12:], state[HEADER_V2_SIZE:], aad + header)
    except InvalidTag:
        return False
    return True


def _stored_rows(store: Store, case_id: UUID) -> list[Any]:
    application = open_application(store.settings())
    try:
        rows = list(application.recorder.select_events(case_id))
        if application.snapshots is not None:
            rows += list(application.snapshots.recorder.select_events(case_id))
    finally:
        application.close()
    return rows


def _first_position(store: Store, case_id: UUID) -> int:
    application = open_application(store.settings())
    try:
        topic = f"{Case.__module__}:{Case.__qualname__}.ClueReported"
        return next(
            n.id
            for n in application.notifications(topics=(topic,))
            if str(n.originator_id) == str(case_id)
        )
    finally:
        application.close()


def _shred(store: Store, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canaries: Canaries
    canaries, body = plant()
    forms = canaries.forms(PLANTED)
    _, other_body = plant()
    tokens_of = _prepare(store)
    reporter, coordinator = tokens_of["reporter"], tokens_of["coordinator"]
    service = LiveService(store.home, tmp / "service.log", env=store.env).start()
    try:
        created = httpx.post(
            f"{service.base}/v1/cases", json=body, headers=_headers(reporter, None), timeout=30
        )
        assert created.status_code == 201, created.text
        case_id = UUID(created.json()["id"])
        kept = httpx.post(
            f"{service.base}/v1/cases", json=other_body, headers=_headers(reporter, None)
        )
        assert kept.status_code == 201, kept.text
        kept_id = kept.json()["id"]
        shown = httpx.get(f"{service.base}/v1/cases/{case_id}", headers=_headers(coordinator))
        assert shown.status_code == 200, shown.text
        assert canaries["minor.name"] in shown.text  # the control: the service showed it
        caught_up(store)
        lookup = {"id_number": canaries["minor.id_number"]}
        search = f"{service.base}/v1/cases/search"
        found = httpx.post(search, json=lookup, headers=_headers(coordinator))
        assert found.status_code == 200, found.text
        assert str(case_id) in found.text  # the control: the blind index finds it
        casetrail(store, monkeypatch, "checkpoint", "create")

        # Controls before the erasure: what the searches below must then fail to find.
        before = _decrypted_text(store)
        assert found_in(before, canaries.forms(IDENTITY)), "the decrypt sweep finds nothing"
        blind = BlindIndex(keyring.load_index_key(store.home / "keys"))
        tokens = {
            "id_index": blind.id_number(canaries["minor.id_number"]).encode(),
            "name_index": blind.name(canaries["minor.name"]).encode(),
        }
        assert all(t in store.readmodel_bytes() for t in tokens.values())
        old_key, old_wrap = _old_key(store, case_id)
        rows = _stored_rows(store, case_id)
        assert rows
        assert all(bytes(r.state)[:1] == FORMAT_V2 for r in rows)
        assert all(_opens(old_key, r) for r in rows), "the control key does not open the rows"

        application = open_application(store.settings())
        try:
            fact = application.erase(
                case_id,
                scope=KeyScope.CASE,
                rule="retention",
                basis=RetentionRules().basis(),
                due_on=local_today(),
                by=BY,
            )
        finally:
            application.close()
        caught_up(store)

        # The blind-index tokens are gone from the read models' bytes while the service still
        # runs (on SQLite, once it stops, closing the last connection empties the WAL anyway).
        lingering = store.readmodel_bytes()
        assert [n for n, t in tokens.items() if t in lingering] == []

        # What the service answers now.
        # The service forgets a key it had cached within its cache time (5 s by default).
        deadline = time.monotonic() + 20
        while True:
            gone = httpx.get(f"{service.base}/v1/cases/{case_id}", headers=_headers(coordinator))
            if gone.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert gone.status_code == 410, gone.text
        found = httpx.post(search, json=lookup, headers=_headers(coordinator))
        assert found.status_code == 200, found.text
        assert str(case_id) not in found.text
        ledger = httpx.get(f"{service.base}/v1/ledger", headers=_headers(coordinator))
        assert ledger.status_code == 200, ledger.text
        assert str(case_id) not in ledger.text
        assert kept_id in ledger.text
        still = httpx.get(f"{service.base}/v1/cases/{kept_id}", headers=_headers(coordinator))
        assert still.status_code == 200, still.text

        # (c) the log verifies; (d) a proof of the file's first event, made now, checks.
        casetrail(store, monkeypatch, "checkpoint", "create")
        casetrail(store, monkeypatch, "verify")
        proof = tmp / "proof.json"
        position = str(_first_position(store, case_id))
        casetrail(
            store, monkeypatch, "proof", "inclusion", "--position", position, "--out", str(proof)
        )
        document = json.loads(proof.read_text(encoding="utf-8"))
        assert document["position"] == int(position), document
        casetrail(store, monkeypatch, "proof", "check", str(proof))
    finally:
        status = service.stop()
    assert status in (0, -15), f"the service did not stop cleanly: {status}"

    # (a) no key the service holds opens the rows; the old key is nowhere.
    keys = _every_key(store)
    assert f"data key {fact.key_id}" not in keys
    rows = _stored_rows(store, case_id)
    opened = [name for name, key in keys.items() for r in rows if _opens(key, r)]
    assert opened == [], f"rows of the erased file open with: {sorted(set(opened))}"
    assert store.rows("SELECT * FROM data_key_wraps WHERE key_id = %s", (fact.key_id,)) == []
    files = store.files()
    key_forms = {
        "raw": old_key,
        "hex": old_key.hex().encode(),
        "base64": base64.b64encode(old_key),
    }
    if store.schema is None:  # a dead PostgreSQL row keeps its wrap until vacuum (see above)
        key_forms["wrapped"] = old_wrap
    leaks = [f"{w} ({f})" for w, data in files.items() for f, n in key_forms.items() if n in data]
    assert leaks == [], f"the destroyed key is still stored: {leaks}"

    # (b) the planted values appear nowhere.
    places = {**files, "service log": (tmp / "service.log").read_bytes()}
    places["decrypted"] = _decrypted_text(store)
    leaks = [
        f"{w}: {', '.join(hits)}" for w, data in places.items() if (hits := found_in(data, forms))
    ]
    assert leaks == [], "planted values still found:\n" + "\n".join(leaks)

    # (e) the timeline: the file existed (its reads), was erased, under which rule and when.
    application = open_application(store.settings())
    try:
        history = gather(application, case_id)
        entries = timeline(history)["entries"]
        # An evidence bundle of the erased file: its records and proofs, no content.
        evidence = open_evidence(store.settings(), application)
        bundle = build_bundle(application, evidence, case_id, include_content=True, with_audit=True)
    finally:
        application.close()
    public = keyring.load_public_key(store.home / "keys" / keyring.SERVICE_PUB, "service key")
    report = verify_bundle(bundle, public)
    assert report.intact, report.problems
    own = [r["leaf_index"] for r in bundle["records"] if r["kind"] == "case"]
    assert len(own) == len(history.erased)
    erased_items = [c for c in bundle["content"] if c.get("erased")]
    assert sorted(c["leaf_index"] for c in erased_items) == sorted(own)
    assert all(c["event"] == {} for c in erased_items)
    kinds = [e["kind"] for e in entries]
    assert "case_accessed" in kinds
    (erasure,) = [e for e in entries if e["kind"] == "data_key_destroyed"]
    assert erasure["details"]["rule"] == "retention"
    assert erasure["at"] == fact.timestamp.isoformat()
    assert len(history.erased) == len([r for r in rows if r.topic.startswith(Case.__module__)])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    home = tmp_path / "home"
    if request.param == "sqlite":
        yield Store(home, {}, None)
        return
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield Store(home, {"CASETRAIL_DATABASE_URL": pg_url(schema)}, schema)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_a_shredded_file_is_gone_for_good_and_its_proofs_still_hold(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _shred(store, tmp_path, monkeypatch)
