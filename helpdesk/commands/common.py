"""What every command shares: settings to services, JSON output, exit codes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from helpdesk.config import load
from helpdesk.core.catalogue import CatalogueError
from helpdesk.core.classify import RuleError
from helpdesk.core.configfile import ConfigError
from helpdesk.core.priority import PriorityError

if TYPE_CHECKING:
    from helpdesk.wiring import App  # imported when a command builds the app, not for every command

# A setting or a settings file is wrong: one line naming it, never a traceback.
CONFIG_ERRORS = (ConfigError, RuleError, CatalogueError, PriorityError)

EX_USAGE = 2
EX_NOINPUT = 66  # sysexits: an input file is missing or unreadable
EX_TEMPFAIL = 75  # sysexits: the MTA keeps the mail and tries again


# Stored text (subjects, names, reasons, mail bodies) would drive a terminal with control characters
# (set its title, clear it, rewrite a line) or reorder it with bidi overrides: people see them escaped.
_UNSAFE = (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_ESCAPED = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
_ESCAPED_BUT_LINES = {c: e for c, e in _ESCAPED.items() if chr(c) not in "\n\t"}


def shown(value: object, *, lines: bool = False) -> str:
    """``value`` as a terminal may show it: control characters escaped (as \\x1b); ``lines`` keeps line breaks and tabs."""
    return str(value).translate(_ESCAPED_BUT_LINES if lines else _ESCAPED)


def say(text: object, *, lines: bool = False) -> None:
    """Print a line for people (see shown); every human-readable listing goes through here."""
    print(shown(text, lines=lines))


# json.dumps escapes only U+0000..U+001F; the rest of the set above goes out as \\u escapes too.
_JSON_ESCAPED = {c: f"\\u{c:04x}" for c in _UNSAFE if c >= 0x20}


def json_text(data: Any, indent: int | None = None) -> str:
    return json.dumps(data, ensure_ascii=False, indent=indent, default=str).translate(_JSON_ESCAPED)


def print_json(data: Any) -> None:
    print(json_text(data))


def build_app(args: argparse.Namespace) -> App:
    from helpdesk.wiring import build

    return build(load(config_file=args.config))


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cli_actor() -> str:
    """Who acts from the command line, for the audit trail: the local account."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER in a container
        return "cli"


def print_items(items: list[dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str]) -> None:
    """A list as one JSON array (for scripts) or one line per item (for people)."""
    if as_json:
        print_json(items)
    else:
        for item in items:
            say(line(item))
