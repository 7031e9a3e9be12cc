"""Loading the compliance rules' configuration (`domain.compliance.config.RulesConfig`).

The repository's defaults are `gateway/compliance/rules.toml` beside this module;
`CASETRAIL_COMPLIANCE_RULES` names a deployment's own TOML file instead (checked when the
settings are read: a missing file or a bad value is one line naming it). Proven by
tests/domain/test_compliance_rules.py (the file equals the dataclass defaults; bad files).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Final

from domain.compliance.config import RulesConfig, RulesConfigError

DEFAULT_RULES_FILE: Final = Path(__file__).with_name("rules.toml")


def load_rules(path: str | Path | None = None) -> RulesConfig:
    """The configuration in `path` (the repository's defaults when None or empty)."""
    source = Path(path) if path else DEFAULT_RULES_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesConfigError(
            f"cannot read the compliance rules file {source}: {exc.strerror or exc}; "
            "set CASETRAIL_COMPLIANCE_RULES to a readable TOML file"
        ) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesConfigError(f"the compliance rules file {source} is not TOML: {exc}") from None
    return RulesConfig.from_mapping(values)
