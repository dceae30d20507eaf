"""Every command explains itself: `--help` works for the program and each subcommand."""

from __future__ import annotations

import argparse

import pytest

from helpdesk.cli import build_parser, main


def _commands() -> list[list[str]]:
    parser = build_parser()
    found: list[list[str]] = []

    def walk(p: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.append(prefix)
        for action in subs:
            for name, child in action.choices.items():
                walk(child, [*prefix, name])

    walk(parser, [])
    return found


def test_the_contract_commands_exist() -> None:
    names = {" ".join(c) for c in _commands()}
    for command in ("init", "run", "poll", "send", "ingest", "parse", "tickets", "ticket", "user add",
                    "quarantine", "outbox", "sla", "events", "audit verify", "report", "web", "demo-mail"):
        assert command in names


@pytest.mark.parametrize("command", [[], *_commands()], ids=lambda c: " ".join(c) or "helpdesk")
def test_help_prints_and_exits_zero(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: helpdesk")
    assert "%%" not in out
