"""The compliance rules' evaluator as a follower of the store (issue 15).

`RulesView` folds every event the rules read (`domain.compliance.rules.RULE_TOPICS`) into the
rules' state (`compliance_rules_state`: one JSON row per key the engine keeps, only the keys a
batch changed are written) and records each finding a batch completes in
`compliance_rules_findings` (`produced = 1`, with its body), all in the view's one transaction
with its position (`projections.follower`). So a crash anywhere leaves the position, the state
and the findings owed consistent: none is lost.

Storing the findings as events is the caller's part (`gateway.compliance.evaluator`): it reads
the rows produced and not yet stored, stores them (`CaseTrail.record_findings`: a finding's id
derives from its rule and evidence, so one stored before is refused by the store and skipped),
and follows the log again: the view folds each `FindingRaised` it reads into `stored = 1`. A
crash between storing and that second look stores nothing twice (the store refuses the copy).

The state is kept in memory between batches while this process is the one moving the position
(the batch starts where the last one it applied ended); otherwise it is read again from the
table (another process moved it, or a transaction failed). `rows_at(db)` gives the engine for
a caller that needs the state at the view's position (`due`).

The fold's version and the digest of the configuration the state was folded with are stored
with it (row `config_digest`, `state_mark`, written with every batch): the evaluator compares
them with the rules file before each step and never folds with other thresholds or an older
fold (`gateway.compliance.evaluator`; tests/integration/test_findings.py).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

from domain.compliance.config import RulesConfig
from domain.compliance.findings import Finding
from domain.compliance.rules import RULE_TOPICS, Raised, RuleEngine
from domain.retention import DataKeyDestroyed, KeyScope
from domain.tombstones import ERASURE_TOPICS
from domain.topics import topics_of
from projections.follower import Batch, Db, Dialect, View

STATE: Final = "compliance_rules_state"
FINDINGS: Final = "compliance_rules_findings"
RAISED_TOPICS: Final = topics_of(Finding.FindingRaised)  # type: ignore[attr-defined]
_CHUNK: Final = 500
# The state's row holding the digest of the configuration it was folded with (not an engine key).
DIGEST_KEY: Final = "config_digest"
# The fold's version, stored with the digest: bumped when the same events fold into other state
# (2: transfers move a file's street and end the sending street's assignments; bulk browsing
# skips sanctioned list reads), so that state folded by an older version is rebuilt (`casetrail
# compliance rerun`) before it is folded further.
STATE_VERSION: Final = 2


def state_mark(config: RulesConfig) -> str:
    """What the state stores of how it was folded: the fold's version and the configuration."""
    return f"v{STATE_VERSION}:{config.digest()}"


class RulesView(View):
    name: ClassVar[str] = "compliance_rules"
    tables: ClassVar[tuple[str, ...]] = (STATE, FINDINGS)
    # Issue 19: an erased file's state is forgotten (`RuleEngine.forget_case`).
    topics: ClassVar[tuple[str, ...]] = (*RULE_TOPICS, *RAISED_TOPICS, *ERASURE_TOPICS)

    def __init__(self, config: RulesConfig) -> None:
        self.config = config
        self.engine: RuleEngine | None = None
        # The position the in-memory engine is at (None: read it from the table).
        self.engine_at: int | None = None

    def create_statements(self, dialect: Dialect) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS {compliance_rules_state} "
            "(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {compliance_rules_findings} (id TEXT PRIMARY KEY, "
            "rule TEXT NOT NULL, produced INTEGER NOT NULL, stored INTEGER NOT NULL, "
            "body TEXT)",
            "CREATE INDEX IF NOT EXISTS compliance_rules_owed "
            "ON {compliance_rules_findings} (produced, stored)",
        ]

    def use(self, config: RulesConfig) -> None:
        """Fold with `config` from now on (the state in memory is dropped: it is read again)."""
        self.config = config
        self.engine = None
        self.engine_at = None

    def load(self, db: Db) -> RuleEngine:
        rows = db.execute(
            "SELECT key, value FROM {compliance_rules_state} WHERE key <> ?", [DIGEST_KEY]
        )
        return RuleEngine.from_rows(self.config, ((r["key"], r["value"]) for r in rows))

    @staticmethod
    def stored_mark(db: Db) -> str | None:
        """How the stored state was folded (`state_mark`; None: no state folded since the view
        was emptied, or state folded before marks were stored)."""
        rows = db.execute("SELECT value FROM {compliance_rules_state} WHERE key = ?", [DIGEST_KEY])
        return str(json.loads(rows[0]["value"])) if rows else None

    def apply(self, db: Db, batch: Batch) -> None:
        engine = self.engine if self.engine_at == batch.start else None
        self.engine_at = None  # until this batch is applied in full
        if engine is None:
            engine = self.load(db)
        self.engine = engine
        raised: dict[str, Raised] = {}
        stored: dict[str, str] = {}
        for notification, event in zip(batch.notifications, batch.events, strict=True):
            if isinstance(event, Finding.FindingRaised):  # type: ignore[attr-defined]
                stored[str(event.originator_id)] = str(event.rule)
                continue
            if isinstance(event, DataKeyDestroyed):
                if event.scope == KeyScope.CASE:
                    engine.forget_case(event.stream_id)
                continue
            for found in engine.feed(notification.id, event):
                raised[str(found.id)] = found
        upserts, removed = engine.take_changes()
        upserts.append((DIGEST_KEY, json.dumps(state_mark(self.config))))
        db.insert(STATE, ("key", "value"), upserts, key=("key",))
        for start in range(0, len(removed), _CHUNK):
            chunk = removed[start : start + _CHUNK]
            marks = db.placeholders(len(chunk))
            db.execute(f"DELETE FROM {{{STATE}}} WHERE key IN ({marks})", chunk)
        if raised:
            db.executemany(
                f"INSERT INTO {{{FINDINGS}}} (id, rule, produced, stored, body) "
                "VALUES (?, ?, 1, 0, ?) ON CONFLICT (id) DO UPDATE "
                "SET produced = 1, body = excluded.body",
                [(i, r.rule, r.to_json()) for i, r in raised.items()],
            )
        if stored:
            db.executemany(
                f"INSERT INTO {{{FINDINGS}}} (id, rule, produced, stored, body) "
                "VALUES (?, ?, 0, 1, NULL) ON CONFLICT (id) DO UPDATE SET stored = 1",
                list(stored.items()),
            )
        self.engine_at = batch.end

    @staticmethod
    def owed(db: Db) -> list[Raised]:
        """The findings produced and not yet stored as events, in id order."""
        rows = db.execute(
            f"SELECT body FROM {{{FINDINGS}}} WHERE produced = 1 AND stored = 0 ORDER BY id"
        )
        return [Raised.from_json(str(r["body"])) for r in rows]

    @staticmethod
    def produced(db: Db) -> set[str]:
        """The ids of every finding the rules produced since the view was last emptied."""
        rows = db.execute(f"SELECT id FROM {{{FINDINGS}}} WHERE produced = 1")
        return {str(r["id"]) for r in rows}


def engine_rows(engine: RuleEngine) -> list[tuple[str, Any]]:
    """The engine's state as (key, JSON) rows (for tests comparing two builds)."""
    return list(engine.rows())
