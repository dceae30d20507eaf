"""``helpdesk``: the command line. Every command is a thin call into core or the mail gateway."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from helpdesk.config import VARIABLES, ConfigError, load

EX_USAGE = 2
EX_TEMPFAIL = 75  # sysexits: the MTA keeps the mail and tries again

log = logging.getLogger("helpdesk")


def _json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=None, default=str))


# -- commands --------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from core import db

    settings = load(config_file=args.config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.database_url)
    before = db.current_revision(engine)
    db.upgrade(engine)
    after = db.current_revision(engine)
    print(f"database {_safe_url(settings.database_url)}: " + (f"created at {after}" if before is None else f"{before} -> {after}"))
    return 0


def _app(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from helpdesk.wiring import build

    return build(load(config_file=args.config))


def cmd_ingest(args: argparse.Namespace) -> int:
    """Raw messages from files (or one from stdin), as an MTA pipe delivers them."""
    from core.db import transaction
    from core.intake import process_pending

    try:
        app = _app(args)
        sources: list[tuple[str, bytes]] = []
        for name in args.files or ["-"]:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            sources.append((name, data))
        stored = []
        with transaction(app.factory) as session:
            for name, raw in sources:
                inbound = app.intake.store(session, raw, source="ingest")
                if inbound is not None:
                    stored.append(inbound.id)
        results = {r.inbound_id: r for r in process_pending(app.factory, app.intake)}
    except OperationalError as exc:
        print(f"helpdesk ingest: database unavailable, try again later: {exc.orig}", file=sys.stderr)
        return EX_TEMPFAIL
    except OSError as exc:
        print(f"helpdesk ingest: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    for (name, _), inbound_id in zip(sources, stored):
        r = results.get(inbound_id)
        status = r.status.value if r else "stored"
        ticket = f" ticket #{r.ticket_id}" if r and r.ticket_id else ""
        reason = f" ({r.reason})" if r and r.reason else ""
        print(f"{name}: {status}{ticket}{reason}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from core import conversation, loopguard
    from mailgateway.parse import UnreadableMail, parse_message, parsed_to_json

    settings = None
    try:
        settings = load(config_file=args.config)
    except ConfigError:
        pass
    own = {settings.address} if settings else set()

    def ours(message_id: str) -> bool:
        return settings is not None and conversation.is_our_message_id(settings, message_id)
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
            parsed = parse_message(raw)
            verdicts = loopguard.judge(parsed, own_addresses=own, own_message_id_domain=None, is_own_message_id=ours)
            data = parsed_to_json(parsed, verdicts.as_json())
            data["file"] = name
        except (OSError, UnreadableMail) as exc:
            data = {"file": name, "error": str(exc) or type(exc).__name__}
        _json(data)
    return 0


def cmd_tickets(args: argparse.Namespace) -> int:
    from core import tickets
    from core.models import Ticket

    app = _app(args)
    with app.factory() as session:
        rows = session.scalars(select(Ticket).order_by(Ticket.id)).all()
        if args.json:
            _json([tickets.to_json(t, with_messages=False) for t in rows])
        else:
            for t in rows:
                print(f"#{t.id:<6} {t.kind.value:<15} {t.priority} {t.status.value:<17} {t.requester.email:<30} {t.subject}")
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    from core import tickets

    app = _app(args)
    with app.factory() as session:
        t = tickets.get(session, args.number)
        if t is None:
            print(f"helpdesk: no ticket #{args.number}", file=sys.stderr)
            return 1
        data = tickets.to_json(t)
        if args.json:
            _json(data)
        else:
            print(f"#{t.id} [{t.kind.value} / {t.category} / {t.priority} / {t.status.value}] {t.subject}")
            print(f"requester: {data['requester']}")
            for m in data["messages"]:
                tag = "note" if m["internal"] else m["direction"]
                print(f"\n--- {tag} from {m['from']}: {m['subject']}\n{m['text']}")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from core import users
    from core.db import transaction
    from core.models import Role

    try:
        role = Role(args.role)
    except ValueError:
        print(f"helpdesk user add: --role must be one of {', '.join(r.value for r in Role)}", file=sys.stderr)
        return EX_USAGE
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif role is Role.USER:
        password = None
    else:
        password = getpass.getpass(f"password for {args.email}: ")
        if password != getpass.getpass("again: "):
            print("helpdesk user add: the passwords differ", file=sys.stderr)
            return 1
    app = _app(args)
    try:
        with transaction(app.factory) as session:
            user = users.create_user(session, args.email, role, password)
            print(f"{user.email}: {user.role.value}")
    except ValueError as exc:
        print(f"helpdesk user add: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from mailgateway.watcher import poll_once
    from helpdesk.runner import watch_forever

    app = _app(args)
    if not app.settings.mailboxes:
        raise ConfigError("HELPDESK_IMAP_HOST: no mailbox configured to poll")
    if args.once:
        from mailgateway.watcher import LeaseLost

        for mailbox in app.settings.mailboxes:
            try:
                result = poll_once(app.factory, app.intake, mailbox, lease_seconds=app.settings.lease_seconds)
            except LeaseLost as exc:
                print(f"helpdesk poll: {exc}", file=sys.stderr)
                return 1
            print(f"{mailbox.name}: fetched {result.fetched}, stored {result.stored}")
        return 0
    watch_forever(app)
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from mailgateway.smtp import send_once
    from helpdesk.runner import send_forever

    app = _app(args)
    if app.settings.smtp is None:
        raise ConfigError("HELPDESK_SMTP_HOST: no SMTP server configured to send through")
    if args.once:
        sent, failed = send_once(app.factory, app.settings.smtp)
        print(f"sent {sent}, failed {failed}")
        return 0 if not failed else 1
    send_forever(app)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from helpdesk.runner import run

    return run(load(config_file=args.config))


def cmd_web(args: argparse.Namespace) -> int:
    from helpdesk.runner import serve_web

    app = _app(args)
    serve_web(app, args.host or app.settings.web_host, args.port if args.port is not None else app.settings.web_port)
    return 0


def cmd_demo_mail(args: argparse.Namespace) -> int:
    from helpdesk.demo import send_demo_mail

    settings = load(config_file=args.config)
    try:
        message_id = send_demo_mail(settings, sender=args.sender, subject=args.subject, body=args.body)
    except OSError as exc:
        print(f"helpdesk demo-mail: {exc}", file=sys.stderr)
        return 1
    print(f"sent <{message_id}> from {args.sender} to {settings.address}")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from core import intake
    from core.db import transaction
    from core.models import Inbound, InboundStatus

    app = _app(args)
    if args.action == "list":
        with app.factory() as session:
            rows = session.scalars(
                select(Inbound).where(Inbound.status == InboundStatus.QUARANTINED).order_by(Inbound.id)
            ).all()
            items = [
                {"id": r.id, "source": r.source, "message_id": r.message_id, "received_at": r.received_at, "reason": r.reason}
                for r in rows
            ]
        if args.json:
            _json(items)
        else:
            for i in items:
                print(f"{i['id']:<6} {i['received_at']:%Y-%m-%d %H:%M} {i['source']:<20} {i['reason']}")
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
            print(f"id: {r.id}\nstatus: {r.status.value}\nsource: {r.source}\nreason: {r.reason}\nsha256: {r.sha256}\n")
            sys.stdout.flush()
            sys.stdout.buffer.write(r.raw.data)
        return 0
    if args.action == "discard":
        if not (args.reason or "").strip():
            print("helpdesk quarantine discard: needs --reason TEXT (why the mail is set aside)", file=sys.stderr)
            return EX_USAGE
        try:
            with transaction(app.factory) as session:
                intake.discard(session, args.id, _cli_actor(), args.reason)
        except (LookupError, ValueError) as exc:
            print(f"helpdesk quarantine discard: {exc.args[0]}", file=sys.stderr)
            return 1
        print(f"inbound {args.id}: discarded (the raw mail is kept)")
        return 0
    try:
        with transaction(app.factory) as session:
            intake.requeue(session, args.id)
    except (LookupError, ValueError) as exc:
        print(f"helpdesk quarantine requeue: {exc.args[0]}", file=sys.stderr)
        return 1
    results = intake.process_pending(app.factory, app.intake)
    for r in results:
        print(f"inbound {r.inbound_id}: {r.status.value}" + (f" ticket #{r.ticket_id}" if r.ticket_id else "") + (f" ({r.reason})" if r.reason else ""))
    return 0


def _cli_actor() -> str:
    """Who acts from the command line, for the audit trail: the local account."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER in a container
        return "cli"


def cmd_outbox(args: argparse.Namespace) -> int:
    from core import outbox
    from core.db import transaction
    from core.models import Outbox, OutboxStatus

    app = _app(args)
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
        if args.json:
            _json(items)
        else:
            for i in items:
                print(f"{i['id']:<6} {i['status']:<8} #{i['ticket']} {','.join(i['to'])} {i['purpose']} tries={i['attempts']} {i['last_error'] or ''}")
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


def cmd_sla(args: argparse.Namespace) -> int:
    from core import access, sla
    from core.db import transaction
    from core.models import utcnow

    app = _app(args)
    with transaction(app.factory) as session:
        findings = sla.check(session, app.settings, utcnow())
        grants = access.warn_expiring(session, app.settings, utcnow())
        items = [
            {"ticket": f.ticket_id, "metric": f.metric.value, "level": f.level.value,
             "elapsed_minutes": round(f.elapsed.total_seconds() / 60), "target_minutes": round(f.target.total_seconds() / 60),
             "notified": list(f.notified)}
            for f in findings
        ]
    if args.json:
        _json(items)
    else:
        for i in items:
            print(f"#{i['ticket']} {i['metric']} {i['level']}: {i['elapsed_minutes']} of {i['target_minutes']} min; told {', '.join(i['notified']) or 'nobody'}")
        print(f"{len(items)} new SLA finding(s)")
        for gid in grants.warned:
            print(f"access grant {gid}: expires within {app.settings.access.expiry_warning_days} days, holder told")
        for gid in grants.expired:
            print(f"access grant {gid}: expired, access ended")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from core import events

    app = _app(args)
    with app.factory() as session:
        items = events.list_events(session, limit=args.limit)
    if args.json:
        _json(items)
    else:
        for e in items:
            ticket = f"#{e['ticket']}" if e["ticket"] else "-"
            print(f"{e['source']:<12} {e['severity']:<13} {e['state']:<10} {e['host']}/{e['service'] or ''} {ticket}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from core import audit

    app = _app(args)
    with app.factory() as session:
        result = audit.verify(session)
    if result.ok:
        print(f"audit trail intact: {result.checked} entries verified")
        return 0
    print(f"audit trail BROKEN at entry {result.first_bad_id} ({result.checked} entries checked)", file=sys.stderr)
    return 1


def cmd_report(args: argparse.Namespace) -> int:
    from core import reports
    from core.models import utcnow

    app = _app(args)
    with app.factory() as session:
        data = reports.report(session, utcnow(), sla=app.settings.sla)
    if args.json:
        _json(data)
    else:
        print(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    return 0


# -- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {k:<32} {v}" for k, v in VARIABLES.items())
    parser = argparse.ArgumentParser(
        prog="helpdesk",
        description="Email-driven IT service desk (ITIL Service Operation).",
        epilog=f"configuration (environment variables):\n{env_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="TOML settings file (also HELPDESK_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create the database or migrate it to the newest schema")
    add("run", cmd_run, "run everything: poller, sender, SLA checks and web console (a demo mail server if none is configured)")
    p = add("poll", cmd_poll, "fetch new mail from IMAP and process it")
    p.add_argument("--once", action="store_true", help="poll once and exit")
    p = add("send", cmd_send, "deliver the outbox over SMTP")
    p.add_argument("--once", action="store_true", help="send what is due and exit")
    p = add("ingest", cmd_ingest, "take raw messages from files or stdin (exit 75 on a temporary failure)")
    p.add_argument("files", nargs="*", metavar="FILE")
    p = add("parse", cmd_parse, "print what the helpdesk reads out of messages, one JSON object per file")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="JSON Lines output (the only format)")
    p = add("tickets", cmd_tickets, "list tickets")
    p.add_argument("--json", action="store_true")
    p = add("ticket", cmd_ticket, "show one ticket with its messages")
    p.add_argument("number", type=int, metavar="N")
    p.add_argument("--json", action="store_true")
    user = sub.add_parser("user", help="manage console users").add_subparsers(dest="user_command", required=True)
    p = user.add_parser("add", help="add a user (asks for the password)")
    p.set_defaults(func=cmd_user_add)
    p.add_argument("email")
    p.add_argument("--role", required=True, help="admin | agent | approver | user")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = add("web", cmd_web, "serve the web console")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p = add("demo-mail", cmd_demo_mail, "send a test mail to the help address through the configured or demo SMTP server")
    p.add_argument("--from", dest="sender", default="alice@example.com")
    p.add_argument("--subject", default="VPN is down, cannot work")
    p.add_argument("--body", default="Hello,\n\nthe VPN does not connect since this morning.\n\nAlice\n")
    p = add("quarantine", cmd_quarantine,
            "mail that could not be processed: list, show ID, requeue ID, discard ID --reason TEXT")
    p.add_argument("action", choices=["list", "show", "requeue", "discard"])
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--reason", help="why the mail is discarded (audited); needed by discard")
    p = add("outbox", cmd_outbox, "outgoing mail: list (unsent), retry ID")
    p.add_argument("action", choices=["list", "retry"])
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--all", action="store_true", help="list sent mail too")
    p.add_argument("--json", action="store_true")
    p = add("sla", cmd_sla, "check SLA clocks: warn at 80%, mark breaches, escalate by email")
    p.add_argument("--check", action="store_true", help="run the check once (the only mode; `run` checks every minute)")
    p.add_argument("--json", action="store_true")
    p = add("events", cmd_events, "monitoring events, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    audit_p = sub.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(dest="audit_command", required=True)
    p = audit_p.add_parser("verify", help="check the hash chain of every audit entry")
    p.set_defaults(func=cmd_audit)
    p = add("report", cmd_report, "figures: volumes, SLA compliance, response and resolution times, backlog")
    p.add_argument("--json", action="store_true")
    return parser


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for chatty in ("alembic", "imapclient"):  # they log routine steps at INFO
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"helpdesk: configuration error: {exc}", file=sys.stderr)
        return EX_USAGE
    except KeyboardInterrupt:
        return 130
    except OperationalError as exc:
        print(f"helpdesk: HELPDESK_DATABASE_URL: database unavailable: {str(exc.orig).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    except _imap_errors() as exc:
        from mailgateway.imap import LoginFailed, ServerUnreachable

        setting = (
            "HELPDESK_IMAP_USER/HELPDESK_IMAP_PASSWORD" if isinstance(exc, LoginFailed)
            else "HELPDESK_IMAP_HOST/HELPDESK_IMAP_PORT/HELPDESK_IMAP_TLS" if isinstance(exc, ServerUnreachable)
            else "HELPDESK_IMAP_*"
        )
        print(f"helpdesk: {setting}: {exc}", file=sys.stderr)
        return 1


def _imap_errors() -> tuple[type[BaseException], ...]:
    from mailgateway.imap import ImapError

    return (ImapError,)


if __name__ == "__main__":
    sys.exit(main())
