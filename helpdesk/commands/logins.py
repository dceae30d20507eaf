"""`helpdesk mailboxes`: each mailbox's (and SMTP's) login: auth kind, last success, last error, token expiry."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from helpdesk.commands.common import build_app, print_json, say
from helpdesk.core.mailauth import LoginStatus, statuses
from helpdesk.core.settings import AuthKind


def cmd_mailboxes(args: argparse.Namespace) -> int:
    app = build_app(args)
    with app.factory() as session:
        known = statuses(session)
    logins = [(m.name, m.auth) for m in app.settings.mailboxes]
    if app.settings.smtp is not None:
        logins.append(("smtp", app.settings.smtp.auth))
    rows = [_row(name, auth, known.get(name)) for name, auth in logins]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        state = "FAILING" if row["failing"] else "ok" if row["last_success"] else "-"
        say(f"{row['mailbox']}  {row['auth']}  {state}")
        say(f"  last success {row['last_success'] or 'never'}; token expires {row['token_expires'] or '-'}")
        if row["last_error"]:
            say(f"  last error {row['last_error_at']}: {row['last_error']}")
    return 1 if any(row["failing"] for row in rows) else 0


def _row(name: str, auth: AuthKind, status: LoginStatus | None) -> dict[str, Any]:
    def when(at: datetime | None) -> str | None:
        return at.isoformat(timespec="seconds") if at is not None else None

    return {
        "mailbox": name,
        "auth": auth.value,
        "last_success": when(status.last_success_at) if status else None,
        "last_error": status.last_error if status else None,
        "last_error_at": when(status.last_error_at) if status else None,
        "token_expires": when(status.token_expires_at) if status else None,
        "failing": bool(status and status.failing),
    }
