"""The access decision is called only from the reader and the application.

`domain.access` holds the one decision of who sees what (`decide`, its rules `scope_grant`, the
pre-filters `can_see` and `ledger_scope`). import-linter works on modules, and many modules rightly
import `domain.access` for its types (`Actor`, `CaseScope`, events), so this rule is checked on the
syntax tree instead: every import of a decision function, and every `access.<function>` use
through an imported module, outside the allowed modules fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("domain", "projections", "gateway", "bench")

DECISION = frozenset({"decide", "scope_grant", "can_see", "ledger_scope"})

ALLOWED = frozenset(
    {
        "domain.access",  # where it is defined
        "domain.application",  # a case read: decided and recorded in one place
        "domain.permissions",  # who may write checks the same scope (can_see)
        "gateway.http.reader",  # the one reader: ledger pages, lookups, exports, bundles
    }
)
# Allowed only until the reader takes their calls over (issue 12, "one reader"); this test fails
# once such a module no longer calls the decision, so that its entry is removed.
TRANSITIONAL: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def decision_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, name) of each import or attribute use of a decision function."""
    access_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "domain.access":
            for alias in node.names:
                if alias.name in DECISION or alias.name == "*":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module == "domain":
            access_aliases.update(a.asname or a.name for a in node.names if a.name == "access")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "domain.access":
                    access_aliases.add(alias.asname or "domain.access")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in DECISION
            and ast.unparse(node.value) in access_aliases
        ):
            yield node.lineno, node.attr


def uses_by_module() -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            uses = list(decision_uses(ast.parse(path.read_text(encoding="utf-8"))))
            if uses:
                found[module_name(path)] = uses
    return found


def test_only_the_reader_and_the_application_call_the_access_decision() -> None:
    outside = {m: uses for m, uses in uses_by_module().items() if m not in ALLOWED | TRANSITIONAL}
    assert not outside, (
        f"the access decision is used outside the reader and the application: {outside}; "
        "read through gateway.http.reader (or domain.application) instead of deciding here"
    )


def test_a_transitional_allowance_is_removed_once_unused() -> None:
    found = uses_by_module()
    stale = sorted(m for m in TRANSITIONAL if m not in found)
    assert not stale, f"{stale} no longer call the access decision: remove them from TRANSITIONAL"


def test_the_scan_sees_every_kind_of_use() -> None:
    source = (
        "from domain.access import decide as d, Actor\n"
        "from domain import access\n"
        "import domain.access\n"
        "import domain.access as acc\n"
        "access.can_see(a, s, n)\n"
        "domain.access.scope_grant(a, c)\n"
        "acc.ledger_scope(a)\n"
        "other.decide(x)\n"
    )
    assert sorted(decision_uses(ast.parse(source))) == [
        (1, "decide"),
        (5, "can_see"),
        (6, "scope_grant"),
        (7, "ledger_scope"),
    ]
