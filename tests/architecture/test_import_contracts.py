"""The import rules are checked, and a broken one fails the build.

The rules are import-linter contracts (`[tool.importlinter]` in pyproject.toml), run by
`make imports` before pytest in `make test`. Here: the tree keeps every contract; a copy of the
tree with one forbidden import added, per contract, makes `lint-imports` exit non-zero and name
the broken contract and the offending import; and the unit's client reaches only an explicit list
of shared-format modules (a contract lists what is forbidden; this lists what is allowed, so a new
service module is caught too).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "projections", "gateway")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# What a unit's machine runs: the shared formats and nothing that holds or serves cases.
UNIT_CLIENT_MAY_REACH = frozenset(
    {
        "gateway.logs",
        "gateway.messaging.broker",  # NatsSettings and the TLS context
        "gateway.messaging.broker_config",  # the stream and a unit's subjects
        "gateway.messaging.sealing",  # HPKE envelopes and signatures: the shared format
        "projections.evidence.checkpoints",  # verifying signed checkpoints
        "projections.evidence.leaves",  # the leaf encoding: the shared format (issue 23)
        "projections.evidence.log",  # the checkpoint table's code, pulled in by checkpoints
        "projections.evidence.merkle",
        "projections.follower",  # pulled in by projections.evidence.log
        "projections.follower_postgres",  # PostgreSQL recorders, imported only on PostgreSQL
    }
)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports puts its working directory first on sys.path: it analyses the tree in `cwd`.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_of_the_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (module that gets the import, the forbidden import, the contract's name as lint-imports prints it)
BROKEN_IMPORTS = [
    pytest.param(
        "domain.taxonomy",
        "gateway.settings",
        "layers: gateway over projections over domain",
        id="domain-imports-gateway",
    ),
    pytest.param(
        "domain.identity",
        "projections.blind_index",
        "layers: gateway over projections over domain",
        id="domain-imports-projections",
    ),
    pytest.param(
        "projections.ledger.quarters",
        "gateway.logs",
        "layers: gateway over projections over domain",
        id="projections-import-gateway",
    ),
    pytest.param(
        "gateway.store.guard",
        "gateway.cli.main",
        "store, messaging, evidence never import http, cli, bootstrap",
        id="store-imports-cli",
    ),
    pytest.param(
        "gateway.evidence.verification",
        "gateway.http.problems",
        "store, messaging, evidence never import http, cli, bootstrap",
        id="evidence-imports-http",
    ),
    pytest.param(
        "gateway.messaging.registry",
        "gateway.bootstrap",
        "store, messaging, evidence never import http, cli, bootstrap",
        id="messaging-imports-the-wiring-point",
    ),
    pytest.param(
        "gateway.http.examples",
        "gateway.cli.demo",
        "http never imports cli",
        id="http-imports-cli",
    ),
    pytest.param(
        "gateway.cli.demo",
        "gateway.http.problems",
        "cli never imports http",
        id="cli-imports-http",
    ),
    pytest.param(
        "gateway.messaging.broker_config",
        "gateway.settings",
        "the unit client imports no service module",
        id="unit-client-reaches-settings",
    ),
]


@pytest.mark.parametrize(("importer", "imported", "contract"), BROKEN_IMPORTS)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, importer: str, imported: str, contract: str
) -> None:
    tree = copy_of_the_tree(tmp_path)
    bootstrap = tree / "gateway" / "bootstrap.py"
    if imported == "gateway.bootstrap" and not bootstrap.exists():
        # The wiring point may not have landed yet: the contract must hold it either way.
        bootstrap.write_text('"""Stand-in wiring point for this test."""\n')
    module = tree.joinpath(*importer.split(".")).with_suffix(".py")
    with module.open("a") as source:
        source.write(f"\nimport {imported}  # deliberately forbidden\n")

    result = lint_imports(tree)

    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    assert f"{importer} -> {imported}" in result.stdout, result.stdout


def test_the_unit_client_reaches_only_shared_formats() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    reached = graph.find_upstream_modules("gateway.messaging.unit_client")
    beyond = sorted(reached - UNIT_CLIENT_MAY_REACH)
    assert not beyond, (
        f"gateway.messaging.unit_client now reaches {beyond}: a unit's machine must not run "
        "service code; move what it needs into a shared-format module, or, if the module is one, "
        "add it to UNIT_CLIENT_MAY_REACH with the reason"
    )
