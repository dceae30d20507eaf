"""The deployment files (deploy/) agree with the command line: every helpdesk command they run parses with
the CLI's own parser, and every HELPDESK_* variable they set is a setting helpdesk.config knows.

No container engine runs here, so the image is never built nor the compose file started by these tests:
they read the files (the compose file with PyYAML), and check the systemd units with `systemd-analyze
verify` where it is installed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpdesk.cli import build_parser
from helpdesk.config import VARIABLES

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("helpdesk-*.service"))
_NAME = re.compile(r"\bHELPDESK_[A-Z0-9_]+")


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency (pip install -e '.[test]')")
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _exec_form(arguments: str) -> list[str]:
    import json

    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def _units() -> dict[str, dict[str, list[str]]]:
    """unit file name -> key -> values (of every section: the keys used here are unique to theirs)."""
    found: dict[str, dict[str, list[str]]] = {}
    for path in UNITS:
        keys: dict[str, list[str]] = {}
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith(("#", ";", "[")):
                key, _, value = line.partition("=")
                keys.setdefault(key.strip(), []).append(value.strip())
        found[path.name] = keys
    return found


def _assert_cli_accepts(argv: list[str], where: str) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `helpdesk {shlex.join(argv)}` is not a command line the CLI accepts")


def _assert_known(names: set[str], where: str) -> None:
    unknown = sorted(n for n in names if n not in VARIABLES)
    assert not unknown, f"{where} sets {', '.join(unknown)}, which helpdesk.config does not know"


def test_the_image_runs_the_cli_as_a_non_root_user_with_a_data_volume() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert any(i == "RUN" and "pip install ." in a for i, a in steps)
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(a for i, a in steps if i == "ENV")
    data_dir = re.search(r"HELPDESK_DATA_DIR=(\S+)", env)
    assert data_dir is not None
    assert any(i == "VOLUME" and data_dir.group(1) in a for i, a in steps)
    _assert_known(set(_NAME.findall(env)), "deploy/Dockerfile")
    [entrypoint] = [_exec_form(a) for i, a in steps if i == "ENTRYPOINT"]
    [command] = [_exec_form(a) for i, a in steps if i == "CMD"]
    assert entrypoint == ["helpdesk"]
    _assert_cli_accepts(command, "deploy/Dockerfile CMD")


def test_compose_runs_postgres_init_poller_sender_and_console_with_known_commands_and_settings() -> None:
    services = _compose()["services"]
    assert {"postgres", "init", "poller", "sender", "console"} <= set(services)
    commands = {}
    for name, service in services.items():
        if service.get("image", "").startswith("postgres"):
            continue
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name  # the entrypoint is `helpdesk`
        commands[name] = service["command"][0]
        _assert_cli_accepts(service["command"], f"compose service {name}")
        env = service.get("environment", {})
        _assert_known({k for k in env if k.startswith("HELPDESK_")}, f"compose service {name}")
        _assert_known(set(_NAME.findall(" ".join(str(v) for v in env.values()))), f"compose service {name}")
        assert env.get("HELPDESK_SECRET_KEY") and env.get("HELPDESK_DATABASE_URL", "").startswith("postgresql+psycopg://")
    assert commands == {"init": "init", "poller": "poll", "sender": "send", "console": "web"}
    for name in ("poller", "sender", "console"):  # the schema is there before any of them starts
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_the_example_environment_file_names_only_known_settings() -> None:
    text = (DEPLOY / "helpdesk.env.example").read_text()
    _assert_known(set(_NAME.findall(text)), "deploy/helpdesk.env.example")


@pytest.mark.parametrize("unit", [u.name for u in UNITS])
def test_systemd_units_run_known_commands_restart_always_and_are_hardened(unit: str) -> None:
    keys = _units()[unit]
    [start] = keys["ExecStart"]
    binary, *argv = shlex.split(start)
    assert Path(binary).name == "helpdesk"
    assert argv[0] == unit.removeprefix("helpdesk-").removesuffix(".service")
    _assert_cli_accepts(argv, unit)
    _assert_known({v.partition("=")[0] for v in keys.get("Environment", [])}, unit)
    assert keys["Restart"] == ["always"]
    assert keys["User"] != ["root"] and keys["NoNewPrivileges"] == ["yes"] and keys["ProtectSystem"] == ["strict"]
    assert keys["CapabilityBoundingSet"] == [""] and keys["PrivateTmp"] == ["yes"]


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    helpdesk = Path(sys.executable).with_name("helpdesk")  # the unit's binary, at this install's path
    for path in UNITS:
        (tmp_path / path.name).write_text(path.read_text().replace("/opt/helpdesk/.venv/bin/helpdesk", str(helpdesk)))
    result = subprocess.run([analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
