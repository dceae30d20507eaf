"""``helpdesk check-config``: read and check every setting and settings file, as a start would; write nothing."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from helpdesk.commands.common import say
from helpdesk.config import load


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load(config_file=args.config)  # a bad value or file raises: main() prints it in one line
    book = settings.rulebook
    config = args.config or os.environ.get("HELPDESK_CONFIG")
    rules = len(book.rules.rules)
    say("configuration OK")
    say(f"  settings file: {config or 'none (environment only)'}")
    say(f"  rules: {_shown(book.rules_file)} ({rules} rule{'' if rules == 1 else 's'})")
    say(f"  catalogue: {_shown(book.catalogue_file)} ({len(book.catalogue.items)} items)")
    say(f"  priority matrix: {_shown(book.matrix_file)} ({book.matrix.levels}x{book.matrix.levels})")
    return 0


def _shown(path: Path | None) -> str:
    return str(path) if path else "shipped"
