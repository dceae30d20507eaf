"""Commands over the desk's records: tickets, users, quarantine, outbox."""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy import select

from helpdesk.commands.common import (
    EX_USAGE,
    build_app,
    cli_actor,
    print_items,
    print_json,
    say,
    shown,
)
from helpdesk.config import is_address


def cmd_tickets(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import joinedload, selectinload

    from helpdesk.core import tickets
    from helpdesk.core.models import Message, Ticket, Watcher

    app = build_app(args)
    # Everything to_json reads, in a few queries for all tickets rather than a few per ticket.
    query = select(Ticket).order_by(Ticket.id).options(
        joinedload(Ticket.requester), joinedload(Ticket.assignee), selectinload(Ticket.watchers).joinedload(Watcher.contact)
    )
    if args.json:
        query = query.options(selectinload(Ticket.messages).selectinload(Message.attachments))
    with app.factory() as session:
        rows = session.scalars(query).unique().all()
        if args.json:
            print_json([tickets.to_json(t) for t in rows])
        else:
            for t in rows:
                say(f"#{t.id:<6} {t.kind.value:<15} {t.priority} {t.status.value:<17} {t.requester.email:<30} {t.subject}")
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    from helpdesk.core import tickets

    app = build_app(args)
    with app.factory() as session:
        t = tickets.get(session, args.number)
        if t is None:
            print(f"helpdesk: no ticket #{args.number}", file=sys.stderr)
            return 1
        data = tickets.to_json(t)
        if args.json:
            print_json(data)
        else:
            say(f"#{t.id} [{t.kind.value} / {t.category} / {t.priority} / {t.status.value}] {t.subject}")
            say(f"requester: {data['requester']}")
            for m in data["messages"]:
                tag = "note" if m["internal"] else m["direction"]
                say(f"\n--- {tag} from {shown(m['from'])}: {shown(m['subject'])}")
                say(m["text"], lines=True)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from helpdesk.core import users
    from helpdesk.core.db import transaction
    from helpdesk.core.models import Role

    try:
        role = Role(args.role)
    except ValueError:
        print(f"helpdesk user add: --role must be one of {', '.join(r.value for r in Role)}", file=sys.stderr)
        return EX_USAGE
    if not is_address(args.email.strip()):
        print(f"helpdesk user add: {args.email!r} is not an email address like alice@example.org", file=sys.stderr)
        return EX_USAGE
    if args.password_stdin:
        line = sys.stdin.readline()  # only the line end goes: a password may end in spaces or a lone \r
        password = line[:-2] if line.endswith("\r\n") else line.removesuffix("\n")
    elif role is Role.USER:
        password = None
    else:
        password = getpass.getpass(f"password for {args.email}: ")
        if password != getpass.getpass("again: "):
            print("helpdesk user add: the passwords differ", file=sys.stderr)
            return 1
    app = build_app(args)
    try:
        with transaction(app.factory) as session:
            user = users.create_user(session, args.email, role, password, actor=cli_actor())
            print(f"{user.email}: {user.role.value}")
    except ValueError as exc:
        print(f"helpdesk user add: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_user_token(args: argparse.Namespace) -> int:
    """Issue (or rotate) a user's API token and print it once; --revoke ends it."""
    from helpdesk.core import users
    from helpdesk.core.db import transaction
    from helpdesk.core.models import Role

    app = build_app(args)
    with transaction(app.factory) as session:
        user = users.find_user(session, args.email)
        if user is None or user.role is Role.USER:
            print(f"helpdesk user token: no console user {users.normalise_email(args.email)}", file=sys.stderr)
            return 1
        if args.revoke:
            users.revoke_api_token(session, user, actor=cli_actor())
            print(f"{user.email}: API token revoked")
            return 0
        if args.scope is None:
            scope = users.token_scope(user)  # a rotated token keeps what it may do
        else:
            scope = None if args.scope == "all" else users.TokenScope(args.scope)
        print(users.issue_api_token(session, user, actor=cli_actor(), scope=scope))
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from helpdesk.core import intake
    from helpdesk.core.db import transaction
    from helpdesk.core.models import Inbound, InboundStatus

    app = build_app(args)
    if args.action == "list":
        with app.factory() as session:
            rows = session.scalars(
                select(Inbound).where(Inbound.status == InboundStatus.QUARANTINED).order_by(Inbound.id)
            ).all()
            items = [
                {"id": r.id, "source": r.source, "message_id": r.message_id, "received_at": r.received_at, "reason": r.reason}
                for r in rows
            ]
        print_items(items, args.json, lambda i: f"{i['id']:<6} {i['received_at']:%Y-%m-%d %H:%M} {i['source']:<20} {i['reason']}")
        return 0
    if args.id is None:
        print(f"helpdesk quarantine {args.action}: needs an ID", file=sys.stderr)
        return EX_USAGE
    if args.action == "show":
        with app.factory() as session:
            r = session.get(Inbound, args.id)
            if r is None:
                print(f"helpdesk: no inbound mail {args.id}", file=sys.stderr)
                return 1
            for field in (f"id: {r.id}", f"status: {r.status.value}", f"source: {r.source}", f"reason: {r.reason}",
                          f"sha256: {r.sha256}", ""):
                say(field)
            if sys.stdout.isatty():  # on a screen, escaped like all else; piped, the stored bytes for a file
                say(r.raw.data.decode("utf-8", "backslashreplace"), lines=True)
            else:
                sys.stdout.flush()
                sys.stdout.buffer.write(r.raw.data)
        return 0
    if args.action == "discard":
        if not (args.reason or "").strip():
            print("helpdesk quarantine discard: needs --reason TEXT (why the mail is set aside)", file=sys.stderr)
            return EX_USAGE
        try:
            with transaction(app.factory) as session:
                intake.discard(session, args.id, cli_actor(), args.reason)
        except (LookupError, ValueError) as exc:
            print(f"helpdesk quarantine discard: {exc.args[0]}", file=sys.stderr)
            return 1
        print(f"inbound {args.id}: discarded (the raw mail is kept)")
        return 0
    try:
        with transaction(app.factory) as session:
            intake.requeue(session, args.id, cli_actor())
    except (LookupError, ValueError) as exc:
        print(f"helpdesk quarantine requeue: {exc.args[0]}", file=sys.stderr)
        return 1
    for done in intake.process_pending(app.factory, app.intake):
        ticket = f" ticket #{done.ticket_id}" if done.ticket_id else ""
        say(f"inbound {done.inbound_id}: {done.status.value}{ticket}" + (f" ({done.reason})" if done.reason else ""))
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from helpdesk.core import outbox
    from helpdesk.core.db import transaction
    from helpdesk.core.models import Outbox, OutboxStatus

    app = build_app(args)
    if args.action == "list":
        with app.factory() as session:
            query = select(Outbox).order_by(Outbox.id)
            if not args.all:
                query = query.where(Outbox.status != OutboxStatus.SENT)
            rows = session.scalars(query).all()
            items = [
                {"id": r.id, "status": r.status.value, "to": r.recipients, "purpose": r.purpose, "ticket": r.ticket_id,
                 "attempts": r.attempts, "last_error": r.last_error, "message_id": r.message_id}
                for r in rows
            ]
        print_items(
            items, args.json,
            lambda i: f"{i['id']:<6} {i['status']:<8} #{i['ticket']} {','.join(i['to'])} {i['purpose']} "
                      f"tries={i['attempts']} {i['last_error'] or ''}",
        )
        return 0
    if args.id is None:
        print("helpdesk outbox retry: needs an ID", file=sys.stderr)
        return EX_USAGE
    try:
        with transaction(app.factory) as session:
            outbox.retry(session, args.id)
    except (LookupError, ValueError) as exc:
        print(f"helpdesk outbox retry: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"outbox {args.id}: queued again")
    return 0
