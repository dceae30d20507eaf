"""What every command shares: settings to services, JSON output, exit codes."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from core.catalogue import CatalogueError
from core.classify import RuleError
from core.priority import PriorityError
from helpdesk.config import ConfigError, load

# A setting or a settings file is wrong: one line naming it, never a traceback.
CONFIG_ERRORS = (ConfigError, RuleError, CatalogueError, PriorityError)

EX_USAGE = 2
EX_NOINPUT = 66  # sysexits: an input file is missing or unreadable
EX_TEMPFAIL = 75  # sysexits: the MTA keeps the mail and tries again


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=None, default=str))


def build_app(args: argparse.Namespace):  # type: ignore[no-untyped-def]
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
            print(line(item))
