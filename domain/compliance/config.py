"""The thresholds of the compliance rules: one documented configuration (issue 15).

The defaults are the dataclass defaults below and, word for word, the repository's file
`gateway/compliance/rules.toml` (a test keeps them equal); a deployment points
`CASETRAIL_COMPLIANCE_RULES` at its own TOML file, which may name only the values it changes.
`RulesConfig.from_mapping` refuses an unknown rule or key, a wrong type and an out-of-range
value, naming it (`RulesConfigError`), so a typo never silently keeps a default.
`digest()` identifies a configuration: the evaluator stores it with its state, and a re-run
marks the findings it no longer raises as superseded under it. The rules themselves and their
descriptions: `domain.compliance.rules`; the table for people: docs/compliance.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import time
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.taxonomy import Purpose, Role


class RulesConfigError(ValueError):
    """The rules' configuration names an unknown key or holds a value out of range."""


@dataclass(frozen=True)
class RepeatedRefusals:
    count: int = 5
    window_minutes: int = 60


@dataclass(frozen=True)
class BreakGlassUnreviewed:
    hours: int = 24


@dataclass(frozen=True)
class ReadAfterClosure:
    exempt_roles: tuple[str, ...] = ("investigator", "compliance_auditor")


@dataclass(frozen=True)
class BulkBrowsing:
    distinct_cases: int = 20
    window_minutes: int = 60
    # Channels whose reads are sanctioned list reads, not browsing: a compliance report
    # records one access-log read per file, a worklist one read per listed file, and exports
    # have their own rule (identity_export). A read disclosing only the access log
    # (fields == {"access_log"}) is exempt whatever its channel.
    exempt_channels: tuple[str, ...] = ("compliance", "export", "worklist")


@dataclass(frozen=True)
class AfterHours:
    timezone: str = "Asia/Shanghai"
    # ISO weekdays (1 = Monday) that are working days; hours [start, end) local time.
    days: tuple[int, ...] = (1, 2, 3, 4, 5)
    start: str = "08:00"
    end: str = "18:00"


@dataclass(frozen=True)
class IdentityExport:
    # The disclosures of one export (one request) are gathered until no more came for this long.
    settle_seconds: int = 60


@dataclass(frozen=True)
class PurposeNotBorneOut:
    purposes: tuple[str, ...] = ("intervention",)
    roles: tuple[str, ...] = ("unit_member",)


@dataclass(frozen=True)
class CuriosityBrowsing:
    reads: int = 5
    window_hours: int = 24
    exempt_roles: tuple[str, ...] = ("investigator", "compliance_auditor")


@dataclass(frozen=True)
class RulesConfig:
    repeated_refusals: RepeatedRefusals = field(default_factory=RepeatedRefusals)
    break_glass_unreviewed: BreakGlassUnreviewed = field(default_factory=BreakGlassUnreviewed)
    read_after_closure: ReadAfterClosure = field(default_factory=ReadAfterClosure)
    bulk_browsing: BulkBrowsing = field(default_factory=BulkBrowsing)
    after_hours: AfterHours = field(default_factory=AfterHours)
    identity_export: IdentityExport = field(default_factory=IdentityExport)
    purpose_not_borne_out: PurposeNotBorneOut = field(default_factory=PurposeNotBorneOut)
    curiosity_browsing: CuriosityBrowsing = field(default_factory=CuriosityBrowsing)
    # The rules evaluated (all by default); a rule left out raises no finding.
    enabled: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.enabled:
            object.__setattr__(self, "enabled", RULE_IDS)
        _check(self)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RulesConfig:
        """The configuration from a parsed TOML document: one table per rule, plus
        `enabled = [...]`; anything not named keeps its default."""
        changes: dict[str, Any] = {}
        for key, given in values.items():
            if key == "enabled":
                changes["enabled"] = _strings(given, "enabled")
                continue
            if key not in RULE_IDS:
                raise RulesConfigError(
                    f"unknown rule [{key}] in the compliance rules; the rules are: "
                    + ", ".join(RULE_IDS)
                )
            if not isinstance(given, dict):
                raise RulesConfigError(f"[{key}] must be a table of thresholds")
            default = getattr(cls(), key)
            known = {f.name: f for f in fields(default)}
            typed: dict[str, Any] = {}
            for name, value in given.items():
                if name not in known:
                    raise RulesConfigError(
                        f"unknown key {key}.{name}; [{key}] takes: {', '.join(known)}"
                    )
                current = getattr(default, name)
                if isinstance(current, tuple):
                    typed[name] = (
                        tuple(_ints(value, f"{key}.{name}"))
                        if current and isinstance(current[0], int)
                        else _strings(value, f"{key}.{name}")
                    )
                elif isinstance(current, int):
                    if not isinstance(value, int) or isinstance(value, bool):
                        raise RulesConfigError(f"{key}.{name} must be a whole number")
                    typed[name] = value
                else:
                    if not isinstance(value, str):
                        raise RulesConfigError(f"{key}.{name} must be text")
                    typed[name] = value
            changes[key] = replace(default, **typed)
        return cls(**changes)

    def as_mapping(self) -> dict[str, Any]:
        found = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in found.items()}

    def digest(self) -> str:
        """sha256 of the configuration's canonical JSON, hex: names one configuration."""
        text = json.dumps(self.as_mapping(), sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(text.encode()).hexdigest()

    def working_hours(self) -> tuple[ZoneInfo, frozenset[int], time, time]:
        hours = self.after_hours
        return (
            ZoneInfo(hours.timezone),
            frozenset(hours.days),
            time.fromisoformat(hours.start),
            time.fromisoformat(hours.end),
        )


RULE_IDS: Final = (
    "repeated_refusals",
    "break_glass_unreviewed",
    "read_after_closure",
    "bulk_browsing",
    "after_hours",
    "identity_export",
    "purpose_not_borne_out",
    "curiosity_browsing",
)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesConfigError(f"{name} must be a list of text values")
    return tuple(value)


def _ints(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise RulesConfigError(f"{name} must be a list of whole numbers")
    return tuple(value)


def _positive(value: int, name: str) -> None:
    if value < 1:
        raise RulesConfigError(f"{name} must be at least 1")


def _check(config: RulesConfig) -> None:
    unknown = [r for r in config.enabled if r not in RULE_IDS]
    if unknown:
        raise RulesConfigError(f"enabled names unknown rules: {', '.join(unknown)}")
    _positive(config.repeated_refusals.count, "repeated_refusals.count")
    _positive(config.repeated_refusals.window_minutes, "repeated_refusals.window_minutes")
    _positive(config.break_glass_unreviewed.hours, "break_glass_unreviewed.hours")
    _positive(config.bulk_browsing.distinct_cases, "bulk_browsing.distinct_cases")
    _positive(config.bulk_browsing.window_minutes, "bulk_browsing.window_minutes")
    _positive(config.identity_export.settle_seconds, "identity_export.settle_seconds")
    _positive(config.curiosity_browsing.reads, "curiosity_browsing.reads")
    _positive(config.curiosity_browsing.window_hours, "curiosity_browsing.window_hours")
    roles = {str(r) for r in Role}
    for name, given in (
        ("read_after_closure.exempt_roles", config.read_after_closure.exempt_roles),
        ("purpose_not_borne_out.roles", config.purpose_not_borne_out.roles),
        ("curiosity_browsing.exempt_roles", config.curiosity_browsing.exempt_roles),
    ):
        wrong = [r for r in given if r not in roles]
        if wrong:
            raise RulesConfigError(f"{name} names unknown roles: {', '.join(wrong)}")
    purposes = {str(p) for p in Purpose}
    wrong = [p for p in config.purpose_not_borne_out.purposes if p not in purposes]
    if wrong:
        raise RulesConfigError(f"purpose_not_borne_out.purposes: unknown {', '.join(wrong)}")
    hours = config.after_hours
    if not set(hours.days) <= set(range(1, 8)):
        raise RulesConfigError("after_hours.days are ISO weekdays, 1 (Monday) to 7 (Sunday)")
    try:
        ZoneInfo(hours.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RulesConfigError(
            "after_hours.timezone must be an IANA zone such as Asia/Shanghai"
        ) from None
    try:
        start, end = time.fromisoformat(hours.start), time.fromisoformat(hours.end)
    except ValueError:
        raise RulesConfigError("after_hours.start and .end are times such as 08:00") from None
    if start >= end:
        raise RulesConfigError("after_hours.start must be before after_hours.end")
