"""Commands over the data as a whole: backup, restore, and a person's data (export, erase, retention)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpdesk.commands.common import EX_NOINPUT, EX_USAGE, build_app
from helpdesk.config import load


def cmd_backup(args: argparse.Namespace) -> int:
    from core import backup

    target = Path(args.file)
    if target.exists():
        print(f"helpdesk backup: {target} exists; name a new file", file=sys.stderr)
        return EX_USAGE
    app = build_app(args)
    try:
        summary = backup.backup(app.engine, app.settings, target)
    except OSError as exc:
        print(f"helpdesk backup: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    rows = sum(summary.rows.values())
    key = "with the data dir's secret key" if summary.secret_key else "without a secret key (HELPDESK_SECRET_KEY: keep it apart)"
    print(f"{target}: {rows} rows in {len(summary.rows)} tables, {summary.attachments} attachment file(s), {key}")
    for digest in summary.missing:
        print(f"helpdesk backup: attachment file {digest} is missing from the data dir (its row is kept)", file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from core import backup
    from helpdesk.config import ensure_data_dir
    from helpdesk.wiring import build

    source = Path(args.file)
    if not source.is_file():
        print(f"helpdesk restore: no such file {source}", file=sys.stderr)
        return EX_NOINPUT
    settings = load(config_file=args.config)
    ensure_data_dir(settings.data_dir)
    app = build(settings, migrate=False)  # the archive's schema first, its rows, then the newest schema
    try:
        summary = backup.restore(app.engine, settings, source, force=args.force)
    except backup.BackupError as exc:
        print(f"helpdesk restore: {exc}", file=sys.stderr)
        return 1
    finally:
        app.engine.dispose()
    rows = sum(summary.rows.values())
    print(f"restored {rows} rows in {len(summary.rows)} tables and {summary.attachments} attachment file(s)"
          + (", and the secret key" if summary.secret_key else ""))
    return 0
