"""Running the compliance rules: findings stored once, none lost (issue 15).

`ComplianceEvaluator.step(now)`:

1. follows the log into the rules' view (`projections.compliance.evaluator.RulesView`, its
   tables and tracking row in the events' own database, like the deadline scheduler's): the
   state and the findings each batch completes are written with the view's position, in one
   transaction;
2. stores as `Finding` events the findings produced and not stored yet, and those the passing
   of time completed by `now` (`RuleEngine.due`: an unreviewed break-glass access, a closed
   export or curiosity window), through `CaseTrail.record_findings`: a finding's id derives
   from its rule and evidence, so one stored before (by this step before a crash, by another
   process, by a re-run) is refused by the store and skipped;
3. follows the log again, so the view marks the findings just stored.

`now` defaults to the clock less `SETTLE` (60 s), so that accesses committed a little after
they were stamped still land in the window they belong to before it is settled.

`rerun(rules, by)` (`casetrail compliance rerun [--rule ID]`, after a threshold changed): empties
the view and follows the whole log again with the current configuration, stores what it
produces (copies of findings stored before are refused and skipped), and marks every open
finding of the re-run rules (all rules when none is named) that the new configuration no longer
produces as superseded (`FindingSuperseded`: kept, not removed; a reviewed finding is left as it
is). Its incremental evaluation then goes on from the end of the log with the same
configuration, so a re-run and the evaluator agree (tests/domain/test_compliance_rules.py).

The rules file is read again at every step: the state is folded with one configuration (and
one version of the fold, `STATE_VERSION`) only. When the file's digest (or the fold's version)
differs from the one stored with the state, the step evaluates nothing
and logs one line (`compliance_evaluation_stopped`) saying to run `casetrail compliance rerun`;
once a re-run (in any process) rebuilt the state with the file's configuration, the evaluator
takes that configuration up (a relay started before the change included). Proven by
tests/integration/test_findings.py (`test_a_changed_rules_file_...`,
`test_state_folded_by_an_older_version_...`).

Who runs it: the relay, every `reminder_interval` with the deadline scan
(`gateway.messaging.relay.Relay`), so new findings are announced to the compliance office as
its loop publishes every event; `casetrail compliance evaluate` runs one step. Both may run at
once: the view's position and the store decide. Proven by tests/integration/test_findings.py
(a process SIGKILLed between storing findings and recording the position stores each once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID

from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory

from domain.application import CaseTrail
from domain.compliance.config import RulesConfig, RulesConfigError
from domain.compliance.findings import Finding, FindingFilter, FindingStatus
from domain.compliance.rules import Raised, RuleEngine
from gateway.compliance.config import load_rules
from gateway.logs import get_logger
from gateway.store.horizon import settled_horizon
from projections.compliance.evaluator import RulesView, state_mark
from projections.follower import Follower, horizon_of, view_recorder

log = get_logger("casetrail.compliance")

SETTLE: Final = timedelta(seconds=60)


@dataclass(frozen=True)
class RerunResult:
    produced: int
    stored: int
    superseded: int
    config_digest: str


def rules_config_of(application: CaseTrail) -> RulesConfig:
    """The configuration the settings name (`COMPLIANCE_RULES` in the application's
    environment, from `CASETRAIL_COMPLIANCE_RULES`), else the repository's defaults."""
    return load_rules(application.env.get("COMPLIANCE_RULES") or None)


class ComplianceEvaluator:
    def __init__(
        self,
        application: CaseTrail,
        config: RulesConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        batch_size: int = 500,
    ) -> None:
        factory = application.factory
        if not isinstance(factory, SQLiteFactory | PostgresFactory):
            raise TypeError("the compliance evaluator needs the SQLite or PostgreSQL event store")
        self.application = application
        # Given a configuration, the evaluator keeps it; else it follows the rules file.
        self.from_file = config is None
        self.config = config or rules_config_of(application)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.view = RulesView(self.config)
        self._stopped: str | None = None  # why the last step evaluated nothing (logged once)
        self.follower = Follower(
            application,
            view_recorder(factory.datastore, self.view),
            batch_size=batch_size,
            horizon=settled_horizon(application) or horizon_of(application),
            log=log,
        )

    def _engine(self) -> RuleEngine:
        """The rules' state at the view's position (the one in memory when it is current)."""
        with self.follower.recorder.reading() as db:
            position = self.follower.position()
            if self.view.engine is not None and self.view.engine_at == position:
                return self.view.engine
            return self.view.load(db)

    def _stop(self, reason: str) -> None:
        if reason != self._stopped:
            log.warning("compliance_evaluation_stopped", reason=reason)
        self._stopped = reason

    def in_force(self) -> bool:
        """Whether the state may be folded further: the rules file's configuration is the one
        the stored state was folded with (taken up when a re-run rebuilt the state with it)."""
        try:
            current = rules_config_of(self.application) if self.from_file else self.config
        except RulesConfigError as exc:
            self._stop(f"{exc}; no compliance rule is evaluated until the file is corrected")
            return False
        digest = current.digest()
        with self.follower.recorder.reading() as db:
            stored = self.view.stored_mark(db)
        if stored is None and self.follower.position():
            self._stop(
                "the compliance rules' state was built by an older version of the rules; no "
                "finding is evaluated until `casetrail compliance rerun` evaluates the whole "
                "history again"
            )
            return False
        if stored is not None and stored != state_mark(current):
            self._stop(
                f"the compliance rules file (configuration {digest[:12]}) or the rules' "
                f"version changed since the rules' state was built ({stored[:15]}); no "
                "finding is evaluated until `casetrail compliance rerun` evaluates the whole "
                "history with the new file"
            )
            return False
        if digest != self.config.digest():
            self.config = current  # a re-run rebuilt the state with the file's configuration
            self.view.use(current)
            log.info("compliance_rules_reloaded", config=digest[:12])
        if self._stopped is not None:
            log.info("compliance_evaluation_resumed", config=digest[:12])
            self._stopped = None
        return True

    def step(self, now: datetime | None = None) -> list[Finding]:
        """Follow the log, store the findings owed and those due by `now`; returns the
        findings this step stored (none when the rules file changed since the state was built:
        see `in_force`)."""
        if now is None:
            now = self.clock() - SETTLE
        if now.tzinfo is None:
            raise ValueError("the evaluator's instant needs a time zone")
        if not self.in_force():
            return []
        self.follower.catch_up()
        with self.follower.recorder.reading() as db:
            owed = self.view.owed(db)
        due = self._engine().due(now)
        stored = self._store([*owed, *due])
        self.follower.catch_up()
        if stored:
            counts: dict[str, int] = {}
            for finding in stored:
                counts[finding.rule] = counts.get(finding.rule, 0) + 1
            log.info("findings_raised", count=len(stored), **counts)
        return stored

    def _store(self, raised: Iterable[Raised]) -> list[Finding]:
        unique = {r.id: r for r in raised}
        return self.application.record_findings([r.finding() for r in unique.values()])

    def rerun(
        self, rules: Iterable[str] | None, by: dict[str, str], now: datetime | None = None
    ) -> RerunResult:
        if now is None:
            now = self.clock() - SETTLE
        if self.from_file:  # the re-run folds with the file as it is now
            self.config = rules_config_of(self.application)
            self.view.use(self.config)
        chosen = set(rules) if rules is not None else set(self.config.enabled)
        self.follower.rebuild()
        with self.follower.recorder.reading() as db:
            owed = self.view.owed(db)
            produced = self.view.produced(db)
        due = self._engine().due(now)
        produced |= {str(r.id) for r in due}
        stored = self._store([*owed, *due])
        stale: list[UUID] = [
            f.id
            for f in self.application.findings(FindingFilter(status=FindingStatus.OPEN))
            if f.rule in chosen and str(f.id) not in produced
        ]
        digest = self.config.digest()
        superseded = self.application.supersede_findings(stale, digest, by)
        self.follower.catch_up()
        log.info(
            "compliance_rerun",
            produced=len(produced),
            stored=len(stored),
            superseded=superseded,
            config=digest[:12],
        )
        return RerunResult(len(produced), len(stored), superseded, digest)
