"""One wiring point: nothing in `gateway/` but `gateway/bootstrap.py` constructs the application,
the read models, the evidence log, the relay or the token verifier, and no lifespan of a router
builds anything behind the app's back. An AST scan of every module; a deliberately broken copy
proves the scan can fail."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
GATEWAY: Final = ROOT / "gateway"
WIRING_POINT: Final = GATEWAY / "bootstrap.py"
# The classes only the wiring point may call, and their alternative constructors.
BUILT_THERE: Final = frozenset({"CaseTrail", "ReadModels", "Evidence", "Relay", "TokenVerifier"})
FACTORIES: Final = frozenset({"open", "from_settings", "from_env"})
# Where a module deliberately builds one itself, and why. Empty today: keep it that way.
ALLOWED: Final[dict[str, str]] = {}


def constructions(source: str) -> list[tuple[int, str]]:
    """(line, what) for every `X(...)` and `X.open(...)`-like call of a class in BUILT_THERE."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute):
            if func.attr in BUILT_THERE:
                name = func.attr
            elif (
                func.attr in FACTORIES
                and isinstance(func.value, ast.Name)
                and func.value.id in BUILT_THERE
            ):
                name = f"{func.value.id}.{func.attr}"
        if name is not None and name.split(".")[0] in BUILT_THERE:
            found.append((node.lineno, name))
    return found


def router_lifespans(source: str) -> list[int]:
    """Lines where an `APIRouter(lifespan=...)` is made: a lifespan that would rely on the
    app's having run first."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "APIRouter"
            and any(k.arg == "lifespan" for k in node.keywords)
        ):
            lines.append(node.lineno)
    return lines


def _modules() -> list[Path]:
    return sorted(p for p in GATEWAY.rglob("*.py") if p != WIRING_POINT)


def test_nothing_but_the_wiring_point_constructs_the_services_parts() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}(...)"
        for path in _modules()
        if str(path.relative_to(ROOT)) not in ALLOWED
        for line, what in constructions(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "build these in gateway/bootstrap.py and pass them in: " + "; ".join(
        offenders
    )


def test_the_wiring_point_builds_each_of_them() -> None:
    built = {what for _, what in constructions(WIRING_POINT.read_text(encoding="utf-8"))}
    assert built == BUILT_THERE


def test_no_router_has_a_lifespan_of_its_own() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _modules()
        for line in router_lifespans(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "the app's lifespan (gateway/http/app.py) starts what bootstrap built"


def test_the_scan_finds_a_construction_and_a_router_lifespan() -> None:
    broken = (
        "from domain.application import CaseTrail\n"
        "import gateway.evidence.maintainer as m\n"
        "app = CaseTrail(env={})\n"
        "evidence = m.Evidence(app, key, settings)\n"
        "relay = Relay.from_settings(settings, app)\n"
        "router = APIRouter(lifespan=_lifespan)\n"
    )
    assert constructions(broken) == [
        (3, "CaseTrail"),
        (4, "Evidence"),
        (5, "Relay.from_settings"),
    ]
    assert router_lifespans(broken) == [6]
