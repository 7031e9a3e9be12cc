"""Environment variables are read only by the settings module.

Scanned on the syntax tree of the service's packages (`domain`, `projections`, `gateway`): any
`os.environ`, `os.environb`, `os.getenv`, or `environ`/`getenv` imported from `os`, outside
`gateway.settings` fails here. What it cannot see, the eventsourcing library's `Application`
merging `os.environ` into its own environment, `CaseTrail.construct_env` turns off
(`tests/integration/test_settings.py` proves it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("domain", "projections", "gateway")
READERS = frozenset({"environ", "environb", "getenv", "getenvb"})

ALLOWED = frozenset({"gateway.settings"})
# Modules that still read the environment on their way into the one settings object; each
# entry fails `test_a_transitional_allowance_is_removed_once_unused` once it no longer does.
TRANSITIONAL: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def environment_reads(tree: ast.Module) -> Iterator[int]:
    """Lines that reach the process environment."""
    os_aliases = {"os"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_aliases.update(a.asname for a in node.names if a.name == "os" and a.asname)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in READERS for a in node.names)
        ):
            yield node.lineno
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in READERS
            and isinstance(node.value, ast.Name)
            and node.value.id in os_aliases
        ):
            yield node.lineno


def reads_by_module() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = sorted(environment_reads(ast.parse(path.read_text(encoding="utf-8"))))
            if lines:
                found[module_name(path)] = lines
    return found


def test_only_the_settings_module_reads_the_environment() -> None:
    allowed = ALLOWED | TRANSITIONAL
    outside = {m: lines for m, lines in reads_by_module().items() if m not in allowed}
    assert not outside, (
        f"the environment is read outside gateway.settings (module: lines): {outside}; "
        "add the variable to the settings object and pass the value in"
    )


def test_a_transitional_allowance_is_removed_once_unused() -> None:
    found = reads_by_module()
    stale = sorted(m for m in TRANSITIONAL if m not in found)
    assert not stale, f"{stale} no longer read the environment: remove them from TRANSITIONAL"


def test_the_scan_sees_every_kind_of_read() -> None:
    source = (
        "import os\n"
        "import os as o\n"
        "from os import getenv\n"
        "os.environ.get('A')\n"
        "o.getenv('B')\n"
        "x = os.environb\n"
        "os.path.join('a')\n"
        "settings.environ\n"
    )
    assert sorted(environment_reads(ast.parse(source))) == [3, 4, 5, 6]
