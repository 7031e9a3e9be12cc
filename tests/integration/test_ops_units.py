"""The systemd units and environment files in ops/ name only what exists (issue 21).

Each unit is parsed: its `ExecStart` must be the project's `casetrail` command with a command
path and options that `casetrail`'s own parser accepts (without running it); its `Environment=`
and every variable of every `*.env.example` must be a setting (gateway/settings.py); the units a
unit or the target names must be files in ops/; and each process of the production layout (API,
relay, read models, evidence log, broker) has a unit of its own.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from gateway.cli.main import cli
from gateway.settings import Settings, env_name

OPS = Path(__file__).resolve().parents[2] / "ops"
PROGRAM = "/opt/casetrail/.venv/bin/casetrail"
UNITS = sorted(p for p in OPS.iterdir() if p.suffix in (".service", ".target"))
ENV_FILES = sorted(OPS.glob("*.env.example"))
# The process of the layout -> the command line its unit runs.
PROCESSES = {
    "casetrail-api.service": ["serve"],
    "casetrail-relay.service": ["relay", "run"],
    "casetrail-projections.service": ["projections", "run"],
    "casetrail-evidence.service": ["projections", "run"],
    "casetrail-nats.service": ["nats", "serve"],
}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax, as much as these files use: sections, `Key=value` lines (a key
    may repeat), comments; a continued line (trailing backslash) is joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not a Key=value line"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def settings_variables() -> set[str]:
    return {env_name(field) for field in Settings.model_fields}


def resolve(argv: list[str]) -> tuple[list[str], click.Command]:
    """The command `argv` names in `casetrail`, parsed by click as it would be (not run)."""
    command: click.Command = cli
    path: list[str] = []
    rest = list(argv)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        found = command.get_command(click.Context(command), rest[0])
        assert found is not None, f"casetrail has no command {' '.join([*path, rest[0]])}"
        command, path = found, [*path, rest.pop(0)]
    assert not isinstance(command, click.Group), f"`casetrail {' '.join(path)}` needs a command"
    command.make_context(" ".join(path), rest)  # raises on an unknown option or a bad value
    return path, command


@pytest.mark.parametrize("unit", UNITS, ids=[p.name for p in UNITS])
def test_each_unit_runs_an_existing_command_with_known_settings(unit: Path) -> None:
    sections = parse_unit(unit)
    assert "Unit" in sections and "Install" in sections, unit.name
    for key in ("Wants", "After", "Requires", "PartOf", "Conflicts", "WantedBy"):
        for section in sections.values():
            for value in section.get(key, []):
                for name in value.split():
                    if name.startswith("casetrail"):
                        assert (OPS / name).exists(), f"{unit.name} names {name}, not in ops/"
    service = sections.get("Service")
    if unit.suffix == ".target":
        assert service is None
        return
    assert service is not None, unit.name
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == PROGRAM, f"{unit.name} runs {argv[0]}, not the project's casetrail"
    path, _ = resolve(argv[1:])
    if unit.name in PROCESSES:
        assert path == PROCESSES[unit.name], (unit.name, path)
    for assignment in service.get("Environment", []):
        for pair in shlex.split(assignment):
            name = pair.partition("=")[0]
            assert name in settings_variables(), f"{unit.name} sets {name}, not a setting"
    assert service.get("EnvironmentFile") == ["/etc/casetrail/casetrail.env"], unit.name
    assert service.get("User") == ["casetrail"], unit.name


def test_every_process_of_the_layout_has_a_unit() -> None:
    names = {p.name for p in UNITS}
    assert set(PROCESSES) <= names
    wanted = parse_unit(OPS / "casetrail.target")["Unit"]["Wants"]
    assert set(" ".join(wanted).split()) == set(PROCESSES)
    # The followers split in two: read models and evidence log, each once.
    only = [
        shlex.split(parse_unit(OPS / name)["Service"]["ExecStart"][0])[-1]
        for name in ("casetrail-projections.service", "casetrail-evidence.service")
    ]
    assert only == ["read-models", "evidence"]


@pytest.mark.parametrize("example", ENV_FILES, ids=[p.name for p in ENV_FILES])
def test_each_environment_file_sets_only_settings_it_can_parse(example: Path) -> None:
    given: dict[str, str] = {}
    for number, raw in enumerate(example.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        commented = line.startswith("#")
        line = line.lstrip("# ").strip()
        match = re.match(r"^(CASETRAIL_[A-Z0-9_]+)=(.*)$", line)
        if match is None:
            assert commented or not line, f"{example.name}:{number}: not NAME=value"
            continue
        name, value = match.groups()
        assert name in settings_variables(), f"{example.name}:{number}: {name} is not a setting"
        if not commented:
            given[name] = value
    assert "CASETRAIL_HOME" in given, example.name
    Settings.from_env(given)  # every value as the service would read it (SettingsProblem if not)
