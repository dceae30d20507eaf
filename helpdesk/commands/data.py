"""Commands over the data as a whole: backup, restore, and a person's data (export, erase, retention)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpdesk.commands.common import EX_NOINPUT, EX_USAGE, build_app, cli_actor
from helpdesk.config import load


def cmd_backup(args: argparse.Namespace) -> int:
    from helpdesk.core import backup

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
    from helpdesk.config import ensure_data_dir
    from helpdesk.core import backup
    from helpdesk.wiring import build

    source = Path(args.file)
    if not source.is_file():
        print(f"helpdesk restore: no such file {source}", file=sys.stderr)
        return EX_NOINPUT
    settings = load(config_file=args.config)
    ensure_data_dir(settings.data_dir)
    app = build(settings, migrate=False)  # the archive's schema first, its rows, then the newest schema
    try:
        summary = backup.restore(app.engine, app.settings, source, force=args.force)  # with the secret key
    except backup.BackupError as exc:
        print(f"helpdesk restore: {exc}", file=sys.stderr)
        return 1
    finally:
        app.engine.dispose()
    rows = sum(summary.rows.values())
    print(f"restored {rows} rows in {len(summary.rows)} tables and {summary.attachments} attachment file(s)"
          + (", and the secret key" if summary.secret_key else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from helpdesk.core import privacy

    target = Path(args.output or f"{args.requester.strip().lower()}.zip")
    if target.exists():
        print(f"helpdesk export: {target} exists; name a new file with --output", file=sys.stderr)
        return EX_USAGE
    app = build_app(args)
    with app.factory() as session:
        try:
            done = privacy.export_person(session, app.settings, args.requester, target, internal=args.internal_notes)
        except privacy.UnknownPerson as exc:
            print(f"helpdesk export: {exc}", file=sys.stderr)
            return 1
    print(f"{target}: {done.tickets} ticket(s), {done.messages} message(s), {done.attachments} attachment(s), "
          f"{done.mails} mail(s) they sent" + ("" if args.internal_notes else "; internal notes left out"))
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from helpdesk.core import privacy
    from helpdesk.core.db import transaction

    app = build_app(args)
    try:
        with transaction(app.factory) as session:
            done = privacy.erase_person(session, app.settings, args.requester, actor=cli_actor())
    except privacy.UnknownPerson as exc:
        print(f"helpdesk erase: {exc}", file=sys.stderr)
        return 1
    print(f"erased: now {done.pseudonym}; {done.tickets} ticket(s) they requested blanked, {done.messages} message(s), "
          f"{done.attachments} attachment(s), {done.raw_mails} raw mail(s), {done.outbox} outgoing mail(s)")
    if done.audit_entries_naming:
        print(f"{done.audit_entries_naming} older audit entries still name them: the audit trail is never rewritten")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from helpdesk.core import privacy
    from helpdesk.core.models import utcnow

    app = build_app(args)
    if not app.settings.retention_days:
        print("retention is off (HELPDESK_RETENTION_DAYS is not set): nothing done")
        return 0
    with app.factory() as session:
        done = privacy.apply_retention(session, app.settings, utcnow(), actor=cli_actor())
        if args.apply:
            session.commit()  # attachment files go only now
        else:
            session.rollback()  # a dry run: the same work, undone
    verb = "" if args.apply else "would be "
    print(f"{len(done.anonymised)} ticket(s) {verb}anonymised, {len(done.deleted)} {verb}deleted "
          f"(closed more than {app.settings.retention_days} days ago)" + ("" if args.apply else "; --apply does it"))
    return 0
